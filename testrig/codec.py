"""``casstore serve`` in a child process, for the codec-server tests."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping
from pathlib import Path

from testrig.processes import ServerStartError

__all__ = ["CodecServerProcess"]

_READY = "casstore serve: listening on "


class CodecServerProcess:
    """Start ``python -m casstore serve ARGS`` and wait for the URL it prints once listening.

    Args:
        *args: ``casstore serve`` arguments (give ``--port 0``).
        env: The child's environment (default: this process's).
        cwd: The child's working directory (modules for ``--codec`` import from it).
        startup_timeout: Seconds to wait for the "listening on" line.
        max_open_files: The child's descriptor limit (``RLIMIT_NOFILE``), if given.

    Raises:
        ServerStartError: If it exits or prints something else first, with its output.
    """

    def __init__(
        self,
        *args: str,
        env: Mapping[str, str] | None = None,
        cwd: str | Path | None = None,
        startup_timeout: float = 30.0,
        max_open_files: int | None = None,
    ) -> None:
        def limit_files() -> None:
            if max_open_files is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (max_open_files, max_open_files))

        self.proc = subprocess.Popen(
            [sys.executable, "-m", "casstore", "serve", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=dict(env if env is not None else os.environ),
            cwd=cwd,
            preexec_fn=limit_files if max_open_files is not None else None,
        )
        stdout = self.proc.stdout
        assert stdout is not None
        first: list[str] = []
        reader = threading.Thread(target=lambda: first.append(stdout.readline()), daemon=True)
        reader.start()
        reader.join(startup_timeout)
        line = first[0] if first else ""
        if not line.startswith(_READY):
            self.proc.kill()
            rest = self.proc.communicate(timeout=10)[0]
            raise ServerStartError(f"casstore serve did not start: {line}{rest}")
        self.url = line[len(_READY) :].strip()

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> tuple[int, str]:
        """Send ``sig``; return its exit code and the output it printed after the URL."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            out = self.proc.communicate(timeout=30)[0]
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out = self.proc.communicate()[0]
        return self.proc.returncode, out
