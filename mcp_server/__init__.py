"""Task-capture MCP server (start_task / end_task)."""
