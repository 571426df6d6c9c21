"""LangGraph graphs, their state schemas and the agent registry."""

__all__: list[str] = []
