"""Everything that talks to the outside world: Redis (embedded server, checkpointer) and services."""

from adapters._auto_movie import PHASES, STATUSES, AutoMovieClient, normalise_genre
from adapters._brain import BrainClient
from adapters._checkpointer import RedisCheckpointSaver
from adapters._embedded_cluster import EmbeddedCluster
from adapters._embedded_redis import EmbeddedRedis, default_data_dir, find_redis_server, free_port
from adapters._integrity import IntegrityError, SignedSerializer, Signer, place
from adapters._llm import LLMWriter
from adapters._pipeliner import ScriptPipeliner
from adapters._redis import AnyRedis, ChannelHub, Watchers, connect_redis, follow, is_cluster_url, open_redis
from adapters._resilience import (
    BreakerBoard,
    CircuitOpenError,
    RetryPolicy,
    ServiceGuard,
    set_testing,
)
from adapters._tasks import TASK_DATA_KEYS, TaskServiceClient, translate_http_error
from adapters._workflows import TERMINAL, RunTicket, StoreEvent, WorkflowRecord, WorkflowStore
from adapters.errors import (
    DataDirLockedError,
    EmbeddedRedisError,
    OrchestratorError,
    PermanentError,
    RecoverableError,
    TransientError,
)

__all__ = [
    "PHASES",
    "STATUSES",
    "TASK_DATA_KEYS",
    "TERMINAL",
    "AnyRedis",
    "AutoMovieClient",
    "BrainClient",
    "BreakerBoard",
    "ChannelHub",
    "CircuitOpenError",
    "DataDirLockedError",
    "EmbeddedCluster",
    "EmbeddedRedis",
    "EmbeddedRedisError",
    "IntegrityError",
    "LLMWriter",
    "OrchestratorError",
    "PermanentError",
    "RecoverableError",
    "RedisCheckpointSaver",
    "RetryPolicy",
    "RunTicket",
    "ScriptPipeliner",
    "ServiceGuard",
    "SignedSerializer",
    "Signer",
    "StoreEvent",
    "TaskServiceClient",
    "TransientError",
    "Watchers",
    "WorkflowRecord",
    "WorkflowStore",
    "connect_redis",
    "default_data_dir",
    "find_redis_server",
    "follow",
    "free_port",
    "is_cluster_url",
    "normalise_genre",
    "open_redis",
    "place",
    "set_testing",
    "translate_http_error",
]
