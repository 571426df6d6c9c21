"""The three stand-ins running together on loopback ports, and the settings that point a server at them."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import structlog
from pydantic import SecretStr

from server.sandbox.auto_movie import AutoMovieStandIn
from server.sandbox.brain import BrainStandIn
from server.sandbox.task_service import TaskServiceStandIn
from server.settings import Settings
from server.web import serve_apps

__all__ = ["Sandbox"]

log = structlog.get_logger(__name__)


@dataclass
class Sandbox:
    """The stand-ins of the Task Service, the Brain and Auto-Movie, served on loopback.

    Attributes:
        task_service, brain, auto_movie: the stand-ins (tests steer them: latency, outages, failures).
        urls: each one's base URL (the Brain's is ``ws://``).
    """

    task_service: TaskServiceStandIn
    brain: BrainStandIn
    auto_movie: AutoMovieStandIn
    urls: dict[str, str]

    @classmethod
    @contextlib.asynccontextmanager
    async def running(
        cls,
        media_root: Path,
        *,
        task_latency: float | None = None,
        task_port: int = 0,
        webhook_delay: float | None = None,
        defects: bool = True,
        brain_mcp: bool = False,
    ) -> AsyncIterator[Sandbox]:
        """Start all three (their files under `media_root`); stop them when the block exits.

        Args:
            media_root: where the stand-ins keep their files.
            task_latency: seconds a Task Service job works (default: the stand-in's).
            task_port: the Task Service stand-in's port (0: any free one).
            webhook_delay: seconds between a job's status flip and its webhook (default: the real build's ~6 s).
            defects: mirror the real services' defects (False: webhook with the status whatever
                `webhook_delay` says — the late webhook is one of them —, video works, no stuck rows).
            brain_mcp: also serve the platform's documented MCP dialect (and its knowledge tools) at ``/mcp``,
                which the deployed Brain does not have.
        """
        ts = TaskServiceStandIn(media_dir=media_root / "_tasks")
        if not defects:
            ts = TaskServiceStandIn.without_defects(media_root / "_tasks")
        if task_latency is not None:
            ts.latency = task_latency
        if webhook_delay is not None and defects:
            ts.webhook_delay = webhook_delay
        brain = BrainStandIn(mcp_dialect=brain_mcp)
        am = AutoMovieStandIn(store_file=media_root / "_auto_movie" / "projects.json")
        async with contextlib.AsyncExitStack() as stack:
            stack.push_async_callback(ts.aclose)
            stack.callback(am.flush)
            apps = [(ts.app(), task_port), (brain.app(), 0), (am.app(), 0)]
            ts.public_url, brain_http, am_url = await stack.enter_async_context(serve_apps(apps))
            urls = {"task_service": ts.public_url, "brain": brain_http.replace("http://", "ws://"),
                    "auto_movie": am_url}  # fmt: skip
            log.info("sandbox.started", **urls, media=str(media_root))
            yield cls(ts, brain, am, urls)

    def environment(self) -> dict[str, str]:
        """The variables that point a server at the stand-ins (what ``movie-orchestrator sandbox`` prints)."""
        return {
            "TASK_SERVICE_URL": self.urls["task_service"], "TASK_SERVICE_API_KEY": self.task_service.api_key,
            "BRAIN_URL": self.urls["brain"], "BRAIN_API_KEY": self.brain.api_key,
            "AUTO_MOVIE_URL": self.urls["auto_movie"], "AUTO_MOVIE_TOKEN": self.auto_movie.api_token,
            "PAYLOAD_EMAIL": self.auto_movie.email, "PAYLOAD_PASSWORD": self.auto_movie.password,
        }  # fmt: skip

    def settings(self, base: Settings) -> Settings:
        """`base` pointed at the stand-ins."""
        env = self.environment()
        return base.model_copy(update={
            "task_service_url": env["TASK_SERVICE_URL"], "task_service_api_key": SecretStr(env["TASK_SERVICE_API_KEY"]),
            "brain_url": env["BRAIN_URL"], "brain_api_key": SecretStr(env["BRAIN_API_KEY"]),
            "auto_movie_url": env["AUTO_MOVIE_URL"], "auto_movie_token": SecretStr(env["AUTO_MOVIE_TOKEN"]),
            "payload_email": env["PAYLOAD_EMAIL"], "payload_password": SecretStr(env["PAYLOAD_PASSWORD"]),
        })  # fmt: skip
