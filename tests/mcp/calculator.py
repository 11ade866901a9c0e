"""A real MCP stdio server with one tool; it appends each call to AIORCH_TEST_TOOL_LOG.

The log lets a test count how often the tool really ran (a replayed call does not run),
and shows AIORCH_TEST_TOOL_SECRET when set, proving the secret reached the server.
``refuse`` fails quoting that secret, as a careless upstream service would.
"""

from __future__ import annotations

import os
from pathlib import Path

from mcp.server.mcpserver import MCPServer

app = MCPServer("calculator")


@app.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    log = os.environ.get("AIORCH_TEST_TOOL_LOG")
    if log:
        with Path(log).open("a") as calls:
            secret = os.environ.get("AIORCH_TEST_TOOL_SECRET")
            calls.write(f"add {a} {b}{f' {secret}' if secret else ''}\n")
    return a + b


@app.tool()
def refuse() -> str:
    """Fail with an error that quotes the server's secret."""
    raise ValueError(f"upstream refused token {os.environ.get('AIORCH_TEST_TOOL_SECRET')}")


if __name__ == "__main__":
    app.run()
