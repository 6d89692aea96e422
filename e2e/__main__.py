import tool_cli
from e2e.cli import main

tool_cli.run(main, "e2e")
