"""A cold reader of a chunked payload: few requests, one per referenced object."""

from __future__ import annotations

from casstore import CasStorageDriver
from casstore._chunk_read import COALESCE_GAP, coalesce
from casstore._chunking import MAX_SOURCES
from casstore.backends import CountingBackend, MemoryBackend
from tests.support.agents import agent_turns
from tests.test_chunking import manifest_of, payloads_of, retrieve, store_all

A, B = b"a" * 32, b"b" * 32


def test_adjacent_and_close_frames_of_one_object_are_one_read() -> None:
    spans = coalesce([(A, 0, 100), (A, 100, 50), (A, 200, 100), (B, 0, 10), (None, 5, 5)])
    assert spans == {
        (A, 0, 300): [(A, 0, 100), (A, 100, 50), (A, 200, 100)],
        (B, 0, 10): [(B, 0, 10)],
        (None, 5, 5): [(None, 5, 5)],  # this object's own frames are not fetched
    }


def test_a_span_never_fetches_more_gap_than_frame_bytes() -> None:
    # Tiny frames far apart (as a hostile manifest could declare) stay separate reads.
    far = [(A, i * (COALESCE_GAP // 2), 64) for i in range(8)]
    spans = coalesce(far)
    assert len(spans) == 8
    for (_, _, size), members in spans.items():
        assert size <= 2 * sum(s for _, _, s in members)
    # A gap beyond the bound splits even large frames.
    assert len(coalesce([(A, 0, 10**6), (A, 10**6 + COALESCE_GAP + 1, 10**6)])) == 2
    # Overlapping frames are never merged.
    assert len(coalesce([(A, 0, 100), (A, 50, 100)])) == 2


async def test_a_long_conversation_is_read_with_a_bounded_number_of_requests() -> None:
    turns = payloads_of(agent_turns(40))
    backend = CountingBackend(MemoryBackend())
    claims = await store_all(CasStorageDriver(backend), turns)
    for claim in claims[-5:]:
        assert len((await manifest_of(backend.inner, claim)).references) <= MAX_SOURCES
    before = dict(backend.calls)
    assert await retrieve(CasStorageDriver(backend), claims[-1:]) == turns[-1:]
    gets = backend.calls["get"] - before.get("get", 0)
    ranged = backend.calls["get_range"] - before.get("get_range", 0)
    assert gets == 1
    assert 1 <= ranged <= MAX_SOURCES
