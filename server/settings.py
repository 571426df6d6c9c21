"""The one settings object, read once at start from the environment (and `*_FILE` secrets)."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from adapters import default_data_dir

__all__ = ["Settings"]


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

    worker_concurrency: int = Field(default=1000, ge=1, le=100_000)
    lease_seconds: float = Field(default=30.0, gt=0.5)
    retention_days: float = Field(default=30.0, gt=0)
    checkpoint_ttl_days: float | None = Field(default=None, gt=0)

    task_service_url: str = ""
    task_service_api_key: SecretStr = SecretStr("")
    task_poll_seconds: float = Field(default=5.0, gt=0)
    webhook_base_url: str = Field(default="", description="public base URL of this service's HTTP port")
    webhook_secret: SecretStr | None = Field(default=None, description="signs per-job webhook tokens")

    brain_url: str = ""
    brain_api_key: SecretStr = SecretStr("")
    brain_dialect: Literal["mcp", "legacy"] = "mcp"

    auto_movie_url: str = ""
    auto_movie_token: SecretStr = SecretStr("")
    payload_email: str = ""
    payload_password: SecretStr = SecretStr("")

    llm_url: str = Field(default="", description="OpenAI-compatible base URL; unset uses the local writer")
    llm_api_key: SecretStr = SecretStr("")
    llm_model: str = ""

    media_dir: Path | None = Field(default=None, description="where deliverables are written")
    breaker_fail_max: int = Field(default=5, ge=1)
    breaker_reset_seconds: float = Field(default=30.0, gt=0)

    brief_max_chars: int = Field(default=20_000, ge=100)

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
