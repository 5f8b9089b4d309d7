"""Debian's ``redis-server`` on a free loopback port, with a temporary directory.

``make test`` installs the package when it is missing (``apt-get install
redis-server``); :func:`find_redis_server` looks on ``PATH`` and in
``/usr/bin``. The server keeps no snapshot or append-only file (nothing
survives it), binds to loopback only and starts with ``maxmemory-policy
noeviction``; a test changes settings with ``CONFIG SET`` on :attr:`url`.
"""

from __future__ import annotations

import shutil
import socket
import tempfile
import time
from pathlib import Path

from testrig.processes import (
    LOOPBACK,
    ContextManagerMixin,
    Process,
    ServerStartError,
    free_port,
    tail,
)

__all__ = ["RedisServer", "find_redis_server"]


def find_redis_server() -> str:
    """Return the path of ``redis-server``.

    Raises:
        FileNotFoundError: If it is not installed (``apt-get install redis-server``).
    """
    found = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if Path("/usr/bin/redis-server").is_file() else None
    )
    if found is None:
        raise FileNotFoundError(
            "redis-server not found: run `make test` (or `apt-get install redis-server`)"
        )
    return found


def _pings(port: int) -> bool:
    try:
        with socket.create_connection((LOOPBACK, port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer(ContextManagerMixin):
    """``redis-server`` on a free loopback port; its directory is removed when it stops."""

    def __init__(self, *, startup_timeout: float = 30.0) -> None:
        self.startup_timeout = startup_timeout
        self._proc: Process | None = None
        self._workdir: Path | None = None
        self._port: int | None = None

    @property
    def port(self) -> int:
        """The port it listens on (once started)."""
        if self._port is None:
            raise RuntimeError("RedisServer is not started")
        return self._port

    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)``, for a proxy in front of it."""
        return LOOPBACK, self.port

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:P/0``."""
        return f"redis://{LOOPBACK}:{self.port}/0"

    def start(self) -> None:
        """Launch the server and wait until it answers ``PING``. Idempotent.

        Raises:
            ServerStartError: If it exits or does not answer in time.
            FileNotFoundError: If ``redis-server`` is not installed.
        """
        if self._proc is not None:
            return
        executable = find_redis_server()
        self._workdir = Path(tempfile.mkdtemp(prefix="casstore-redis-"))
        try:
            for attempt in range(3):
                port = free_port()
                argv = [
                    executable,
                    *("--port", str(port), "--bind", LOOPBACK),
                    *("--dir", str(self._workdir), "--save", "", "--appendonly", "no"),
                    *("--maxmemory-policy", "noeviction", "--daemonize", "no"),
                ]
                proc = Process(argv, self._workdir / "redis.log")
                if self._wait(proc, port):
                    self._proc, self._port = proc, port
                    return
                proc.stop()
                log = tail(proc.log_path)
                if attempt < 2 and "Address already in use" in log:
                    continue
                raise ServerStartError(f"redis-server did not start on port {port}:\n{log}")
        except BaseException:
            self._remove_workdir()
            raise

    def _wait(self, proc: Process, port: int) -> bool:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline and not proc.exited():
            if _pings(port):
                return True
            time.sleep(0.05)
        return False

    def stop(self) -> None:
        """Stop the server and remove its directory. Idempotent."""
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.stop()
        self._port = None
        self._remove_workdir()

    def _remove_workdir(self) -> None:
        workdir, self._workdir = self._workdir, None
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)
