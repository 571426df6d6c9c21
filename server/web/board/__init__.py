"""The production board: a live web page for people, over the same service calls as the tools."""

from server.web.board._graph import node_states, picture, timeline
from server.web.board._routes import BOARD_API, Board

__all__ = ["BOARD_API", "Board", "node_states", "picture", "timeline"]
