"""Brain client: MCP over WebSocket (the platform's documented contract) or the deployed build's legacy envelope.

The contract is docs/contracts/brain-service.md (read from jomapps/mcp-brain-service and run against it).
The deployed build serves only the legacy envelope at ``ws://host:port/`` with two tools
(`LEGACY_TOOLS`); its ``/mcp`` refuses the upgrade with 403. ``BRAIN_DIALECT=auto`` (the default) tries
MCP at ``/mcp`` once and, when the upgrade is refused with 403 or 404, speaks the legacy envelope from
then on; ``mcp`` and ``legacy`` force one.

Failures are translated: a dropped socket, a timeout, or the Brain's own embedding/database failure
(``Failed to create character: Jina embedding failed ...``) is transient (the caller's guard retries and
this client reconnects); a tool the Brain does not have is a `CapabilityMissingError` (remembered: later
calls fail at once, and another agent may do the work); any other error it reports about the request is
permanent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import anyio
import structlog
from mcp import Client
from mcp.shared.exceptions import MCPError
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from adapters._ws_mcp import websocket_client
from adapters.errors import CapabilityMissingError, OutsideError, PermanentError, TransientError

__all__ = ["BRAIN_DIALECTS", "LEGACY_TOOLS", "BrainClient"]

log = structlog.get_logger(__name__)

BRAIN_DIALECTS = ("auto", "mcp", "legacy")
# The deployed build's tools (its WebSocket handler knows exactly these two).
LEGACY_TOOLS = ("create_character", "find_similar_characters")
# Its error replies about work it could not do now (embedding service or graph database down).
_TRANSIENT_PREFIXES = ("Failed to create character:", "Failed to find similar characters:")


class _NoMcpEndpoint(Exception):
    """The Brain refused the MCP upgrade with 403/404: it speaks the legacy envelope only."""


def _reply_error(tool: str, message: str) -> OutsideError:
    """The error of a Brain error reply, classified by what the message says."""
    msg = f"brain {tool} refused: {message}"
    if message.startswith("Unknown tool"):
        return CapabilityMissingError(msg).about(service="brain", operation=tool, reason=message)
    if message.startswith(_TRANSIENT_PREFIXES) and "validation error" not in message:
        return TransientError(msg).about(service="brain", operation=tool, reason=message)
    return PermanentError(msg).about(service="brain", operation=tool, reason=message)


def _with_path(url: str, path: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


class BrainClient:
    """Client of the Brain service in either dialect.

    Args:
        url: the Brain's WebSocket base, e.g. ``ws://127.0.0.1:8002`` (``/mcp`` or ``/`` is appended).
        api_key: bearer key for the MCP dialect (the legacy build has no auth); never logged.
        dialect: ``auto`` (MCP, else legacy when ``/mcp`` refuses the upgrade), ``mcp`` or ``legacy``.
        call_timeout: seconds one call may take.
        legacy_sockets: sockets kept for the legacy dialect (it answers one request per socket at a time).
    """

    service = "brain"

    def __init__(
        self,
        url: str,
        *,
        api_key: str = "",
        dialect: str = "auto",
        call_timeout: float = 15.0,
        legacy_sockets: int = 4,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if dialect not in BRAIN_DIALECTS:
            msg = f"BRAIN_DIALECT must be one of {', '.join(BRAIN_DIALECTS)}, not {dialect!r}"
            raise ValueError(msg)
        self.dialect = dialect
        self.mcp_url = _with_path(url, "/mcp")
        self.legacy_url = _with_path(url, "/")
        self._key = api_key
        self.call_timeout = call_timeout
        self._client: Client | None = None
        self._client_stack: contextlib.AsyncExitStack | None = None
        self._connect_lock = asyncio.Lock()
        self._tools: list[str] = []
        self._missing: set[str] = set()
        self._sockets: asyncio.Queue[ClientConnection | None] = asyncio.Queue()
        for _ in range(legacy_sockets):
            self._sockets.put_nowait(None)
        self.reconnects = 0
        # wss:// is verified against the system CAs, or this context's (a configured CA bundle); never off.
        self._ssl = ssl_context

    # -- MCP dialect --------------------------------------------------------------------------

    async def _session(self) -> Client:
        async with self._connect_lock:
            if self._client is not None:
                return self._client
            if self.dialect == "legacy":  # another call found out while this one waited for the lock
                raise _NoMcpEndpoint
            stack = contextlib.AsyncExitStack()
            headers = {"Authorization": f"Bearer {self._key}"} if self._key else {}
            try:
                transport = websocket_client(
                    self.mcp_url, headers=headers, open_timeout=self.call_timeout,
                    ssl_context=self._ssl if self.mcp_url.startswith("wss://") else None,
                )  # fmt: skip
                client = await stack.enter_async_context(Client(transport, mode="legacy"))
                self._tools = [t.name for t in (await client.list_tools()).tools]
            except BaseException as exc:
                await stack.aclose()
                refused = _upgrade_refusal(exc)
                if self.dialect != "mcp" and refused in {403, 404}:
                    raise _NoMcpEndpoint from exc
                raise self._translate(exc) from exc
            self._client, self._client_stack = client, stack
            self.reconnects += 1
            log.info("brain.connected", dialect="mcp", tools=self._tools)
            return client

    async def _drop(self) -> None:
        stack, self._client, self._client_stack = self._client_stack, None, None
        if stack is not None:
            with contextlib.suppress(BaseException):
                await stack.aclose()

    async def tools(self) -> list[str]:
        """Tool names the Brain offers (MCP: discovered with tools/list; legacy: its two, as the build has)."""
        if self.dialect == "auto":
            try:
                await self._session()
            except _NoMcpEndpoint:
                self._to_legacy()
        if self.dialect == "legacy":
            return [t for t in LEGACY_TOOLS if t not in self._missing]
        await self._session()
        return list(self._tools)

    def _to_legacy(self) -> None:
        if self.dialect == "legacy":
            return
        log.warning("brain.dialect_fallback", refused=self.mcp_url, using=self.legacy_url,
                    reason="the Brain refused the MCP upgrade (403/404): it is the legacy build")  # fmt: skip
        self.dialect = "legacy"

    async def _call_mcp(self, tool: str, args: dict[str, Any]) -> dict[str, Any]:
        client = await self._session()
        if self._tools and tool not in self._tools:
            msg = f"the Brain offers no tool {tool!r}; it has {self._tools}"
            raise CapabilityMissingError(msg).about(service="brain", operation=tool, reason=msg)
        try:
            result = await asyncio.wait_for(client.call_tool(tool, args), self.call_timeout)
        except (TimeoutError, MCPError, OSError, anyio.ClosedResourceError, anyio.BrokenResourceError) as exc:
            # A lost socket surfaces as MCPError (connection closed) from the session layer.
            await self._drop()
            raise self._translate(exc) from exc
        if result.is_error:
            text = " ".join(getattr(c, "text", "") for c in result.content)
            raise _reply_error(tool, text[:500])
        data = result.structured_content
        if data is None:
            text = "".join(getattr(c, "text", "") for c in result.content)
            data = json.loads(text) if text else {}
        return dict(data)

    # -- legacy dialect -----------------------------------------------------------------------

    async def _call_legacy(self, tool: str, args: dict[str, Any]) -> dict[str, Any]:
        ws = await self._sockets.get()
        try:
            if ws is None:
                extra: dict[str, Any] = (
                    {"ssl": self._ssl} if self._ssl and self.legacy_url.startswith("wss://") else {}
                )
                ws = await connect(self.legacy_url, open_timeout=self.call_timeout, **extra)
                self.reconnects += 1
            await ws.send(json.dumps({"tool": tool, **args}))
            raw = await asyncio.wait_for(ws.recv(), self.call_timeout)
        except (ConnectionClosed, InvalidHandshake, OSError, TimeoutError) as exc:
            if ws is not None:
                with contextlib.suppress(Exception):
                    await ws.close()
            ws = None
            raise self._translate(exc) from exc
        finally:
            self._sockets.put_nowait(ws)
        reply = json.loads(raw)
        if reply.get("status") == "error":
            raise _reply_error(tool, str(reply.get("message", "")))
        return dict(reply)

    # -- common -------------------------------------------------------------------------------

    def _translate(self, exc: BaseException) -> Exception:
        if isinstance(exc, OutsideError):
            return exc
        refused = _upgrade_refusal(exc)
        if refused is not None:
            msg = f"brain refused the WebSocket upgrade with HTTP {refused}"
            return TransientError(msg) if refused >= 500 else PermanentError(msg)
        if isinstance(exc, TimeoutError):
            return TransientError(f"brain did not answer within {self.call_timeout}s")
        return TransientError(f"brain connection failed: {type(exc).__name__}: {exc}")

    async def call(self, tool: str, args: dict[str, Any]) -> dict[str, Any]:
        """Call a Brain tool in the configured dialect; returns its JSON answer.

        Raises:
            CapabilityMissingError: the Brain has no such tool (remembered: no further round trips).
            TransientError: unreachable, dropped, slow, or its embedding/database failed.
            PermanentError: it refused the request itself.
        """
        if tool in self._missing:
            msg = f"brain {tool} refused: Unknown tool: {tool} (this Brain offers {list(LEGACY_TOOLS)})"
            reason = f"Unknown tool: {tool}"
            raise CapabilityMissingError(msg).about(service="brain", operation=tool, reason=reason)
        try:
            if self.dialect == "auto":
                try:
                    return await self._call_mcp(tool, args)
                except _NoMcpEndpoint:
                    self._to_legacy()
            if self.dialect == "mcp":
                return await self._call_mcp(tool, args)
            return await self._call_legacy(tool, args)
        except CapabilityMissingError:
            self._missing.add(tool)
            raise

    async def create_character(self, project_id: str, name: str, personality: str, appearance: str) -> str:
        """Create a character; returns its id."""
        reply = await self.call(
            "create_character",
            {"project_id": project_id, "name": name, "personality_description": personality,
             "appearance_description": appearance},
        )  # fmt: skip
        return str(reply["character_id"])

    async def find_similar_characters(self, project_id: str, query: str) -> list[dict[str, Any]]:
        """Characters of the project most similar to `query`, best first."""
        reply = await self.call("find_similar_characters", {"project_id": project_id, "query": query})
        return list(reply.get("results", []))

    async def store_knowledge(self, project_id: str, content: str, kind: str = "note") -> str:
        """Store a knowledge node; returns its id."""
        reply = await self.call(
            "store_knowledge", {"project_id": project_id, "content": content, "type": kind}
        )
        return str(reply.get("node_id", ""))

    async def search(self, project_id: str, query: str, top_k: int = 5) -> list[dict[str, Any]]:
        """Semantic search over the project's stored texts and knowledge."""
        reply = await self.call(
            "search_embeddings", {"project_id": project_id, "query": query, "top_k": top_k}
        )
        return list(reply.get("results", []))

    async def aclose(self) -> None:
        """Close every connection."""
        await self._drop()
        while not self._sockets.empty():
            ws = self._sockets.get_nowait()
            if ws is not None:
                with contextlib.suppress(Exception):
                    await ws.close()


def _upgrade_refusal(exc: BaseException) -> int | None:
    """The HTTP status of a refused WebSocket upgrade in `exc` (or in an exception group around it)."""
    if isinstance(exc, InvalidStatus):
        return int(exc.response.status_code)
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            code = _upgrade_refusal(inner)
            if code is not None:
                return code
    cause = exc.__cause__ or exc.__context__
    return _upgrade_refusal(cause) if isinstance(cause, BaseException) and cause is not exc else None
