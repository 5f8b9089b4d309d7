"""A ``temporal server start-dev`` process for tests and benchmarks."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from testrig.processes import (
    LOOPBACK,
    ContextManagerMixin,
    Process,
    ServerStartError,
    clean_env,
    find_temporal_cli,
    free_port,
    port_accepts,
    tail,
    wait_http,
)

__all__ = ["TemporalDevServer"]


class TemporalDevServer(ContextManagerMixin):
    """A ``temporal server start-dev`` process on the loopback interface.

    The UI is disabled (``--headless``) unless ``ui_port`` is given, and the
    HTTP API and metrics ports are left to the server, which picks random free
    ones, so several dev servers can run side by side.

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
        ui_port: int | None = None,
        ui_codec_endpoint: str | None = None,
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
            ui_port: Serve the Web UI on this loopback port (no news fetch: no
                traffic leaves the machine); ``None`` runs headless.
            ui_codec_endpoint: The UI's codec server URL (``--ui-codec-endpoint``).
        """
        self._requested_port = port
        self.namespace = namespace
        self.db_filename = db_filename
        self._requested_log_path = Path(log_path) if log_path else None
        self.startup_timeout = startup_timeout
        self.extra_args = list(extra_args)
        self.ui_port = ui_port
        self.ui_codec_endpoint = ui_codec_endpoint
        self._port: int | None = None
        self._proc: Process | None = None
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
        return f"{LOOPBACK}:{self.port}"

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
            proc = Process(self._argv(cli, port), self._log_file())
            try:
                self._wait_ready(cli, proc, port, started)
                if self.ui_port is not None:
                    remaining = self.startup_timeout - (time.monotonic() - started)
                    wait_http(self.ui_url, max(remaining, 1.0), proc)
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
            *self._ui_args(),
            "--ip",
            LOOPBACK,
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

    def _ui_args(self) -> list[str]:
        if self.ui_port is None:
            return ["--headless"]
        args = ["--ui-ip", LOOPBACK, "--ui-port", str(self.ui_port), "--ui-disable-news-fetch"]
        if self.ui_codec_endpoint:
            args += ["--ui-codec-endpoint", self.ui_codec_endpoint]
        return args

    @property
    def ui_url(self) -> str:
        """The Web UI's URL (only with ``ui_port``)."""
        if self.ui_port is None:
            raise RuntimeError("TemporalDevServer runs headless: give it a ui_port")
        return f"http://{LOOPBACK}:{self.ui_port}"

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

    def _wait_ready(self, cli: str, proc: Process, port: int, started: float) -> None:
        deadline = started + self.startup_timeout
        probe = [
            cli,
            "operator",
            "namespace",
            "describe",
            "--namespace",
            self.namespace,
            "--address",
            f"{LOOPBACK}:{port}",
            "--command-timeout",
            "5s",
            "--disable-config-file",
            "--disable-config-env",
            "--output",
            "none",
        ]
        env = clean_env(["TEMPORAL_"])
        while True:
            if proc.exited():
                raise ServerStartError(
                    f"temporal dev server exited with code {proc.popen.returncode} "
                    f"during startup; log tail ({proc.log_path}):\n{tail(proc.log_path)}"
                )
            # Cheap TCP check first so we only spawn the CLI once it can work.
            if port_accepts(port):
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
                    f"{tail(proc.log_path)}"
                )
            time.sleep(0.1)
