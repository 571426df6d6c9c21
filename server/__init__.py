"""The MCP surface and the process: settings, logging, CLI."""

__all__: list[str] = []
