"""Property-based fuzzing of claims and stored objects (hypothesis).

``make test`` runs the bounded ``ci`` profile; ``make fuzz`` runs the ``fuzz``
profile (``HYPOTHESIS_PROFILE=fuzz``), hundreds of times more examples.

Properties: whatever a claim holds (any Python types, depth, encoding) and
whatever bytes sit where its object belongs, retrieval either returns the
exact payload that was stored or raises a casstore error; it never raises
anything else, never reads outside the store, and never allocates much
beyond the size the claim promises.
"""

import asyncio
import contextlib
import os
import tracemalloc
from collections.abc import Mapping
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from temporalio.api.common.v1 import Payload
from temporalio.converter import (
    StorageDriverClaim,
    StorageDriverRetrieveContext,
    StorageDriverStoreContext,
    StorageDriverWorkflowInfo,
)

from casstore import CasStorageDriver
from casstore._format.claims import parse_claim_data
from casstore._format.header import MAGIC
from casstore.backends import MemoryBackend
from casstore.errors import CasstoreError, ClaimError, IntegrityError

settings.register_profile(
    "ci", max_examples=75, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "fuzz", max_examples=20_000, deadline=None, suppress_health_check=list(HealthCheck)
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

MAX_SIZE = 1 << 20
CONTEXT = StorageDriverStoreContext(
    target=StorageDriverWorkflowInfo(namespace="default", id="fuzz", run_id=None, type="W")
)

# Untrusted values of every shape: JSON-ish scalars, bytes, odd containers,
# text with lone surrogates and control characters.
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(),
    st.binary(max_size=64),
)
_values = st.recursive(
    _scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner)
)


class _OddMapping(Mapping[Any, Any]):
    """A Mapping whose methods misbehave in the ways a hostile caller could make them."""

    def __init__(self, entries: dict[Any, Any], fail: str) -> None:
        self._entries = entries
        self._fail = fail

    def __getitem__(self, key: Any) -> Any:
        if self._fail == "getitem":
            raise KeyError(key)
        return self._entries[key]

    def __iter__(self) -> Any:
        if self._fail == "iter":
            raise RuntimeError("broken iterator")
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


_claim_texts = st.one_of(
    st.text(max_size=200),
    st.integers(1, 5000).map(lambda n: "[" * n),
    st.integers(1, 2000).map(_nested),
    st.integers(1, 2000).map(lambda n: '{"a":' * n + "1" + "}" * n),
    _values.map(lambda v: msgspec.json.encode(v, enc_hook=repr).decode()),
    st.tuples(st.integers(), st.text(), st.text(), st.integers(), st.integers()).map(
        lambda t: msgspec.json.encode(list(t)).decode()
    ),
    st.text(alphabet=st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1),
    # Version 2 is comma-separated text: "2,location,digest,size[,key_id]".
    st.lists(st.text(max_size=60), min_size=1, max_size=7).map(lambda f: ",".join(["2", *f])),
    st.tuples(
        st.sampled_from(["default/wf", "default", "_", "x/../y", "default/wf\ud800"]),
        st.text(alphabet="AZaz09_-=", min_size=40, max_size=46),
        st.integers(-5, 2**70),
        st.text(max_size=20),
    ).map(lambda t: f"2,{t[0]},{t[1]},{t[2]},{t[3]}"),
)
_claim_data = st.one_of(
    st.dictionaries(st.just("c"), _claim_texts, min_size=1),
    st.dictionaries(st.one_of(st.text(), st.integers(), st.none()), _values, max_size=3),
    st.dictionaries(st.just("c"), _values, min_size=1),
    st.builds(
        _OddMapping,
        st.dictionaries(st.just("c"), _claim_texts, min_size=1),
        st.sampled_from(["getitem", "iter", "none"]),
    ),
    _values,
)


@given(_claim_data)
def test_any_claim_data_is_parsed_or_rejected_with_a_claim_error(claim_data: Any) -> None:
    with contextlib.suppress(ClaimError):
        parse_claim_data(claim_data, max_size=MAX_SIZE)


