"""The one settings object, read once at start from the environment (and `*_FILE` secrets).

Only the process layer (`server.process`) reads it; every other part is given the values it uses.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Any, Literal

import psutil
from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from adapters import default_data_dir

__all__ = ["Settings", "memory_limit_bytes"]


def memory_limit_bytes() -> int:
    """The memory this process may use: its cgroup's limit when it has one, else the machine's memory."""
    total = int(psutil.virtual_memory().total)
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and 0 < int(text) < total:
            return int(text)
    return total


class Settings(BaseSettings):
    """Configuration of one orchestrator process.

    Every field reads the environment variable of the same name in upper case (``REDIS_URL``,
    ``TASK_SERVICE_API_KEY``, ...). Every secret can instead come from a file named by ``<NAME>_FILE``
    (``TASK_SERVICE_API_KEY_FILE=/run/secrets/tasks``), as container secrets are mounted. Secrets are
    ``SecretStr``: they print as ``**********``.
    """

    model_config = SettingsConfigDict(env_prefix="", extra="ignore", frozen=True)

    redis_url: SecretStr | None = Field(
        default=None,
        description="redis://, rediss://, unix:// or redis+cluster:// URL; unset starts an embedded server",
    )
    data_dir: Path = Field(default_factory=default_data_dir, description="embedded redis-server's folder")
    key_prefix: str = Field(default="mo", pattern=r"^[A-Za-z0-9_.:-]{1,32}$")
    instance_id: str = Field(default="", description="name of this instance in leases and events")

    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_file: str = Field(default="", description="write logs to this file instead of stderr")
    event_loop: Literal["auto", "uvloop", "asyncio"] = Field(
        default="auto", description="auto: uvloop when installed, else asyncio's own loop"
    )

    worker_concurrency: int = Field(default=1000, ge=1, le=100_000)
    worker_cpu_turns: int = Field(
        default=16, ge=1, le=100_000,
        description="runs of this process that compute at once; runs waiting on outside services take no turn",
    )  # fmt: skip
    worker_cpu_turns_min: int = Field(
        default=2, ge=1, le=100_000, description="the fewest turns the loop-lag control goes down to"
    )
    worker_loop_lag_target_ms: float = Field(
        default=10.0, ge=0, le=10_000,
        description="while two or more projects compute, turns shrink until the event loop's lag (p90) is "
        "below this; 0: always WORKER_CPU_TURNS",
    )  # fmt: skip
    lease_seconds: float = Field(default=30.0, gt=0.5)
    retention_days: float = Field(default=30.0, gt=0)
    checkpoint_ttl_days: float | None = Field(default=None, gt=0)

    task_service_url: str = ""
    task_service_api_key: SecretStr = SecretStr("")
    task_poll_seconds: float = Field(default=5.0, gt=0)
    task_lost_listings: int = Field(
        default=2, ge=1, le=10,
        description="complete task listings that do not show a job before it is taken as lost and submitted again",
    )  # fmt: skip
    task_lost_confirm_seconds: float = Field(
        default=2.0, gt=0, description="how far apart the listings that find a job absent must start"
    )
    task_unknown_grace_seconds: float = Field(
        default=300.0, gt=0,
        description="a job the service does not list while its listings cannot tell (incomplete, changing) is "
        "waited for this long",
    )  # fmt: skip
    breaker_probe_seconds: float = Field(
        default=2.0,
        gt=0,
        description="while a service's breaker is open, its health route is asked this often",
    )
    task_webhook_grace_seconds: float = Field(
        default=15.0, ge=0, le=600,
        description="a job the Task Service lists as ended waits this long for its webhook, which alone carries "
        "the result and the reason (the service flips the status ~6 s before sending it)",
    )  # fmt: skip
    task_job_max_seconds: float = Field(
        default=1800.0, gt=0,
        description="a job that reports no end at all within this (its record stuck at 'processing') fails its step",
    )  # fmt: skip
    service_connections: int = Field(
        default=16,
        ge=1,
        le=1024,
        description="HTTP connections per outside service (Task Service, Auto-Movie)",
    )
    webhook_base_url: str = Field(default="", description="public base URL of this service's HTTP port")
    webhook_secret: SecretStr | None = Field(default=None, description="signs per-job webhook tokens")

    brain_url: str = ""
    brain_api_key: SecretStr = SecretStr("")
    brain_dialect: Literal["auto", "mcp", "legacy"] = Field(
        default="auto",
        description="auto: MCP at /mcp, and the legacy envelope at / once /mcp refuses the upgrade (the deployed build)",
    )

    auto_movie_url: str = ""
    auto_movie_token: SecretStr = SecretStr("")
    payload_email: str = ""
    payload_password: SecretStr = SecretStr("")

    llm_url: str = Field(default="", description="OpenAI-compatible base URL; unset uses the local writer")
    llm_api_key: SecretStr = SecretStr("")
    llm_model: str = ""

    media_dir: Path | None = Field(default=None, description="where deliverables are written")
    sandbox_webhook_delay_seconds: float = Field(
        default=6.0, ge=0, le=60,
        description="stand-ins only (serve --sandbox, the demo): the Task Service stand-in sends a job's webhook "
        "this long after its status flips, as the real build does (~6 s)",
    )  # fmt: skip
    sandbox_defects: bool = Field(
        default=True,
        description="stand-ins only: mirror the real services' defects (late webhooks, failing video, stuck rows)",
    )
    breaker_fail_max: int = Field(default=5, ge=1)
    breaker_reset_seconds: float = Field(default=30.0, gt=0)

    brief_max_chars: int = Field(default=20_000, ge=100)
    notice_backstop_seconds: float = Field(
        default=5.0, gt=0, le=300,
        description="a waiting get_status re-reads the workflow this often, in case a change notice was lost",
    )  # fmt: skip

    # Per-workflow budgets: the engine stops a workflow that reaches one (a workflow may ask for less).
    budget_agent_executions: int = Field(
        default=1_000,
        ge=1,
        description="agent executions per workflow (the largest allowed production needs ~275)",
    )
    budget_outside_jobs: int = Field(
        default=400,
        ge=1,
        description="Task Service jobs per workflow (the largest allowed production submits ~80)",
    )
    budget_fan_out: int = Field(
        default=50, ge=1, description="parallel branches of one step (the largest allowed production has 24)"
    )
    budget_step_seconds: float = Field(
        default=3_600.0, gt=0, description="wall-clock seconds one step may run, outside jobs included"
    )

    integrity_keys: SecretStr | None = Field(
        default=None,
        description="comma-separated HMAC keys, newest first; unset: a key file in the data folder",
    )
    ca_bundle: str = Field(
        default="", description="CA file to verify outside services' TLS (default: system CAs)"
    )
    redis_ca_file: str = Field(default="", description="CA file to verify a rediss:// server")
    api_key_max_age_days: float = Field(default=90.0, gt=0)
    api_key_warn_days: float = Field(default=7.0, ge=0)
    auth_failures_per_minute: int = Field(default=10, ge=1, description="per source address, then refused")
    trusted_proxies: str = Field(
        default="",
        description="comma-separated addresses or networks (CIDR) of reverse proxies whose X-Forwarded-For "
        "names the caller; unset: none, a caller is always its socket's peer",
    )

    @property
    def media_root(self) -> Path:
        """The media folder: `media_dir`, or ``media`` beside the data folder."""
        return self.media_dir or self.data_dir.parent / "media"

    @property
    def trusted_proxy_list(self) -> list[str]:
        """`trusted_proxies` as a list, each entry checked to be an address or a network."""
        return [p.strip() for p in self.trusted_proxies.split(",") if p.strip()]

    @model_validator(mode="after")
    def _proxies_are_addresses(self) -> Settings:
        for entry in self.trusted_proxy_list:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError as exc:
                msg = f"trusted_proxies: {entry!r} is not an IP address or network (CIDR); use e.g. 10.0.0.5 or 10.0.0.0/24"
                raise ValueError(msg) from exc
        return self

    # -- quotas (0: no limit); a key's own (keys create/quota --max-in-flight/--starts-per-minute) replace QUOTA_KEY_*
    quota_project_max_in_flight: int = Field(
        default=250, ge=0, description="productions of one project queued, running, waiting or paused at once"
    )
    quota_project_starts_per_minute: int = Field(
        default=300, ge=0, description="productions one project may start (or fork) in any 60 s"
    )
    quota_key_max_in_flight: int = Field(
        default=0, ge=0, description="in flight per API key, unless the key sets its own"
    )
    quota_key_starts_per_minute: int = Field(
        default=0, ge=0, description="starts per API key in any 60 s, unless the key sets its own"
    )
    quota_sweep_seconds: float = Field(
        default=30.0,
        gt=0,
        description="how often reservations of workflows that ended in a crash are given back",
    )

    # -- traces: the standard OpenTelemetry variables (the exporter reads the rest of OTEL_EXPORTER_OTLP_*) ----
    otel_sdk_disabled: bool = Field(default=False, description="true: no traces whatever else is set")
    otel_traces_exporter: str = Field(
        default="", description="otlp | console | none; unset: otlp when an OTLP endpoint is set, else none"
    )
    otel_exporter_otlp_endpoint: str = Field(
        default="", description="OTLP/HTTP base URL (/v1/traces is added)"
    )
    otel_exporter_otlp_traces_endpoint: str = Field(default="", description="OTLP/HTTP traces URL, as it is")
    otel_exporter_otlp_protocol: str = Field(default="", description="only http/protobuf is installed")
    otel_service_name: str = Field(default="movie-orchestrator", description="service.name of the spans")

    @property
    def otel_endpoint(self) -> str:
        """The OTLP endpoint traces go to ("" when none is set)."""
        return self.otel_exporter_otlp_traces_endpoint or self.otel_exporter_otlp_endpoint

    # -- work that cannot run away (see the README's "Limits") ----------------------------------------
    run_max_attempts: int = Field(
        default=3, ge=1, le=100,
        description="runs of one workflow that may end their worker in a row before it is quarantined",
    )  # fmt: skip
    memory_high_water_mb: int = Field(
        default=0, ge=0,
        description="above this resident memory the instance claims no new runs; 0: 80% of its memory limit",
    )  # fmt: skip
    state_max_bytes: int = Field(
        default=8 * 2**20, ge=1024, description="ceiling of one serialized value of a workflow's state"
    )
    shutdown_grace_seconds: float = Field(
        default=20.0, gt=0, le=3600,
        description="after SIGTERM the process hands its runs back and exits within this; a second one exits at once",
    )  # fmt: skip

    @property
    def memory_high_water_bytes(self) -> int:
        """The memory mark in bytes (the default: 80% of the memory this process may use)."""
        if self.memory_high_water_mb:
            return self.memory_high_water_mb * 2**20
        return int(memory_limit_bytes() * 0.8)

    @model_validator(mode="before")
    @classmethod
    def _secrets_from_files(cls, data: Any) -> Any:
        """Fill secrets from ``<NAME>_FILE`` when ``<NAME>`` itself is not set."""
        if not isinstance(data, dict):
            return data
        secret_fields = [name for name, f in cls.model_fields.items() if "SecretStr" in str(f.annotation)]
        for name in secret_fields:
            path = os.environ.get(f"{name.upper()}_FILE")
            if path and data.get(name) is None and os.environ.get(name.upper()) is None:
                data[name] = Path(path).read_text().strip()
        return data
