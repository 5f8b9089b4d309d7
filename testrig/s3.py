"""Local S3-compatible servers for tests and benchmarks: moto and ``rclone serve s3``."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from testrig.processes import (
    HTTP,
    LOOPBACK,
    ContextManagerMixin,
    Process,
    ServerStartError,
    find_rclone,
    free_port,
    wait_http,
)

__all__ = ["MotoS3Server", "RcloneS3Server", "S3Server"]

_DEFAULT_ACCESS_KEY = "AKIATEST"
_DEFAULT_SECRET_KEY = "SECRETTEST"
_DEFAULT_REGION = "us-east-1"


class S3Server(ContextManagerMixin):
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
            ip_address=LOOPBACK, port=self._requested_port or 0, verbose=False
        )
        server.start()
        host, port = server.get_host_and_port()
        self._server = server
        self._endpoint_url = f"http://{host}:{port}"
        try:
            wait_http(self._endpoint_url + "/", 30.0, None)
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
        with HTTP.open(request, timeout=10) as response:
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
        self._proc: Process | None = None
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
                proc = Process(self._argv(rclone, root, port), log)
                url = f"http://{LOOPBACK}:{port}"
                try:
                    wait_http(url + "/", started + self.startup_timeout - time.monotonic(), proc)
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
            f"{LOOPBACK}:{port}",
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
