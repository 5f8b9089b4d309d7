"""The S3 backends and driver behind a fault-injecting proxy, in front of real servers.

The fault tests run on the client ``s3://`` builds by default (obstore) and on
aioboto3 (``S3Backend``); the multipart tests on aioboto3, the only client
that uploads in parts. Every fault is real: the proxy (testrig/chaos.py) answers 5xx, resets
connections before, after and in the middle of answers, accepts a request
and never answers, trickles answers, and delays them, in front of moto and
rclone.
"""

import asyncio
import contextlib
import os
import random
import tracemalloc
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.converter import (
    StorageDriverClaim,
)

from casstore import CasStorageDriver, open_backend
from casstore.backends import Backend
from casstore.backends.s3 import S3Backend
from casstore.errors import BackendUnavailableError, CasstoreError, IntegrityError
from testrig.chaos import FAULTS, ChaosProxy
from tests.support.cli import assert_one_line_error, cli, s3_url
from tests.support.faults import CONTEXT, RETRIEVE, SLACK, timed
from tests.support.objectstore import DEAD_ENDPOINT
from tests.support.s3 import S3Place

_WARM_KEY = "v1/default/faults/" + "00" * 32


@dataclass
class Faulty:
    """An S3 place reached through a fault proxy, by one client."""

    place: S3Place
    proxy: ChaosProxy
    client: str
    """``obstore`` (what ``s3://`` builds by default) or ``aioboto3``."""

    def backend(self, *, through_proxy: bool = True, **options: Any) -> Backend:
        """A backend as a worker builds it: from an ``s3://`` URL, for ``client``."""
        target = self.place.target
        options.setdefault("conditional_writes", target.conditional_writes)
        endpoint = self.proxy.endpoint_url if through_proxy else target.endpoint_url
        if self.client == "aioboto3":
            return S3Backend(
                self.place.bucket,
                self.place.prefix,
                session=self.place.session(),
                endpoint_url=endpoint,
                **options,
            )
        url = s3_url(self.place, endpoint_url=endpoint)
        return open_backend(
            url,
            access_key_id=target.access_key,
            secret_access_key=target.secret_key,
            metadata_endpoint=DEAD_ENDPOINT,
            **options,
        )


def _faulty(s3: S3Place, client: str) -> Iterator[Faulty]:
    if s3.target.name == "env":
        pytest.skip("the fault proxy speaks plain HTTP to local servers only")
    upstream = urlsplit(s3.target.endpoint_url or "")
    assert upstream.port is not None
    with ChaosProxy(("127.0.0.1", upstream.port), seed=12, trickle_interval=0.2) as proxy:
        yield Faulty(s3, proxy, client)


@pytest.fixture(params=["obstore", "aioboto3"])
def faulty(s3: S3Place, request: pytest.FixtureRequest) -> Iterator[Faulty]:
    """Each S3 target behind a fault proxy, through each client."""
    yield from _faulty(s3, request.param)


@pytest.fixture
def faulty_multipart(s3: S3Place) -> Iterator[Faulty]:
    """Each S3 target behind a fault proxy, through aioboto3 (multipart uploads)."""
    yield from _faulty(s3, "aioboto3")


@contextlib.asynccontextmanager
async def _driver(faulty: Faulty, **options: Any) -> AsyncIterator[CasStorageDriver]:
    backend_options = {
        k: options.pop(k) for k in list(options) if k.startswith(("multipart", "max_attempts"))
    }
    async with faulty.backend(**backend_options) as backend:
        yield CasStorageDriver(backend, retrieval_cache_bytes=0, **options)


