"""Resource change notifications across instances, through Redis pub/sub, for both MCP generations.

Every workflow change is published on ``P:changed:<wid>`` by the store (whichever instance made it).
Each instance listens there and tells its own subscribers:
- 2026-07-28 clients (``subscriptions/listen``) through `RedisSubscriptionBus`, the SDK's bus seam;
- handshake-era clients (``resources/subscribe``) through `send_resource_updated` on their session.
Events a server publishes itself (``ctx.notify_resource_updated``) go through ``P:mcp-events`` so
they reach subscribers on every instance too.

Handshake-era clients of Streamable HTTP have no connection to deliver on: their session (the
``Mcp-Session-Id`` the HTTP port issues on ``initialize``) keeps its subscriptions in Redis
(`adapters.HttpSessions`), and the standalone GET stream of that session, on whichever instance it is
open, sends the updates (`server.web`). A subscription over HTTP without a session is refused: it
would be accepted and never delivered.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import re
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import mcp_types as types
import structlog
from mcp.server.subscriptions import ResourcesListChanged, ResourceUpdated, ServerEvent
from mcp.shared.exceptions import MCPError

from adapters import AnyRedis, ChannelHub, HttpSessions

__all__ = ["HTTP_SESSION", "RedisNotifier", "RedisSubscriptionBus"]

log = structlog.get_logger(__name__)

_WID_IN_URI = re.compile(r"^workflow://([^/]+)/")

# Set by the HTTP port for a request that may subscribe: the request's session id ("" when it carries no
# session this server knows, so a subscription there is refused); unset on every other transport.
HTTP_SESSION: contextvars.ContextVar[str | None] = contextvars.ContextVar("mo_http_session", default=None)
_NO_SESSION = (
    "resources/subscribe over Streamable HTTP needs a session: send the Mcp-Session-Id this server issued on "
    "initialize with every request, and open the GET stream the updates are sent on (an unknown or expired "
    "session: initialize again). At 2026-07-28 subscribe with subscriptions/listen."
)


class RedisSubscriptionBus:
    """The SDK's SubscriptionBus over Redis: publish goes to Redis, every instance delivers locally."""

    def __init__(self, notifier: RedisNotifier) -> None:
        self._notifier = notifier

    async def publish(self, event: ServerEvent) -> None:
        """Send the event to every instance (this one included)."""
        if isinstance(event, ResourceUpdated):
            payload = {"kind": "resource_updated", "uri": str(event.uri)}
        else:
            payload = {"kind": type(event).__name__}
        await self._notifier.redis.publish(self._notifier.events_channel, json.dumps(payload))

    def subscribe(self, listener: Callable[[ServerEvent], None]) -> Callable[[], None]:
        """Register a local listener; returns its unsubscribe callable."""
        token = object()
        self._notifier.listeners[token] = listener

        def unsubscribe() -> None:
            self._notifier.listeners.pop(token, None)

        return unsubscribe


class RedisNotifier(ChannelHub):
    """Forwards workflow changes and bus events from Redis to this instance's MCP subscribers, and
    to this instance's status waits (`watch`).

    Args:
        redis: client for pub/sub.
        prefix: deployment key prefix.
        may_see: async check that a subscribing caller may see a workflow (None: anyone).
    """

    def __init__(
        self, redis: AnyRedis, prefix: str, may_see: Callable[[str], Awaitable[bool]] | None = None
    ) -> None:
        self.events_channel = f"{prefix}:mcp-events"
        self.http_sessions = HttpSessions(redis, prefix, self.events_channel)
        super().__init__(
            redis, "subscriptions", patterns=[f"{prefix}:changed:*"], channels=[self.events_channel]
        )
        self.prefix = prefix
        self.listeners: dict[object, Callable[[ServerEvent], None]] = {}
        self.sessions: dict[str, set[Any]] = {}
        self.bus = RedisSubscriptionBus(self)
        self._may_see = may_see
        self._sends: set[asyncio.Task[None]] = set()
        self.delivered = 0

    # -- handshake-era handlers -----------------------------------------------------------------

    async def on_subscribe(self, ctx: Any, params: types.SubscribeRequestParams) -> types.EmptyResult:
        """``resources/subscribe``: remember the session for the URI (an HTTP session: in Redis)."""
        uri = str(params.uri)
        http = HTTP_SESSION.get()
        if http == "":
            raise MCPError(code=types.INVALID_REQUEST, message=_NO_SESSION)
        match = _WID_IN_URI.match(uri)
        if match and self._may_see is not None and not await self._may_see(match.group(1)):
            raise MCPError(code=types.INVALID_PARAMS, message=f"unknown resource {uri!r}")
        if http is not None:
            await self.http_sessions.subscribe(http, uri)
        else:
            self.sessions.setdefault(uri, set()).add(ctx.session)
        return types.EmptyResult()

    async def on_unsubscribe(self, ctx: Any, params: types.UnsubscribeRequestParams) -> types.EmptyResult:
        """``resources/unsubscribe``: forget the session for the URI."""
        http = HTTP_SESSION.get()
        if http:
            await self.http_sessions.unsubscribe(http, str(params.uri))
        elif http is None:
            self.sessions.get(str(params.uri), set()).discard(ctx.session)
        return types.EmptyResult()

    @contextlib.contextmanager
    def session_changes(self, sid: str) -> Iterator[asyncio.Queue[str]]:
        """Notices of an HTTP session's changes (its subscriptions, or its end) from any instance."""
        with self.watch(f"http-session:{sid}") as queue:
            yield queue

    # -- delivery -------------------------------------------------------------------------------

    def _deliver(self, event: ServerEvent) -> None:
        for listener in list(self.listeners.values()):
            try:
                listener(event)
            except Exception:  # fan-out boundary: one listener must not starve the others
                log.exception("subscriptions.listener_failed")
        if isinstance(event, ResourceUpdated):
            for session in list(self.sessions.get(str(event.uri), ())):
                task = asyncio.get_running_loop().create_task(self._send(session, str(event.uri)))
                self._sends.add(task)
                task.add_done_callback(self._sends.discard)
        self.delivered += 1

    async def _send(self, session: Any, uri: str) -> None:
        try:
            await session.send_resource_updated(uri)
        except Exception:
            for subscribers in self.sessions.values():
                subscribers.discard(session)

    @staticmethod
    def uris_for(wid: str, what: str) -> list[str]:
        """The resources a change of a workflow touches."""
        uris = [f"workflow://{wid}/state", f"workflow://{wid}/events"]
        if what.startswith(("decision.", "workflow.", "run.")):
            uris.append(f"workflow://{wid}/decisions")
        if what.startswith(("step.", "run.", "workflow.")):
            uris.append(f"workflow://{wid}/checkpoints")
        return uris

    def on_message(self, channel: str, data: str) -> None:
        """A workflow's change notice: to its status waits (keyed by workflow id) and subscribers."""
        changed = f"{self.prefix}:changed:"
        if channel.startswith(changed):
            wid = channel[len(changed) :]
            self.deliver(wid, data)
            if self.listeners or self.sessions:
                for uri in self.uris_for(wid, data):
                    self._deliver(ResourceUpdated(uri=uri))
            return
        event = json.loads(data)
        if event.get("kind") == "http_session":
            self.deliver(f"http-session:{event.get('sid', '')}", "changed")
        elif event.get("kind") == "resource_updated":
            self._deliver(ResourceUpdated(uri=event["uri"]))
        elif event.get("kind") == "ResourcesListChanged":
            self._deliver(ResourcesListChanged())
