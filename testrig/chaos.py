"""A chaos proxy for tests: random and scheduled faults on the wire in front of a real server.

:class:`ChaosProxy` listens on a loopback port and forwards each request to
one upstream server (moto, rclone, ...), injecting, for a configurable share
of requests chosen by a seeded RNG, one of:

==================  ===========================================================
``status_500``      answer 500 InternalError without forwarding
``status_503``      answer 503 SlowDown without forwarding
``reset_before``    reset the connection before forwarding anything
``reset_after``     forward, let the upstream act, reset instead of answering
``reset_mid``       forward, send the head and half the body, then reset
``silence``         accept the request (sending ``100 Continue`` if it asked
                    for one), read its body, then never answer
``trickle``         forward, then send the answer a few bytes at a time
``latency``         wait ``latency`` seconds, then forward normally
==================  ===========================================================

Faults can also be scheduled deterministically (:meth:`ChaosProxy.schedule`),
e.g. "reset the answer of the next CompleteMultipartUpload", and so can canned
answers (:class:`Answer`: any status, body and content type), e.g. "answer
409 ConditionalRequestConflict to the next PUT with ``If-None-Match: *``",
which no local server gives. The client under test runs unchanged.

The proxy runs its own event loop in a daemon thread, so synchronous tests,
async tests and other processes (a Temporal worker) can all use it. Each
forwarded request uses a fresh upstream connection (``Connection: close``);
client connections are kept alive, as S3 clients expect. ``Expect:
100-continue`` is answered by the proxy itself, which then reads the body and
forwards the request without the header.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from testrig import _http
from testrig.processes import ContextManagerMixin

FAULTS = (
    "status_500",
    "status_503",
    "reset_before",
    "reset_after",
    "reset_mid",
    "silence",
    "trickle",
    "latency",
)
"""Every fault kind the proxy can inject."""

_SILENCE_LIMIT = 600.0


@dataclass(frozen=True)
class Answer:
    """A canned answer the proxy gives instead of forwarding (see :meth:`ChaosProxy.schedule`).

    A ``HEAD`` request, a 204 and a 304 get no body, as HTTP requires.
    """

    status: int
    """200 to 599 (an informational status would leave the client waiting)."""
    body: bytes = b""
    content_type: str = "application/xml"

    def __post_init__(self) -> None:
        if not 200 <= self.status <= 599:
            raise ValueError(f"an answer's status must be 200 to 599, got {self.status}")

    @property
    def kind(self) -> str:
        """Its key in :attr:`ChaosProxy.injected`: ``status_<status>``, as the 5xx faults."""
        return f"status_{self.status}"


def _s3_error(status: int, code: str, message: str) -> Answer:
    xml = (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
        f"<Message>{message}</Message></Error>"
    )
    return Answer(status, xml.encode())


_ERROR_ANSWERS = {
    "status_500": _s3_error(
        500, "InternalError", "We encountered an internal error. Please try again."
    ),
    "status_503": _s3_error(503, "SlowDown", "Please reduce your request rate."),
}
"""The 5xx faults are canned answers."""


@dataclass
class _Scheduled:
    fault: str | Answer
    count: int
    match: Callable[[_http.Request], bool]


class ChaosProxy(ContextManagerMixin):
    """Forward HTTP requests to ``upstream``, injecting faults.

    Args:
        upstream: ``(host, port)`` of the real server.
        fault_rate: Share of requests (0 to 1) that get a random fault.
        faults: The kinds drawn from for random faults (default: all).
        seed: Seed of the RNG choosing which requests fail and how.
        latency: Seconds a ``latency`` fault waits before forwarding.
        trickle_bytes: Bytes per write of a ``trickle`` fault.
        trickle_interval: Seconds between writes of a ``trickle`` fault.
    """

    def __init__(
        self,
        upstream: tuple[str, int],
        *,
        fault_rate: float = 0.0,
        faults: Iterable[str] = FAULTS,
        seed: int = 0,
        latency: float = 0.5,
        trickle_bytes: int = 8,
        trickle_interval: float = 0.25,
    ) -> None:
        kinds = tuple(faults)
        unknown = set(kinds) - set(FAULTS)
        if unknown or not kinds:
            raise ValueError(f"unknown or no fault kinds {sorted(unknown)}; choose from {FAULTS}")
        if not 0.0 <= fault_rate <= 1.0:
            raise ValueError(f"fault_rate must be between 0 and 1, got {fault_rate}")
        self.upstream = upstream
        self.fault_rate = fault_rate
        self.faults = kinds
        self.latency = latency
        self.trickle_bytes = trickle_bytes
        self.trickle_interval = trickle_interval
        self._rng = random.Random(seed)
        self._scheduled: list[_Scheduled] = []
        self._lock = threading.Lock()
        self.requests = 0
        """Requests received (faulty or not)."""
        self.injected: Counter[str] = Counter()
        """Faults injected so far, by kind (an :class:`Answer` by its :attr:`~Answer.kind`)."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._port = 0

    # Lifecycle.

    @property
    def port(self) -> int:
        """The loopback port the proxy listens on (after :meth:`start`)."""
        if not self._port:
            raise RuntimeError("fault proxy is not running")
        return self._port

    @property
    def endpoint_url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start listening (in a daemon thread); returns once the port is bound."""
        if self._thread is not None:
            return
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                self._server = loop.run_until_complete(
                    asyncio.start_server(self._serve, "127.0.0.1", 0)
                )
                self._port = self._server.sockets[0].getsockname()[1]
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._shutdown())
            loop.close()

        self._thread = threading.Thread(target=run, name="fault-proxy", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            self._thread = None
            raise RuntimeError(f"fault proxy failed to start: {failure[0]!r}") from failure[0]

    def stop(self) -> None:
        """Stop listening and drop every open connection."""
        thread, self._thread = self._thread, None
        if thread is None or self._loop is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        thread.join(timeout=10)
        self._port = 0

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)

    # Configuration while running.

    def configure(self, *, fault_rate: float | None = None, seed: int | None = None) -> None:
        """Change the random fault rate (and reseed the RNG) while running."""
        with self._lock:
            if fault_rate is not None:
                self.fault_rate = fault_rate
            if seed is not None:
                self._rng.seed(seed)

    def schedule(
        self,
        fault: str | Answer,
        *,
        count: int = 1,
        method: str | None = None,
        target_contains: str | None = None,
        headers_match: Callable[[Mapping[str, str]], bool] | None = None,
    ) -> None:
        """Inject ``fault`` into the next ``count`` requests that match.

        Schedules are tried in the order they were made, before any random fault.

        Args:
            fault: One of :data:`FAULTS`, or an :class:`Answer` to give
                instead of forwarding.
            count: How many matching requests get it.
            method: Only requests with this method (e.g. ``"PUT"``).
            target_contains: Only requests whose target (path and query)
                contains this text, e.g. ``"uploadId="``.
            headers_match: Only requests whose headers (names lower-cased)
                it accepts, e.g. ``lambda h: h.get("if-none-match") == "*"``.
        """
        if isinstance(fault, str) and fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; choose from {FAULTS}")

        def match(request: _http.Request) -> bool:
            return (
                (method is None or request.method == method)
                and (target_contains is None or target_contains in request.target)
                and (headers_match is None or headers_match(request.headers))
            )

        with self._lock:
            self._scheduled.append(_Scheduled(fault, count, match))

    def _choose(self, request: _http.Request) -> str | Answer | None:
        with self._lock:
            self.requests += 1
            for item in self._scheduled:
                if item.count > 0 and item.match(request):
                    item.count -= 1
                    fault = item.fault
                    self.injected[fault if isinstance(fault, str) else fault.kind] += 1
                    return fault
            if self._rng.random() < self.fault_rate:
                fault = self._rng.choice(self.faults)
                self.injected[fault] += 1
                return fault
        return None

    # Serving.

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            while True:
                request = await _http.read_request(reader, writer)
                if request is None:
                    return
                if not await self._handle(request, reader, writer):
                    return
        except (ConnectionError, asyncio.IncompleteReadError, ValueError, OSError):
            pass
        except asyncio.CancelledError:
            # Only stop() cancels connections; ending quietly is the point.
            pass
        finally:
            self._connections.discard(task)
            _http.reset(writer)

    async def _handle(
        self, request: _http.Request, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        """Answer one request; return False when the connection must end."""
        fault = self._choose(request)
        if isinstance(fault, str):
            fault = _ERROR_ANSWERS.get(fault, fault)
        if isinstance(fault, Answer):
            writer.write(
                _http.response(fault.status, fault.body, fault.content_type, request.method)
            )
            await writer.drain()
            return True
        if fault == "reset_before":
            return False
        if fault == "silence":
            # The client decides how long to wait: hold the connection until it gives up.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_SILENCE_LIMIT):
                    while await reader.read(65536):
                        pass
            return False
        if fault == "latency":
            await asyncio.sleep(self.latency)
        response = await self._forward(request)
        if fault == "reset_after":
            return False
        if fault == "reset_mid":
            head_end = response.index(b"\r\n\r\n") + 4
            body = len(response) - head_end
            writer.write(response[: head_end + body // 2])
            await writer.drain()
            return False
        if fault == "trickle":
            for start in range(0, len(response), self.trickle_bytes):
                writer.write(response[start : start + self.trickle_bytes])
                await writer.drain()
                await asyncio.sleep(self.trickle_interval)
            return True
        writer.write(response)
        await writer.drain()
        return True

    async def _forward(self, request: _http.Request) -> bytes:
        """Send the request upstream on a fresh connection; return the whole answer."""
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        try:
            up_writer.write(request.head + request.body)
            await up_writer.drain()
            raw = await up_reader.read()
        finally:
            up_writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await up_writer.wait_closed()
        return _http.frame_response(raw, request.method)