def _payload(size: int, seed: int) -> Payload:
    rng = random.Random(seed)
    # Half random, half repeated: compressible enough for zstd, never identical.
    data = rng.randbytes(size // 2) + bytes([seed % 256]) * (size - size // 2)
    return Payload(metadata={"encoding": b"binary/plain"}, data=data)


@pytest.mark.parametrize("fault", FAULTS)
async def test_each_fault_on_each_request_kind_is_survived(faulty: Faulty, fault: str) -> None:
    options = {"timeout": 4.0, "attempt_timeout": 1.0}
    async with _driver(faulty, **options) as writer, _driver(faulty, **options) as reader:
        payload = _payload(3000, seed=1)
        # Connections warmed fault-free, through the backends: outside the 4 s
        # deadlines, which are for the faulty requests alone.
        await writer.backend.put(_WARM_KEY, b"warm")
        assert await reader.backend.get(_WARM_KEY) == b"warm"
        for method in ("HEAD", "PUT"):
            faulty.proxy.schedule(fault, method=method)
        [claim], took = await timed(writer.store(CONTEXT, [payload]))
        assert took < 4.0 + SLACK
        faulty.proxy.schedule(fault, method="GET")
        [retrieved], took = await timed(reader.retrieve(RETRIEVE, [claim]))
        assert took < 4.0 + SLACK
    assert retrieved == payload
    assert faulty.proxy.injected[fault] >= 2


async def test_under_20_percent_faults_no_payload_is_lost_or_wrong(faulty: Faulty) -> None:
    sizes = [10, 200, 3_000, 40_000, 150_000] * 8
    payloads = [_payload(size, seed) for seed, size in enumerate(sizes)]
    faulty.proxy.configure(fault_rate=0.2, seed=20)
    async with _driver(faulty) as writer, _driver(faulty) as reader:
        stores = await asyncio.gather(*(timed(writer.store(CONTEXT, [p])) for p in payloads))
        claims: list[StorageDriverClaim | None] = []
        for (result, took), payload in zip(stores, payloads, strict=True):
            deadline = 5.0 + len(payload.data) / (2 * 1024 * 1024)
            assert took < deadline + SLACK, (took, result)
            claims.append(None if isinstance(result, CasstoreError) else result[0])
        retrieves = await asyncio.gather(
            *(timed(reader.retrieve(RETRIEVE, [c])) for c in claims if c is not None)
        )
        for result, took in retrieves:
            assert took < 5.0 + 0.1 + SLACK, (took, result)
        injected = sum(faulty.proxy.injected.values())
        # Whatever failed under faults failed clearly; nothing stored was lost:
        # with the faults gone, every handed-out claim reads back its payload.
        faulty.proxy.configure(fault_rate=0.0)
        for claim, payload in zip(claims, payloads, strict=True):
            if claim is not None:
                assert await reader.retrieve(RETRIEVE, [claim]) == [payload]
    failed = [r for r, _ in stores + retrieves if isinstance(r, BaseException)]
    assert injected >= 15
    # A payload whose every attempt hit a stall can fail, clearly and in time;
    # with retries inside the deadline that stays rare.
    assert all(isinstance(r, BackendUnavailableError) and "gave up after" in str(r) for r in failed)
    assert len(failed) <= len(payloads) // 10, failed


async def test_a_get_cut_mid_body_is_retried(faulty: Faulty) -> None:
    async with _driver(faulty) as writer, _driver(faulty) as reader:
        payload = _payload(200_000, seed=3)
        [claim] = await writer.store(CONTEXT, [payload])
        faulty.proxy.schedule("reset_mid", method="GET")
        assert await reader.retrieve(RETRIEVE, [claim]) == [payload]
    assert faulty.proxy.injected["reset_mid"] == 1


_MULTIPART = {"multipart_threshold": 5 * 1024 * 1024, "multipart_part_size": 5 * 1024 * 1024}


async def _open_uploads(place: S3Place) -> list[str]:
    listing = await place.raw.list_multipart_uploads(Bucket=place.bucket)
    return [upload["UploadId"] for upload in listing.get("Uploads", [])]


async def test_a_lost_complete_multipart_answer_is_a_successful_store(
    faulty_multipart: Faulty,
) -> None:
    faulty = faulty_multipart
    payload = Payload(data=os.urandom(6 * 1024 * 1024))
    async with _driver(faulty, **_MULTIPART) as writer:
        faulty.proxy.schedule("reset_after", method="POST", target_contains="uploadId=")
        [claim] = await writer.store(CONTEXT, [payload])
    assert faulty.proxy.injected["reset_after"] == 1
    async with _driver(faulty) as reader:
        assert await reader.retrieve(RETRIEVE, [claim]) == [payload]
    assert await _open_uploads(faulty.place) == []


async def test_a_retried_create_multipart_leaves_no_orphan_upload(
    faulty_multipart: Faulty,
) -> None:
    faulty = faulty_multipart
    payload = Payload(data=os.urandom(6 * 1024 * 1024))
    async with _driver(faulty, **_MULTIPART) as writer:
        # The server creates the upload, but its answer (the upload id) is lost.
        faulty.proxy.schedule("reset_after", method="POST", target_contains="?uploads")
        [claim] = await writer.store(CONTEXT, [payload])
    assert faulty.proxy.injected["reset_after"] == 1
    assert await _open_uploads(faulty.place) == []
    async with _driver(faulty) as reader:
        assert await reader.retrieve(RETRIEVE, [claim]) == [payload]


async def test_a_failed_multipart_upload_is_aborted(faulty_multipart: Faulty) -> None:
    faulty = faulty_multipart
    payload = Payload(data=os.urandom(6 * 1024 * 1024))
    async with _driver(faulty, timeout=1.0, attempt_timeout=0.5, **_MULTIPART) as writer:
        faulty.proxy.schedule("silence", method="PUT", count=100)
        with pytest.raises(CasstoreError, match="gave up"):
            await writer.store(CONTEXT, [payload])
    assert await _open_uploads(faulty.place) == []


async def test_an_oversized_object_is_refused_before_its_body_is_read(faulty: Faulty) -> None:
    async with _driver(faulty) as writer:
        [claim] = await writer.store(CONTEXT, [_payload(30, seed=5)])
    [key] = await faulty.place.raw_keys()
    await faulty.place.raw.put_object(Bucket=faulty.place.bucket, Key=key, Body=bytes(16 << 20))
    faulty.proxy.stop()  # the proxy (and moto) buffer answers in this process: not the client's
    async with faulty.backend(through_proxy=False) as direct:
        reader = CasStorageDriver(direct)
        # The client is built (botocore's models loaded) before measuring.
        assert await direct.stat(key.removeprefix(faulty.place.prefix + "/")) is not None
        tracemalloc.start()
        try:
            with pytest.raises(IntegrityError, match="16777216 bytes"):
                await reader.retrieve(RETRIEVE, [claim])
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    if faulty.place.target.name != "moto":  # moto serves from this process's memory too
        assert peak < 4 * 1024 * 1024


@pytest.mark.parametrize("attempts", ["default", "1"])
async def test_operator_commands_retry_transient_s3_failures(
    faulty: Faulty,
    attempts: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Workers' S3 clients make one attempt (the driver retries within deadlines);
    # commands have no such deadline, so one 503 must not end a stats or gc run.
    target = faulty.place.target
    assert target.access_key is not None
    assert target.secret_key is not None
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", target.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", target.secret_key)
    async with _driver(faulty) as writer:
        await writer.store(CONTEXT, [_payload(3000, seed=3)])
    url = s3_url(faulty.place, endpoint_url=faulty.proxy.endpoint_url, client=faulty.client)
    if attempts != "default":
        url += f"&max_attempts={attempts}"
    faulty.proxy.schedule("status_503", count=2, method="GET")  # the listings
    result = await cli(capsys, "stats", url, "--json")
    assert faulty.proxy.injected["status_503"] >= 1
    if attempts == "default":
        assert result.code == 0, result
        assert result.json()["objects"] == 1
        assert faulty.proxy.injected["status_503"] == 2
    else:  # the user asked for one attempt: a one-line error, no traceback
        assert_one_line_error(result, "503")
