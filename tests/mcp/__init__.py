"""MCP servers that tests start as real stdio processes."""
