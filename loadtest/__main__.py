import tool_cli
from loadtest.cli import main

tool_cli.run(main, "loadtest")
