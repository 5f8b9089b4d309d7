"""A chaos proxy for raw TCP protocols (Redis): faults on the wire in front of a real server.

:class:`testrig.chaos.ChaosProxy` understands HTTP requests; Redis speaks its
own protocol over long-lived connections, so :class:`TcpChaosProxy` works on
chunks instead. Each chunk a client sends is, for a configurable share chosen
by a seeded RNG (or for the next ones :meth:`TcpChaosProxy.schedule` names):

==============  ==============================================================
``reset``       reset both connections instead of forwarding it
``reset_after`` forward it, let the server act, then reset before the answer
``silence``     swallow it and never answer (the client must time out)
``latency``     wait ``latency`` seconds, then forward it
==============  ==============================================================

The proxy runs its own event loop in a daemon thread, like ChaosProxy.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
from collections import Counter
from collections.abc import Iterable

from testrig.processes import LOOPBACK, ContextManagerMixin

TCP_FAULTS = ("reset", "reset_after", "silence", "latency")
"""Every fault kind the proxy can inject."""

_SILENCE_LIMIT = 600.0


class TcpChaosProxy(ContextManagerMixin):
    """Forward TCP connections to ``upstream``, injecting faults per client chunk.

    Args:
        upstream: ``(host, port)`` of the real server.
        fault_rate: Share of client chunks (0 to 1) that get a random fault.
        faults: The kinds drawn from (default: all).
        seed: Seed of the RNG.
        latency: Seconds a ``latency`` fault waits.
    """

    def __init__(
        self,
        upstream: tuple[str, int],
        *,
        fault_rate: float = 0.0,
        faults: Iterable[str] = TCP_FAULTS,
        seed: int = 0,
        latency: float = 0.5,
    ) -> None:
        kinds = tuple(faults)
        if not kinds or set(kinds) - set(TCP_FAULTS):
            raise ValueError(f"unknown or no fault kinds {kinds}; choose from {TCP_FAULTS}")
        if not 0.0 <= fault_rate <= 1.0:
            raise ValueError(f"fault_rate must be between 0 and 1, got {fault_rate}")
        self.upstream = upstream
        self.fault_rate = fault_rate
        self.faults = kinds
        self.latency = latency
        self._rng = random.Random(seed)
        self._scheduled: list[str] = []
        self._lock = threading.Lock()
        self.chunks = 0
        """Client chunks received."""
        self.injected: Counter[str] = Counter()
        """Faults injected so far, by kind."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._port = 0

    @property
    def port(self) -> int:
        """The loopback port the proxy listens on (after :meth:`start`)."""
        if not self._port:
            raise RuntimeError("TCP fault proxy is not running")
        return self._port

    def start(self) -> None:
        """Start listening (in a daemon thread); returns once the port is bound."""
        if self._thread is not None:
            return
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            server = loop.run_until_complete(asyncio.start_server(self._serve, LOOPBACK, 0))
            self._port = server.sockets[0].getsockname()[1]
            ready.set()
            loop.run_forever()
            server.close()
            loop.run_until_complete(self._shutdown())
            loop.close()

        self._thread = threading.Thread(target=run, name="tcp-fault-proxy", daemon=True)
        self._thread.start()
        ready.wait(timeout=10)

    async def _shutdown(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def stop(self) -> None:
        """Stop listening and drop every open connection."""
        thread, self._thread = self._thread, None
        if thread is None or self._loop is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        thread.join(timeout=10)
        self._port = 0

    def configure(self, *, fault_rate: float) -> None:
        """Change the random fault rate while running."""
        with self._lock:
            self.fault_rate = fault_rate

    def schedule(self, fault: str, *, count: int = 1) -> None:
        """Inject ``fault`` into the next ``count`` client chunks, before any random fault."""
        if fault not in TCP_FAULTS:
            raise ValueError(f"unknown fault {fault!r}; choose from {TCP_FAULTS}")
        with self._lock:
            self._scheduled += [fault] * count

    def _choose(self) -> str | None:
        with self._lock:
            self.chunks += 1
            fault = self._scheduled.pop(0) if self._scheduled else None
            if fault is None and self._rng.random() < self.fault_rate:
                fault = self._rng.choice(self.faults)
            if fault is not None:
                self.injected[fault] += 1
            return fault

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        up_writer: asyncio.StreamWriter | None = None
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
            answers = asyncio.ensure_future(_pump(up_reader, writer))
            try:
                await self._requests(reader, up_writer, answers)
            finally:
                answers.cancel()
                with contextlib.suppress(asyncio.CancelledError, OSError):
                    await answers
        except (ConnectionError, OSError, asyncio.CancelledError):
            pass
        finally:
            self._tasks.discard(task)
            for side in (writer, up_writer):
                if side is not None:
                    _reset(side)

    async def _requests(
        self,
        reader: asyncio.StreamReader,
        up_writer: asyncio.StreamWriter,
        answers: asyncio.Future[None],
    ) -> None:
        while chunk := await reader.read(65536):
            fault = self._choose()
            if fault == "reset":
                return
            if fault == "silence":
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(_SILENCE_LIMIT):
                        while await reader.read(65536):
                            pass
                return
            if fault == "latency":
                await asyncio.sleep(self.latency)
            if fault == "reset_after":
                answers.cancel()  # the server's answer is never passed on
            up_writer.write(chunk)
            await up_writer.drain()
            if fault == "reset_after":
                await asyncio.sleep(0.05)  # the server acts; its answer is dropped
                return


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    _reset(writer)


def _reset(writer: asyncio.StreamWriter) -> None:
    """Abort the connection (RST), never a graceful close."""
    transport = writer.transport
    with contextlib.suppress(Exception):
        transport.abort()
