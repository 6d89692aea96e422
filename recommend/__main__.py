import tool_cli
from recommend import main

tool_cli.run(main, "recommend")
