"""STAND-INS of the platform's outside services, for the demo and the integration tests.

They speak the contracts in shared/contracts/ on loopback ports; the adapters never know.
"""

from server.sandbox._serve import serve_app
from server.sandbox.auto_movie import AutoMovieStandIn
from server.sandbox.brain import BrainStandIn
from server.sandbox.task_service import TaskServiceStandIn

__all__ = ["AutoMovieStandIn", "BrainStandIn", "TaskServiceStandIn", "serve_app"]
