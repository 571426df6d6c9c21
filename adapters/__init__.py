"""Everything that talks to the outside world: Redis (embedded server, checkpointer, stores) and services.

Public: what `graphs` and `server` may use. Everything in a ``_module`` is private to this package.
Every failure leaves this package as a member of the one error tree in `adapters.errors`; traces (the
OpenTelemetry API, no SDK) are made through `adapters.tracing`.
"""

from adapters import errors, tracing
from adapters._auto_movie import PHASES, PROJECT_STATUSES, AutoMovieClient, normalise_genre
from adapters._brain import BRAIN_DIALECTS, LEGACY_TOOLS, BrainClient
from adapters._checkpointer import RedisCheckpointSaver
from adapters._cpu_gate import CpuGate, RunTurn, outside
from adapters._embedded_cluster import EmbeddedCluster
from adapters._embedded_redis import (
    EmbeddedRedis,
    default_data_dir,
    die_with_parent,
    find_redis_server,
    free_port,
)
from adapters._http_sessions import HttpSessions
from adapters._integrity import SignedSerializer, Signer, place
from adapters._keys import KEEP, ROLES, KeyInfo, KeyStore, SecurityAudit
from adapters._llm import LLMWriter
from adapters._pipeliner import ScriptPipeliner
from adapters._quotas import Limits, QuotaStore, Tenancy, TenantUsage
from adapters._redis import AnyRedis, ChannelHub, Watchers, connect_redis, follow, is_cluster_url, open_redis
from adapters._resilience import RetryPolicy, ServiceGuard, SharedBreakers, set_testing
from adapters._tasks import (
    PRIORITY_HIGH,
    PRIORITY_LOW,
    PRIORITY_NORMAL,
    TASK_DATA_KEYS,
    TaskServiceClient,
    task_created_at,
    translate_http_error,
)
from adapters._workflows import (
    TERMINAL,
    RunTicket,
    Status,
    StoreEvent,
    WorkflowRecord,
    WorkflowStore,
)
from adapters._ws_mcp import websocket_client
from adapters.errors import *  # noqa: F403 - the whole error tree is public

__all__ = [
    "BRAIN_DIALECTS",
    "KEEP",
    "LEGACY_TOOLS",
    "PHASES",
    "PRIORITY_HIGH",
    "PRIORITY_LOW",
    "PRIORITY_NORMAL",
    "PROJECT_STATUSES",
    "ROLES",
    "TASK_DATA_KEYS",
    "TERMINAL",
    "AnyRedis",
    "AutoMovieClient",
    "BrainClient",
    "ChannelHub",
    "CpuGate",
    "EmbeddedCluster",
    "EmbeddedRedis",
    "HttpSessions",
    "KeyInfo",
    "KeyStore",
    "LLMWriter",
    "Limits",
    "QuotaStore",
    "RedisCheckpointSaver",
    "RetryPolicy",
    "RunTicket",
    "RunTurn",
    "ScriptPipeliner",
    "SecurityAudit",
    "ServiceGuard",
    "SharedBreakers",
    "SignedSerializer",
    "Signer",
    "Status",
    "StoreEvent",
    "TaskServiceClient",
    "Tenancy",
    "TenantUsage",
    "Watchers",
    "WorkflowRecord",
    "WorkflowStore",
    "connect_redis",
    "default_data_dir",
    "die_with_parent",
    "find_redis_server",
    "follow",
    "free_port",
    "is_cluster_url",
    "normalise_genre",
    "open_redis",
    "outside",
    "place",
    "set_testing",
    "task_created_at",
    "tracing",
    "translate_http_error",
    "websocket_client",
]
__all__ += errors.__all__  # the whole error tree is public
