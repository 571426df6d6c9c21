"""STAND-INS of the platform's outside services, for the demo, `serve --sandbox` and the tests.

They speak the contracts in docs/contracts/ on loopback ports, with the real services' timing and defects
(each switchable); the adapters never know. The production
assembly (`server.process`) does not import them: whoever wants them running starts a `Sandbox` and points
the settings at it.

May import: `server.web` (serving on loopback, the WebSocket bridge), `server.settings`.
"""

from server.sandbox._running import Sandbox
from server.sandbox.auto_movie import DEMO_PROJECT_ID, AutoMovieStandIn
from server.sandbox.brain import BrainStandIn
from server.sandbox.task_service import TaskServiceStandIn
from server.web import serve_app

__all__ = [
    "DEMO_PROJECT_ID",
    "AutoMovieStandIn",
    "BrainStandIn",
    "Sandbox",
    "TaskServiceStandIn",
    "serve_app",
]
