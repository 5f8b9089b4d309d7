"""Admission: how many requests run at once and how many bytes they hold, in two lanes.

A request is admitted after its body is parsed, at a cost in bytes: its body
plus, for the payloads it will resolve, their stored sizes (casstore claims
carry the size; other references their ``externalPayloads`` size) times 7/3,
the payload and its base64 in the JSON response. It holds a
processing slot until its response is built, and its bytes until the last
byte of the response has been handed to the socket, so
a client that does not read its response keeps its bytes counted, and the
total stays bounded however slowly clients read.

Requests costing at most ``SMALL_COST`` bytes (a history's references, small
values) take the small lane, the rest the large lane; each lane is first come,
first served, and neither waits for the other. So a small request is admitted
at once while large ones queue for the byte budget, instead of waiting behind
all of them as one shared queue would make it.
"""

from __future__ import annotations

import asyncio
from collections import deque

SMALL_COST = 1024 * 1024
"""Requests holding at most this many bytes take the small lane."""
SMALL_LANE_SHARE = 8
"""The small lane has 1/8 of the byte budget (the large lane the rest)."""


def request_cost(body_bytes: int, payload_bytes: int) -> int:
    """What a request holds: its body, and each resolved payload with its base64 (7/3)."""
    return body_bytes + payload_bytes * 7 // 3


class Ticket:
    """An admitted request's hold on its lane: a processing slot and its bytes.

    ``done_processing`` gives the slot back once the response is built (the
    CPU work is over; sending takes none), ``release`` gives back the rest.
    Each is idempotent.
    """

    def __init__(self, lane: _Lane, cost: int) -> None:
        self._lane: _Lane | None = lane
        self._cost = cost
        self._holds_slot = True

    def done_processing(self) -> None:
        if self._lane is not None and self._holds_slot:
            self._holds_slot = False
            self._lane.release(0, slot=True)

    def release(self) -> None:
        lane, self._lane = self._lane, None
        if lane is not None:
            lane.release(self._cost, slot=self._holds_slot)


class _Lane:
    """A first-come, first-served semaphore over bytes and holders."""

    def __init__(self, capacity: int, max_holders: int) -> None:
        self.capacity = capacity
        self._max_holders = max_holders
        self._used = 0
        self._holders = 0
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()

    def _fits(self, cost: int) -> bool:
        return self._holders < self._max_holders and self._used + cost <= self.capacity

    async def acquire(self, cost: int) -> Ticket:
        cost = min(cost, self.capacity)  # a request larger than the lane runs alone
        if not self._waiters and self._fits(cost):
            self._take(cost)
            return Ticket(self, cost)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (cost, future)
        self._waiters.append(entry)
        try:
            await future
        except BaseException:
            if future.done() and not future.cancelled():
                self.release(cost, slot=True)  # admitted just as it was cancelled
            else:
                self._waiters.remove(entry)
                self._wake()
            raise
        return Ticket(self, cost)

    def _take(self, cost: int) -> None:
        self._used += cost
        self._holders += 1

    def release(self, cost: int, *, slot: bool) -> None:
        self._used -= cost
        self._holders -= slot
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self._fits(self._waiters[0][0]):
            cost, future = self._waiters.popleft()
            if future.done():  # cancelled while queued; its acquire removes nothing
                continue
            self._take(cost)
            future.set_result(None)


class Admission:
    """The server's two lanes.

    Args:
        max_bytes_in_flight: Bytes all admitted requests may hold together.
        max_concurrent_requests: Large requests processed at once; more wait.
    """

    def __init__(self, max_bytes_in_flight: int, max_concurrent_requests: int) -> None:
        small = max(max_bytes_in_flight // SMALL_LANE_SHARE, SMALL_COST)
        self._small = _Lane(small, max_holders=max(4 * max_concurrent_requests, 64))
        self._large = _Lane(max(max_bytes_in_flight - small, SMALL_COST), max_concurrent_requests)

    async def admit(self, cost: int) -> Ticket:
        """Wait for room for a request holding ``cost`` bytes; return its ticket."""
        lane = self._small if cost <= SMALL_COST else self._large
        return await lane.acquire(cost)