def test_a_claim_of_a_thousand_nested_brackets_is_a_claim_error() -> None:
    with pytest.raises(ClaimError, match=r"nests too deeply|malformed|not valid JSON"):
        parse_claim_data({"c": "[" * 1000 + "]" * 1000}, max_size=MAX_SIZE)
    with pytest.raises(ClaimError):
        parse_claim_data({"c": "[" * 4000}, max_size=MAX_SIZE)


@pytest.mark.parametrize(
    "claim_data",
    [
        {"c": 1},
        {"c": b"[1]"},
        {1: "x"},
        {None: "x", "c": "x"},
        {"c": "\ud800"},
        {"c": '[1,"default/wf\ud800","x",1,1]'},
        _OddMapping({"c": "x"}, "iter"),
        _OddMapping({"c": "x"}, "getitem"),
        ["c"],
    ],
)
def test_claims_of_odd_types_are_claim_errors(claim_data: Any) -> None:
    with pytest.raises(ClaimError):
        parse_claim_data(claim_data, max_size=MAX_SIZE)


def _retrieve(driver: CasStorageDriver, claim_data: Any) -> list[Payload]:
    return asyncio.run(
        driver.retrieve(StorageDriverRetrieveContext(), [StorageDriverClaim(claim_data=claim_data)])
    )


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(claim_data=_claim_data)
def test_retrieving_any_claim_raises_only_casstore_errors(claim_data: Any) -> None:
    driver = CasStorageDriver(MemoryBackend(), max_payload_size=MAX_SIZE)
    with contextlib.suppress(CasstoreError):
        _retrieve(driver, claim_data)


_payload_data = st.binary(min_size=0, max_size=4096) | st.integers(0, 200_000).map(
    lambda n: b"ab" * (n // 2)
)


def _mutate(obj: bytes, data: st.DataObject) -> bytes:
    """Corrupt a stored object the ways a hostile store could."""
    how = data.draw(st.sampled_from(["flip", "truncate", "extend", "replace", "header", "bomb"]))
    if how == "flip" and obj:
        i = data.draw(st.integers(0, len(obj) - 1))
        return obj[:i] + bytes([obj[i] ^ data.draw(st.integers(1, 255))]) + obj[i + 1 :]
    if how == "truncate":
        return obj[: data.draw(st.integers(0, max(0, len(obj) - 1)))]
    if how == "extend":
        return obj + data.draw(st.binary(min_size=1, max_size=4096))
    if how == "header":
        return MAGIC + bytes([1, data.draw(st.integers(0, 255))]) + obj[5:]
    if how == "bomb":
        # A tiny zstd frame that declares (and would expand to) 64 MiB.
        import zstandard

        return MAGIC + bytes([1, 1]) + zstandard.ZstdCompressor().compress(bytes(64 << 20))
    return data.draw(st.binary(max_size=4096))


@given(payload_data=_payload_data, data=st.data())
def test_a_corrupted_object_is_an_integrity_error_never_a_wrong_payload(
    payload_data: bytes, data: st.DataObject
) -> None:
    backend = MemoryBackend()
    writer = CasStorageDriver(backend, retrieval_cache_bytes=0)
    payload = Payload(metadata={"encoding": b"binary/plain"}, data=payload_data)
    [claim] = asyncio.run(writer.store(CONTEXT, [payload]))
    [(key, _)] = asyncio.run(_scan(backend))
    original = asyncio.run(backend.get(key))
    corrupted = _mutate(original, data)
    backend._objects[key] = (corrupted, backend._objects[key][1])
    reader = CasStorageDriver(backend, retrieval_cache_bytes=0)
    promised = len(payload.SerializeToString(deterministic=True))
    tracemalloc.start()
    try:
        [result] = _retrieve(reader, claim.claim_data)
    except IntegrityError:
        result = None
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    if result is not None:
        assert result == payload  # only an intact (or equivalent) object may pass
    # Reading never allocates much beyond what the claim promises.
    assert peak <= 3 * promised + 2 * len(corrupted) + (1 << 20), (peak, promised)


async def _scan(backend: MemoryBackend) -> list[tuple[str, int]]:
    return [item async for item in backend.scan()]
