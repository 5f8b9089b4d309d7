"""GCSBackend on a local GCS server (fake-gcs-server): the conformance suite, plus its own."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from gcloud.aio.storage import Storage

from casstore import open_backend
from casstore.backends import Backend
from casstore.backends.gcs import GCSBackend
from casstore.errors import (
    BackendPermissionError,
    BackendUnavailableError,
    ConfigurationError,
    ObjectNotFoundError,
)
from casstore.testing import BackendTests, DriverTests
from testrig.processes import free_port
from tests.support.gcs import GCSPlace

pytestmark = pytest.mark.integration

KEY = "v1/default/order-42/" + "ab" * 32
REPO = Path(__file__).resolve().parents[1]


class TestGCSBackend(BackendTests, DriverTests):
    @pytest.fixture
    async def backend(self, gcs_place: GCSPlace) -> AsyncIterator[GCSBackend]:
        self.place = gcs_place
        async with gcs_place.backend() as backend:
            yield backend

    async def raw_get(self, backend: Backend, key: str) -> bytes:
        return await self.place.raw_get(key)

    async def raw_put(self, backend: Backend, key: str, data: bytes) -> None:
        await self.place.raw_put(key, data)

    def names_in_errors(self, backend: Backend, key: str) -> list[str]:
        return [f"bucket={self.place.bucket}, key={self.place.name(key)}"]


async def test_objects_live_under_the_prefix_and_scan_skips_foreign_ones(
    gcs_place: GCSPlace,
) -> None:
    await asyncio.to_thread(gcs_place.raw.put, gcs_place.bucket, "notes/read me.txt", b"x")
    await asyncio.to_thread(
        gcs_place.raw.put, gcs_place.bucket, f"{gcs_place.prefix}/v1/sp ace", b"foreign"
    )
    async with gcs_place.backend() as backend:
        await backend.put(KEY, b"data")
        assert backend.object_name(KEY) == f"{gcs_place.prefix}/{KEY}"
        assert [item async for item in backend.scan()] == [(KEY, 4)]


async def test_listing_pages_through_more_than_one_page(gcs_place: GCSPlace) -> None:
    keys = [f"v1/default/wf/{i:064x}" for i in range(1203)]
    async with gcs_place.backend() as backend:
        gate = asyncio.Semaphore(16)

        async def put(key: str) -> None:
            async with gate:
                await backend.put(key, b"x")

        await asyncio.gather(*(put(key) for key in keys))
        assert sorted([k async for k, _ in backend.scan("v1/")]) == keys
        await backend.delete_many(keys[:1100])
        assert sorted([k async for k, _ in backend.scan("v1/")]) == keys[1100:]


async def test_a_refresh_gives_a_new_generation_and_creation_time(gcs_place: GCSPlace) -> None:
    async with gcs_place.backend() as backend:
        await backend.put(KEY, b"payload")
        before = await asyncio.to_thread(
            gcs_place.raw.metadata, gcs_place.bucket, gcs_place.name(KEY)
        )
        await asyncio.sleep(1.1)
        await backend.touch(KEY)
        after = await asyncio.to_thread(
            gcs_place.raw.metadata, gcs_place.bucket, gcs_place.name(KEY)
        )
    assert int(after["generation"]) > int(before["generation"])
    assert after["timeCreated"] > before["timeCreated"]
    assert await gcs_place.raw_get(KEY) == b"payload"


async def test_get_range_reads_a_slice(gcs_place: GCSPlace) -> None:
    data = bytes(range(256)) * 16
    async with gcs_place.backend() as backend:
        await backend.put(KEY, data)
        assert await backend.get_range(KEY, 100, 50) == data[100:150]
        assert await backend.get_range(KEY, len(data) - 10, 50) == data[-10:]
        assert await backend.get_range(KEY, 0, 0) == b""
        with pytest.raises(ObjectNotFoundError, match="order-42"):
            await backend.get_range("v1/default/order-42/" + "cd" * 32, 0, 10)


async def test_a_passed_in_client_is_used_and_never_closed(gcs_place: GCSPlace) -> None:
    async with aiohttp.ClientSession() as session:
        storage = Storage(api_root=gcs_place.server.endpoint, session=session)  # type: ignore[arg-type]
        async with gcs_place.backend(client=storage) as backend:
            await backend.put(KEY, b"mine")
        assert await storage.download(gcs_place.bucket, gcs_place.name(KEY)) == b"mine"
        with pytest.raises(ConfigurationError, match="leave endpoint unset"):
            GCSBackend(gcs_place.bucket, client=storage, endpoint="http://x")


def test_urls_give_every_option() -> None:
    backend = open_backend(
        "gs://temporal-payloads/prod?endpoint=http://127.0.0.1:1&emulator=true&timeout=5"
        "&conditional_writes=false"
    )
    assert isinstance(backend, GCSBackend)
    assert (backend.bucket, backend.prefix, backend.conditional_writes) == (
        "temporal-payloads",
        "prod",
        False,
    )
    assert dict(backend.describe()) == {
        "backend": "gcs",
        "bucket": "temporal-payloads",
        "prefix": "prod",
        "endpoint": "http://127.0.0.1:1",
    }
    for bad, words in [
        ("gs://Upper/p", "invalid GCS bucket name"),
        ("gs://user:pw@bucket/p", "take no credentials"),
        ("gs://bucket/p?region=x", "unknown option 'region'"),
        ("gs://bucket/../p", "invalid GCS prefix"),
    ]:
        with pytest.raises(ConfigurationError, match=words):
            open_backend(bad)


async def test_a_missing_bucket_is_named(gcs_place: GCSPlace) -> None:
    async with GCSBackend(
        "no-such-bucket", "p", endpoint=gcs_place.server.endpoint, emulator=True
    ) as backend:
        assert await backend.stat(KEY) is None  # metadata cannot tell bucket from object
        with pytest.raises(BackendUnavailableError, match="bucket 'no-such-bucket' does not exist"):
            await backend.put(KEY, b"x")
        with pytest.raises(BackendUnavailableError, match="bucket 'no-such-bucket'"):
            [k async for k, _ in backend.scan()]


async def test_a_refused_connection_names_bucket_key_and_operation() -> None:
    port = free_port()
    async with GCSBackend(
        "bucket", "p", endpoint=f"http://127.0.0.1:{port}", emulator=True
    ) as backend:
        with pytest.raises(BackendUnavailableError) as info:
            await backend.get(KEY)
    message = str(info.value)
    assert "GCS get could not reach the server" in message
    assert f"[bucket=bucket, key=p/{KEY}, endpoint=http://127.0.0.1:{port}]" in message
    assert info.value.key == KEY


def test_missing_credentials_are_one_clear_line(tmp_path: Path) -> None:
    # No credentials file, no gcloud ADC, and a metadata server on a dead
    # loopback port: what a machine outside Google Cloud without setup has.
    env = {
        **{
            k: v for k, v in os.environ.items() if not k.startswith(("GOOGLE_", "STORAGE_", "GCE_"))
        },
        "HOME": str(tmp_path),
        "GCE_METADATA_HOST": f"127.0.0.1:{free_port()}",
    }
    done = subprocess.run(
        [sys.executable, "-m", "casstore", "stats", "gs://temporal-payloads/prod"],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done
    assert "Traceback" not in done.stderr
    [line] = done.stderr.strip().splitlines()
    assert "no usable Google credentials for GCS" in line
    assert "GOOGLE_APPLICATION_CREDENTIALS" in line
    assert "bucket=temporal-payloads" in line


async def test_a_refused_token_is_a_permission_error(tmp_path: Path) -> None:
    # A well-formed service-account file whose token endpoint refuses
    # connections (a dead loopback port: no request leaves the machine).
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    account = {
        "type": "service_account",
        "project_id": "p",
        "private_key_id": "k",
        "private_key": pem,
        "client_email": "casstore@p.iam.gserviceaccount.com",
        "token_uri": f"http://127.0.0.1:{free_port()}/token",
    }
    service_file = tmp_path / "sa.json"
    service_file.write_text(json.dumps(account))
    backend = GCSBackend("bucket", service_file=str(service_file))
    with pytest.raises(BackendPermissionError, match="no usable Google credentials for GCS stat"):
        await backend.stat(KEY)
    await backend.aclose()
