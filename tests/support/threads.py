"""Seeing which threads the event loop's default executor runs work on."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from typing import Any


class RecordingExecutor(concurrent.futures.ThreadPoolExecutor):
    """A thread pool that records the thread of every job it runs, in ``threads``."""

    def __init__(self, max_workers: int = 2) -> None:
        super().__init__(max_workers=max_workers)
        self.threads: list[int] = []

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        def run() -> Any:
            self.threads.append(threading.get_ident())
            return fn(*args, **kwargs)

        return super().submit(run)

    @classmethod
    def install(cls) -> RecordingExecutor:
        """Make a new one the running loop's default executor, and return it."""
        executor = cls()
        asyncio.get_running_loop().set_default_executor(executor)
        return executor
