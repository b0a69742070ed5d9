"""``python -m mcp_server``: the capture MCP server on stdio."""

from mcp_server.server import main

main()
