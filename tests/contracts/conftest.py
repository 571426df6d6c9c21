"""One contract suite per outside service, run against our stand-in, or against the real service when its
address is given:

- ``TASK_SERVICE_CONTRACT_URL`` (+ ``TASK_SERVICE_CONTRACT_KEY``): the Task Service (jomapps/celery-redis);
- ``BRAIN_CONTRACT_URL`` (``ws://host:port``): the Brain (jomapps/mcp-brain-service);
- ``AUTO_MOVIE_CONTRACT_URL`` (+ ``AUTO_MOVIE_CONTRACT_EMAIL``, ``AUTO_MOVIE_CONTRACT_PASSWORD``,
  ``AUTO_MOVIE_CONTRACT_PROJECT``): the Auto-Movie app (jomapps/auto-movie).

The real service must reach this machine's loopback for webhooks (the suite serves its receiver on
127.0.0.1). How to run them here: docs/contracts/*.md.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from server.sandbox import AutoMovieStandIn, BrainStandIn, TaskServiceStandIn, serve_app

# The stand-in's timing in this suite: the real build's shape (status, then the webhook later), compressed.
STAND_IN_LATENCY = 0.05
STAND_IN_WEBHOOK_DELAY = 0.3


@dataclass
class Target:
    """The service a contract suite runs against."""

    url: str
    key: str = ""
    real: bool = False
    stand_in: Any = None
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """What the suite ran against (shown in failures)."""
        return f"real service at {self.url}" if self.real else "stand-in"


@dataclass
class Received:
    """One webhook try as the receiver saw it."""

    at: float
    body: dict[str, Any]
    headers: dict[str, str]


class WebhookSink:
    """A webhook receiver on loopback: records every try; answers the status asked for by ``?code=``."""

    def __init__(self) -> None:
        self.url = ""
        self.tries: dict[str, list[Received]] = {}
        self._changed = asyncio.Event()

    def callback(self, name: str, code: int = 200) -> str:
        """The callback URL of one job (`name` keys its tries)."""
        return f"{self.url}/hook/{name}?code={code}"

    async def _receive(self, request: Request) -> JSONResponse:
        name = request.path_params["name"]
        body = await request.json()
        self.tries.setdefault(name, []).append(Received(time.monotonic(), body, dict(request.headers)))
        self._changed.set()
        return JSONResponse({"ok": True}, status_code=int(request.query_params.get("code", "200")))

    def app(self) -> Starlette:
        """The receiver's app."""
        return Starlette(routes=[Route("/hook/{name}", self._receive, methods=["POST"])])

    async def wait(self, name: str, tries: int = 1, within: float = 120.0) -> list[Received]:
        """The tries of `name` once there are at least `tries` of them."""
        deadline = time.monotonic() + within
        while len(self.tries.get(name, [])) < tries:
            left = deadline - time.monotonic()
            if left <= 0:
                msg = f"webhook {name!r}: {len(self.tries.get(name, []))} of {tries} tries within {within} s"
                raise TimeoutError(msg)
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), min(left, 1.0))
            except TimeoutError:
                continue
        return self.tries[name]


@pytest.fixture
async def task_service(tmp_path: Path) -> AsyncIterator[Target]:
    """The Task Service: real when ``TASK_SERVICE_CONTRACT_URL`` is set, else the stand-in (defects on)."""
    url = os.environ.get("TASK_SERVICE_CONTRACT_URL", "")
    if url:
        yield Target(url.rstrip("/"), os.environ.get("TASK_SERVICE_CONTRACT_KEY", ""), real=True)
        return
    ts = TaskServiceStandIn(
        media_dir=tmp_path / "media", latency=STAND_IN_LATENCY, webhook_delay=STAND_IN_WEBHOOK_DELAY
    )
    async with serve_app(ts.app()) as served:
        ts.public_url = served
        yield Target(served, ts.api_key, stand_in=ts)
    await ts.aclose()


@pytest.fixture
async def sink() -> AsyncIterator[WebhookSink]:
    """A webhook receiver on 127.0.0.1."""
    receiver = WebhookSink()
    async with serve_app(receiver.app()) as url:
        receiver.url = url
        yield receiver


@pytest.fixture
def project() -> str:
    """A Task Service project id of this test alone (so its task list holds only this test's jobs)."""
    return f"contract-{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def brain() -> AsyncIterator[Target]:
    """The Brain: real when ``BRAIN_CONTRACT_URL`` is set, else the stand-in (the deployed build's dialect)."""
    url = os.environ.get("BRAIN_CONTRACT_URL", "")
    if url:
        yield Target(url.rstrip("/"), real=True)
        return
    stand_in = BrainStandIn()
    async with serve_app(stand_in.app()) as served:
        yield Target(served.replace("http://", "ws://"), stand_in=stand_in)


@pytest.fixture
async def auto_movie(tmp_path: Path) -> AsyncIterator[Target]:
    """Auto-Movie: real when ``AUTO_MOVIE_CONTRACT_URL`` is set, else the stand-in."""
    url = os.environ.get("AUTO_MOVIE_CONTRACT_URL", "")
    if url:
        env = {
            k: os.environ.get(f"AUTO_MOVIE_CONTRACT_{k.upper()}", "")
            for k in ("email", "password", "project")
        }
        yield Target(url.rstrip("/"), "any-bearer", real=True, extra=env)
        return
    am = AutoMovieStandIn(store_file=tmp_path / "am" / "projects.json")
    project = am.seed("66f1c0de5a1b2c3d4e5f0001", "Contract Project")
    async with serve_app(am.app()) as served:
        yield Target(served, am.api_token, stand_in=am,
                     extra={"email": am.email, "password": am.password, "project": project["id"]})  # fmt: skip
