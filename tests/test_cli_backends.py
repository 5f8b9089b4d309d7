"""The operator commands and ``casstore serve`` on the Redis and GCS backends, by URL.

One test per backend walks what an operator does (stats, verify, cat, gc in
age-only mode, the codec server); one more checks that an unreachable store
is one clear line.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import urllib.request
from datetime import timedelta
from pathlib import Path

import pytest
from google.protobuf import json_format
from temporalio.api.common.v1 import Payloads

from casstore import CasStorageDriver, open_backend
from casstore._format.manifest import LifecyclePolicy
from casstore._freshness import ensure_policy
from testrig.codec import CodecServerProcess
from testrig.gcs import FakeGCSServer
from testrig.processes import free_port
from tests.support.cli import assert_one_line_error, cli
from tests.support.sdk import big_json, in_workflow, make_converter

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]
POLICY = LifecyclePolicy(refresh_after=timedelta(seconds=0.5), claim_delay=timedelta(seconds=0.5))
_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@pytest.fixture(params=["redis", "gcs"])
def store_url(request: pytest.FixtureRequest) -> str:
    """A fresh, empty store as a URL the commands (and a child process) can open."""
    if request.param == "redis":
        url: str = request.getfixturevalue("redis_place").url
        return url
    gcs_url: str = request.getfixturevalue("gcs_place").url
    return gcs_url


async def test_stats_verify_cat_gc_and_serve_work_by_url(
    store_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    value = {"customer": "c-17", "rows": big_json(5_000)["rows"]}
    async with open_backend(store_url) as backend:
        await ensure_policy(backend, POLICY)
        driver = CasStorageDriver(backend)
        [reference] = await in_workflow(make_converter(driver), "order-1").encode([value])
        await in_workflow(make_converter(driver), "order-2").encode(["forgotten"])

    stats = await cli(capsys, "stats", store_url, "--json")
    assert stats.code == 0, stats
    assert stats.json()["objects"] == 2
    verify = await cli(capsys, "verify", store_url, "--json")
    assert verify.code == 0, verify
    assert verify.json()["good"] == 2
    cat = await cli(capsys, "cat", json_format.MessageToJson(reference), "--store", store_url)
    assert cat.code == 0, cat
    assert json.loads(cat.out) == value

    body = json_format.MessageToJson(Payloads(payloads=[reference])).encode()
    server = CodecServerProcess(
        "--store", store_url, "--port", "0", "--namespace", "default",
        env=dict(os.environ), cwd=REPO,
    )  # fmt: skip
    try:
        request = urllib.request.Request(
            server.url + "/decode",
            data=body,
            headers={"Content-Type": "application/json", "X-Namespace": "default"},
            method="POST",
        )
        answer = await asyncio.to_thread(lambda: _HTTP.open(request, timeout=30).read())
        decoded = json_format.Parse(answer, Payloads()).payloads
        assert json.loads(decoded[0].data) == value
    finally:
        code, out = server.stop(signal.SIGTERM)
    assert code == 0, out
    assert "Traceback" not in out

    await asyncio.sleep(1.7)
    async with open_backend(store_url) as backend:  # order-1's payload is stored again
        writer = CasStorageDriver(backend, lifecycle_manifest=True)
        await in_workflow(make_converter(writer), "order-1").encode([value])
        assert writer.stats.objects_refreshed == 1
    args = ["gc", store_url, "--namespace", "default", "--older-than", "1.5s", "--delete"]
    gc = await cli(capsys, *args, "--json")
    assert gc.code == 0, gc
    [moved] = gc.json()["to_trash"]
    assert "order-2" in moved["key"]
    after = await cli(capsys, "stats", store_url, "--json")
    assert after.json()["objects"] == 1


@pytest.mark.parametrize("scheme", ["redis", "gcs"])
async def test_an_unreachable_store_is_one_line(
    capsys: pytest.CaptureFixture[str], scheme: str
) -> None:
    port = free_port()
    url = (
        f"redis://127.0.0.1:{port}/0"
        if scheme == "redis"
        else f"gs://bucket/p?endpoint=http://127.0.0.1:{port}&emulator=true"
    )
    result = await cli(capsys, "stats", url)
    assert_one_line_error(result, "could not reach", f"127.0.0.1:{port}")


async def test_a_missing_bucket_is_one_line(
    capsys: pytest.CaptureFixture[str], gcs_server: FakeGCSServer
) -> None:
    url = f"gs://no-such-bucket/p?endpoint={gcs_server.endpoint}&emulator=true"
    result = await cli(capsys, "stats", url)
    assert_one_line_error(result, "bucket 'no-such-bucket' does not exist")
