"""An MCP server the client tests start (made with the MCP SDK's ``MCPServer``): ``pid``
answers its process id, ``crash`` kills the process in the middle of the call.

``python flaky_server.py`` serves on stdio; ``python flaky_server.py PORT`` serves
streamable HTTP on ``127.0.0.1:PORT/mcp``.
"""

from __future__ import annotations

import os
import sys

import anyio
from mcp.server.mcpserver import MCPServer

server = MCPServer("flaky")


@server.tool()
def pid() -> dict[str, int]:
    """This server's process id."""
    return {"pid": os.getpid()}


@server.tool()
async def crash() -> str:
    """Die in the middle of the call."""
    await anyio.sleep(0.1)
    os._exit(3)


if __name__ == "__main__":
    if len(sys.argv) > 1:
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[1]))
    else:
        server.run()
