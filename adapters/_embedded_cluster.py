"""A private 3-master Redis Cluster on loopback ports, from the same redis-server binary as EmbeddedRedis."""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import redis

from adapters._embedded_redis import EmbeddedRedis, find_redis_server
from adapters.errors import EmbeddedRedisError

__all__ = ["EmbeddedCluster"]


@dataclass
class EmbeddedCluster:
    """Start `masters` cluster-enabled redis-servers, join them with `redis-cli --cluster create`.

    For tests and benchmarks: no replicas, AOF in `data_dir/n<i>`, each node dies with this process.

    Args:
        data_dir: parent folder of the nodes' data folders.
        masters: how many masters share the 16384 slots (Redis needs at least 3).
        ready_timeout: seconds to wait for `cluster_state:ok` on every node.
    """

    data_dir: Path
    masters: int = 3
    ready_timeout: float = 30.0
    nodes: list[EmbeddedRedis] = field(default_factory=list, init=False)

    @property
    def url(self) -> str:
        """A `redis+cluster://` URL (any node seeds the client's slot map)."""
        return f"redis+cluster://127.0.0.1:{self.nodes[0].port}"

    @property
    def ports(self) -> list[int]:
        """The masters' TCP ports."""
        return [n.port for n in self.nodes]

    def start(self) -> EmbeddedCluster:
        """Start the nodes, create the cluster and wait until every node reports it ok.

        Raises:
            EmbeddedRedisError: a node did not start or the cluster did not become ok in time.
        """
        if self.nodes:
            return self
        try:
            for i in range(self.masters):
                node = EmbeddedRedis(
                    data_dir=self.data_dir / f"n{i}",
                    transport="tcp",
                    extra_args=["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                                "--cluster-node-timeout", "2000"],
                )  # fmt: skip
                self.nodes.append(node.start())
            self._create()
            self._wait_ok()
        except BaseException:
            self.stop()
            raise
        return self

    def _create(self) -> None:
        cli = str(Path(find_redis_server()).with_name("redis-cli"))
        addrs = [f"127.0.0.1:{n.port}" for n in self.nodes]
        done = subprocess.run(
            [cli, "--cluster", "create", *addrs, "--cluster-replicas", "0", "--cluster-yes"],
            capture_output=True,
            timeout=60,
            check=False,
        )
        if done.returncode != 0:
            msg = f"redis-cli --cluster create failed: {done.stdout.decode(errors='replace')[-300:]}"
            raise EmbeddedRedisError(msg)

    def _wait_ok(self) -> None:
        deadline = time.monotonic() + self.ready_timeout
        for n in self.nodes:
            client = redis.Redis(port=n.port)
            try:
                while client.execute_command("CLUSTER INFO").get("cluster_state") != "ok":  # type: ignore[no-untyped-call]
                    if time.monotonic() > deadline:
                        msg = f"the cluster did not become ok within {self.ready_timeout}s (node {n.port})"
                        raise EmbeddedRedisError(msg)
                    time.sleep(0.05)
            finally:
                client.close()

    def used_memory(self) -> int:
        """Bytes of `used_memory` summed over the masters."""
        total = 0
        for n in self.nodes:
            client = redis.Redis(port=n.port)
            try:
                total += int(client.info("memory")["used_memory"])
            finally:
                client.close()
        return total

    def stop(self) -> None:
        """Stop every node."""
        nodes, self.nodes = self.nodes, []
        for n in nodes:
            n.stop()

    def __enter__(self) -> EmbeddedCluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
