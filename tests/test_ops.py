"""casstore stats, verify and cat on real stores: the local backend and S3 (moto).

The commands run as a user runs them, through the CLI entry point (in a
thread, since each runs its own event loop), against stores written by the
driver and then damaged by hand, bypassing the backend.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import pty
import random
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.converter import (
    StorageDriverActivityInfo,
    StorageDriverStoreContext,
    StorageDriverWorkflowInfo,
)

from casstore import CasStorageDriver, KeyRing
from casstore._format.claims import parse_claim_data
from casstore._format.keys import BadKeyError, location_for, object_key, parse_object_key
from casstore._format.manifest import LifecyclePolicy
from casstore._freshness import ensure_policy
from casstore.backends import Backend, LocalBackend
from casstore.ops import store_stats, verify_store
from tests.support.cli import assert_one_line_error, cli, s3_url
from tests.support.s3 import S3Target, s3_place
from tests.support.sdk import big_json, in_workflow, make_converter


@dataclass
class Store:
    """A store under test: its URL, a backend on it, and raw access bypassing the backend."""

    url: str
    backend: Backend
    raw_put: Callable[[str, bytes], Awaitable[None]]
    raw_get: Callable[[str], Awaitable[bytes]]


@dataclass
class Stored:
    """What populate() wrote: object key -> serialized payload, and the driver's stats."""

    objects: dict[str, bytes]
    driver: CasStorageDriver


# S3 needs a server: that parameter alone is an integration test (tests/conftest.py).
@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.integration)])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "local":
        backend = LocalBackend(tmp_path / "store", fsync=False)

        async def local_put(key: str, data: bytes) -> None:
            path = backend.path_for(key)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)

        async def local_get(key: str) -> bytes:
            return backend.path_for(key).read_bytes()

        yield Store(str(tmp_path / "store"), backend, local_put, local_get)
        return
    target: S3Target = request.getfixturevalue("aws_env")
    async with s3_place(target) as place, place.backend() as s3_backend:
        yield Store(s3_url(place), s3_backend, place.raw_put, place.raw_get)


LOCAL_ONLY = pytest.mark.parametrize("store", ["local"], indirect=True)


def json_payload(value: Any) -> Payload:
    return Payload(metadata={"encoding": b"json/plain"}, data=json.dumps(value).encode())


WORKFLOWS = [("default", "order-1"), ("default", "order 2/ü"), ("billing", "invoice-7")]


async def populate(backend: Backend) -> Stored:
    """Objects of every scope kind and both codecs, one large enough to be checked off-loop.

    Whole objects (formats 1 and 2); chunked stores are checked in test_chunking_ops.py.
    """
    driver = CasStorageDriver(backend, chunking=False)
    objects: dict[str, bytes] = {}
    rng = random.Random(7)

    async def put(target: Any, payloads: list[Payload], *, scope_driver: Any = None) -> None:
        used = scope_driver or driver
        claims = await used.store(StorageDriverStoreContext(target=target), payloads)
        for claim, payload in zip(claims, payloads, strict=True):
            record = parse_claim_data(claim.claim_data, max_size=1 << 30)
            key = record.key
            objects[key] = payload.SerializeToString(deterministic=True)

    for i, (ns, wf) in enumerate(WORKFLOWS):
        target = StorageDriverWorkflowInfo(namespace=ns, id=wf, run_id=None, type=None)
        payloads = [json_payload({"n": n, "wf": wf}) for n in range(3)]
        payloads.append(json_payload(big_json(2_000 * (i + 1), seed=i)))  # zstd
        noise = bytes(rng.getrandbits(8) for _ in range(3_000))
        payloads.append(Payload(metadata={"encoding": b"binary/plain"}, data=noise))  # raw
        await put(target, payloads)
    await put(
        StorageDriverWorkflowInfo(namespace="default", id="big", run_id=None, type=None),
        [json_payload(big_json(400_000, seed=9))],
    )
    await put(
        StorageDriverActivityInfo(namespace="default", id="act-1", run_id=None, type="a"),
        [json_payload("standalone")],
    )
    await put(None, [json_payload("no target")])
    namespace_driver = CasStorageDriver(backend, scope="namespace")
    await put(
        StorageDriverWorkflowInfo(namespace="billing", id="x", run_id=None, type=None),
        [json_payload("shared")],
        scope_driver=namespace_driver,
    )
    return Stored(objects, driver)


# verify


async def test_verify_passes_a_clean_store(
    store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    stored = await populate(store.backend)
    result = await cli(capsys, "verify", store.url, "--json")
    assert result.code == 0, result
    report = result.json()
    assert report["ok"] is True
    assert report["checked"] == report["good"] == len(stored.objects)
    assert report["bad"] == []
    assert report["logical_bytes"] == sum(len(v) for v in stored.objects.values())
    assert report["stored_bytes"] == sum([size async for _, size in store.backend.scan()])
    assert set(report["codecs"]) == {"raw", "zstd"}


async def test_verify_finds_every_corruption(
    store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    stored = await populate(store.backend)
    raw_keys = [k for k, v in stored.objects.items() if (await store.raw_get(k))[4] == 0]
    zstd_keys = [k for k in stored.objects if k not in raw_keys]
    assert len(raw_keys) >= 4
    assert len(zstd_keys) >= 4
    damage: dict[str, str] = {}

    async def flip(key: str, offset: int, reason: str) -> None:
        data = bytearray(await store.raw_get(key))
        data[offset] ^= 0x01
        await store.raw_put(key, bytes(data))
        damage[key] = reason

    async def rewrite(key: str, data: bytes, reason: str) -> None:
        await store.raw_put(key, data)
        damage[key] = reason

    await flip(raw_keys[0], -1, "does not match its key")
    await flip(zstd_keys[0], len(await store.raw_get(zstd_keys[0])) // 2, "")  # frame or digest
    await flip(raw_keys[1], 0, "no casstore header")
    await rewrite(raw_keys[2], (await store.raw_get(raw_keys[2]))[:-10], "does not match")
    await rewrite(zstd_keys[1], (await store.raw_get(zstd_keys[1]))[:-4], "truncated")
    await rewrite(zstd_keys[2], (await store.raw_get(zstd_keys[2])) + b"junk", "after the zstd")
    await rewrite(raw_keys[3], b"CA", "bytes=2")  # truncated inside the header
    # Wrong key: a good object stored under another object's key.
    await rewrite(raw_keys[4], await store.raw_get(raw_keys[5]), "does not match its key")
    # A key that breaks the key layout, and a file that is no casstore object at all.
    await rewrite("v1/default/order-1/abc", b"x", "not a valid casstore object key")
    await store.raw_put("notes/readme", b"not ours")
    await store.raw_put("_casstore/lifecycle.json", b"{}")

    result = await cli(capsys, "verify", store.url, "--json", "--concurrency", "3")
    assert result.code == 1, result
    report = result.json()
    found = {bad["key"]: bad["reason"] for bad in report["bad"]}
    assert set(found) == set(damage)
    for key, reason in damage.items():
        assert reason in found[key], (key, found[key])
    assert report["good"] == len(stored.objects) - (len(damage) - 1)
    assert report["other_keys"] == ["notes/readme"]
    assert report["housekeeping_keys"] == 1

    text = await cli(capsys, "verify", store.url)
    assert text.code == 1
    bad_lines = [line for line in text.out.splitlines() if line.startswith("BAD ")]
    assert sorted(line.split(":")[0][4:] for line in bad_lines) == sorted(damage)
    assert f"{len(damage)} bad" in text.out


@LOCAL_ONLY  # nothing backend-specific beyond what the other tests cover
async def test_verify_sample_checks_that_many(
    store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    stored = await populate(store.backend)
    result = await cli(capsys, "verify", store.url, "--sample", "5", "--json")
    assert result.code == 0, result
    report = result.json()
    assert (report["checked"], report["listed"], report["sampled"]) == (
        5,
        len(stored.objects),
        True,
    )


async def test_a_sample_is_uniform_and_finds_a_bad_object_when_it_is_drawn(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path, fsync=False)
    stored = await populate(backend)
    bad_key = sorted(stored.objects)[3]
    backend.path_for(bad_key).write_bytes(b"CAS\x01\x00garbage")
    hits = 0
    for seed in range(40):
        report = await verify_store(backend, sample=4, rng=random.Random(seed))
        assert report.checked == 4
        hits += bad_key in {b.key for b in report.bad}
    # Each draw holds the bad key with probability 4/len; 40 draws make 0 hits astronomically rare.
    assert 0 < hits < 40


# stats


async def test_stats_counts_by_scope_namespace_and_workflow(
    store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    stored = await populate(store.backend)
    sizes = {key: size async for key, size in store.backend.scan()}
    await store.raw_put("_casstore/lifecycle.json", b"{}")  # gc's manifest
    await store.raw_put("notes/readme", b"not ours")
    result = await cli(capsys, "stats", store.url, "--json", "--top", "2")
    assert result.code == 0, result
    stats = result.json()
    assert stats["objects"] == len(stored.objects)
    assert stats["stored_bytes"] == sum(sizes.values())
    assert {k: v["objects"] for k, v in stats["by_scope"].items()} == {
        "workflow": 16,
        "activity": 1,
        "namespace": 1,
        "none": 1,
    }
    assert {k: v["objects"] for k, v in stats["by_namespace"].items()} == {
        "default": 12,
        "billing": 6,
        "(no target)": 1,
    }
    top = stats["top_workflows"]
    assert next((w["namespace"], w["id"]) for w in top) == ("default", "big")
    assert len(top) == 2
    assert "codecs" not in stats
    assert stats["housekeeping"] == {"objects": 1, "stored_bytes": 2}
    assert stats["other_keys"] == {"objects": 1, "stored_bytes": 8}

    text = await cli(capsys, "stats", store.url)
    assert text.code == 0
    assert "order 2/ü" in text.out  # ids are shown decoded


async def test_stats_deep_reports_codecs_and_payload_bytes(
    store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    stored = await populate(store.backend)
    result = await cli(capsys, "stats", store.url, "--deep", "--json")
    assert result.code == 0, result
    stats = result.json()
    assert stats["logical_bytes"] == sum(len(v) for v in stored.objects.values())
    codecs = stats["codecs"]
    assert codecs["raw"]["objects"] + codecs["zstd"]["objects"] == len(stored.objects)
    assert codecs["zstd"]["logical_bytes"] > 3 * codecs["zstd"]["stored_bytes"]


# cat


async def references_for(driver: CasStorageDriver, values: list[Any]) -> list[Payload]:
    converter = in_workflow(make_converter(driver), "order-1")
    return list(await converter.encode(values))


async def test_cat_prints_the_payload_of_each_form_of_reference(
    store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    driver = CasStorageDriver(store.backend)
    value = {"customer": "c-17", "rows": big_json(5_000)["rows"]}
    [reference] = await references_for(driver, [value])
    as_json = json.loads(json_format.MessageToJson(reference))
    inner = json.loads(reference.data)
    claim = inner["claimData"]
    for form in (as_json, inner, claim, claim["c"], json.loads(claim["c"])):
        result = await cli(capsys, "cat", json.dumps(form), "--store", store.url)
        assert result.code == 0, (form, result)
        assert json.loads(result.out) == value
    piped = await cli(capsys, "cat", "--store", store.url, stdin=json.dumps(as_json))
    assert json.loads(piped.out) == value


@LOCAL_ONLY  # nothing backend-specific beyond what the other tests cover
async def test_cat_prints_every_reference_in_a_history_and_base64_for_binary(
    store: Store, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    driver = CasStorageDriver(store.backend)
    refs = await references_for(driver, ["first", {"second": 2}])
    [blob_ref] = await references_for(driver, [b"\x00\xffbytes"])  # binary/plain
    history = {
        "events": [
            {
                "eventId": "1",
                "eventType": "EVENT_TYPE_WORKFLOW_EXECUTION_STARTED",
                "workflowExecutionStartedEventAttributes": {
                    "input": json.loads(json_format.MessageToJson(Payloads(payloads=refs)))
                },
            },
            {
                "eventId": "5",
                "eventType": "EVENT_TYPE_ACTIVITY_TASK_COMPLETED",
                "activityTaskCompletedEventAttributes": {
                    "result": {"payloads": [json.loads(json_format.MessageToJson(blob_ref))]}
                },
            },
        ]
    }
    path = tmp_path / "history.json"
    path.write_text(json.dumps(history))
    result = await cli(capsys, "cat", str(path), "--store", store.url, "--json")
    assert result.code == 0, result
    entries = result.json()
    assert [e["event_id"] for e in entries] == [1, 1, 5]
    assert [e.get("value") for e in entries[:2]] == ["first", {"second": 2}]
    assert entries[2]["data_base64"] == "AP9ieXRlcw=="
    assert entries[0]["path"] == "workflowExecutionStartedEventAttributes.input.payloads[0]"

    text = await cli(capsys, "cat", str(path), "--store", store.url)
    assert text.out.count("# event ") == 3
    assert "AP9ieXRlcw==" in text.out


@LOCAL_ONLY  # nothing backend-specific beyond what the other tests cover
async def test_cat_reports_a_missing_or_corrupt_object_and_prints_the_rest(
    store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    driver = CasStorageDriver(store.backend)
    refs = await references_for(driver, ["kept", "lost", "damaged"])
    keys = []
    for ref in refs:
        claim = parse_claim_data(json.loads(ref.data)["claimData"], max_size=1 << 30)
        keys.append(claim.key)
    await store.backend.delete(keys[1])
    await store.raw_put(keys[2], (await store.raw_get(keys[2]))[:-1] + b"X")
    history = {
        "events": [
            {"eventId": str(i + 1), "input": json.loads(json_format.MessageToJson(r))}
            for i, r in enumerate(refs)
        ]
    }
    result = await cli(capsys, "cat", "--store", store.url, stdin=json.dumps(history))
    assert result.code == 1
    assert '"kept"' in result.out
    assert "lost" not in result.out
    assert "event 2" in result.err
    assert keys[1] in result.err
    assert "event 3" in result.err
    assert keys[2] in result.err
    assert "Traceback" not in result.err


# Bad input: one line, exit 2, nothing done.


async def test_bad_inputs_get_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], aws_env: S3Target
) -> None:
    missing = tmp_path / "no-such-store"
    for command in (["stats"], ["verify"]):
        result = await cli(capsys, *command, str(missing))
        assert_one_line_error(result, "does not exist", str(missing))
    assert not missing.exists()  # never created by looking at it
    result = await cli(capsys, "cat", '{"c": "x"}', "--store", str(missing))
    assert_one_line_error(result, "does not exist")

    bucket_url = (
        f"s3://no-such-bucket-{os.getpid()}/p?endpoint_url={aws_env.endpoint_url}"
        f"&region={aws_env.region}"
    )
    assert_one_line_error(await cli(capsys, "verify", bucket_url), "no-such-bucket")
    unreachable = "s3://bucket/p?endpoint_url=http://127.0.0.1:9&region=us-east-1&connect_timeout=1&max_attempts=1"
    assert_one_line_error(await cli(capsys, "stats", unreachable), "cannot open store")
    assert_one_line_error(await cli(capsys, "stats", "gopher://x"), "scheme")

    store_dir = tmp_path / "store"
    LocalBackend(store_dir)
    not_json = tmp_path / "history.json"
    not_json.write_text("this is not JSON\n")
    assert_one_line_error(
        await cli(capsys, "cat", str(not_json), "--store", str(store_dir)),
        "not JSON",
        "history.json",
    )
    assert_one_line_error(
        await cli(capsys, "cat", "--store", str(store_dir), stdin=""), "not JSON", "standard input"
    )
    assert_one_line_error(
        await cli(capsys, "cat", str(tmp_path / "nope.json"), "--store", str(store_dir)), "no file"
    )
    inline = {"metadata": {"encoding": "anNvbi9wbGFpbg=="}, "data": "MQ=="}
    assert_one_line_error(
        await cli(capsys, "cat", json.dumps(inline), "--store", str(store_dir)),
        "no storage references",
    )
    assert_one_line_error(
        await cli(capsys, "cat", "--store", str(store_dir), stdin="42"), "neither"
    )
    usage = await cli(capsys, "verify", str(store_dir), "--sample", "0")
    assert usage.code == 2
    assert "Traceback" not in usage.err


async def test_library_calls_match_the_commands(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path, fsync=False)
    stored = await populate(backend)
    report = await verify_store(backend)
    assert report.ok
    assert report.checked == len(stored.objects)
    stats = await store_stats(backend, deep=True)
    assert stats.total.objects == len(stored.objects)
    assert stats.total.logical_bytes == report.logical_bytes


# Encrypted objects (format 2): checked with the keyring, "needs key" without it.

KEY = bytes(range(32))
KEYRING_TEXT = "k1:" + base64.b64encode(KEY).decode()


@LOCAL_ONLY  # nothing backend-specific beyond what the other tests cover
async def test_encrypted_objects_are_checked_with_the_keyring_and_named_without_it(
    store: Store, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = await populate(store.backend)
    driver = CasStorageDriver(store.backend, keyring=KeyRing.from_text(KEYRING_TEXT))
    context = StorageDriverStoreContext(
        target=StorageDriverWorkflowInfo(namespace="default", id="secret", run_id=None, type=None)
    )
    values = [json_payload(big_json(3_000, seed=s)) for s in range(3)] + [json_payload("tiny")]
    claims = await driver.store(context, values)
    encrypted = [parse_claim_data(c.claim_data, max_size=1 << 30).key for c in claims]
    monkeypatch.setenv("OPS_TEST_KEYRING", KEYRING_TEXT)

    # Without the key: the encrypted objects are named, not called corrupt.
    blind = await cli(capsys, "verify", store.url, "--json")
    assert blind.code == 0, blind
    report = blind.json()
    assert report["good"] == len(plain.objects)
    assert sorted(u["key"] for u in report["unchecked"]) == sorted(encrypted)
    assert report["needs_keys"] == ["k1"]
    assert all("needs key k1" in u["reason"] for u in report["unchecked"])

    # With it: every object checked and good.
    keyed = await cli(capsys, "verify", store.url, "--keyring", "env:OPS_TEST_KEYRING", "--json")
    assert keyed.code == 0, keyed
    assert keyed.json()["good"] == len(plain.objects) + len(encrypted)
    assert keyed.json()["encrypted"] == {"k1": len(encrypted)}

    # A flipped byte in an encrypted object fails authentication.
    data = bytearray(await store.raw_get(encrypted[0]))
    data[-20] ^= 0x01
    await store.raw_put(encrypted[0], bytes(data))
    damaged = await cli(capsys, "verify", store.url, "--keyring", "env:OPS_TEST_KEYRING", "--json")
    assert damaged.code == 1
    [bad] = damaged.json()["bad"]
    assert bad["key"] == encrypted[0]
    assert "authentication" in bad["reason"]

    # stats --deep reads sealed sizes only with the key.
    sealed = (await cli(capsys, "stats", store.url, "--deep", "--json")).json()
    assert sealed["encrypted"]["k1"]["objects"] == len(encrypted)
    assert sealed["unknown_logical"]["objects"] == 3  # the zstd ones; raw sizes are known
    opened = await cli(
        capsys, "stats", store.url, "--deep", "--json", "--keyring", "env:OPS_TEST_KEYRING"
    )
    assert opened.code == 1  # the damaged object's header is readable, its seal is not
    assert [u["key"] for u in opened.json()["unreadable"]] == [encrypted[0]]

    # cat: the payload with the key; an error naming the key id without it.
    reference = json.dumps(claims[1].claim_data)
    shown = await cli(capsys, "cat", reference, "--store", store.url, "--keyring", "env:")
    assert shown.code == 2  # CASSTORE_KEYRING is not set: a bad keyring, one line
    assert "CASSTORE_KEYRING" in shown.err
    shown = await cli(
        capsys, "cat", reference, "--store", store.url, "--keyring", "env:OPS_TEST_KEYRING"
    )
    assert shown.code == 0, shown
    assert json.loads(shown.out) == big_json(3_000, seed=1)
    missing = await cli(capsys, "cat", reference, "--store", store.url)
    assert missing.code == 1
    assert "'k1'" in missing.err
    assert "Traceback" not in missing.err


# Progress: drawn on a terminal, never into pipes.


def run_attached(argv: list[str], *, stderr_tty: bool) -> tuple[int, str, str]:
    """Run ``python -m casstore ARGV`` with stderr on a pseudo-terminal or a pipe."""
    if not stderr_tty:
        done = subprocess.run(
            [sys.executable, "-m", "casstore", *argv], capture_output=True, text=True, timeout=120
        )
        return done.returncode, done.stdout, done.stderr
    leader, follower = pty.openpty()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "casstore", *argv],
            stdout=subprocess.PIPE,
            stderr=follower,
            text=True,
        )
        os.close(follower)
        out, _ = proc.communicate(timeout=120)
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the terminal's other side is closed and drained
                break
            if not chunk:
                break
            chunks.append(chunk)
        return proc.returncode, out, b"".join(chunks).decode(errors="replace")
    finally:
        os.close(leader)


async def test_progress_is_drawn_on_a_terminal_and_nowhere_else(tmp_path: Path) -> None:
    await populate(LocalBackend(tmp_path / "store", fsync=False))
    store_dir = str(tmp_path / "store")
    code, out, err = await asyncio.to_thread(run_attached, ["verify", store_dir], stderr_tty=True)
    assert code == 0, err
    assert "verifying" in err  # the progress line, on the terminal
    assert "\r" in err
    assert "\r" not in out
    code, out, err = await asyncio.to_thread(run_attached, ["verify", store_dir], stderr_tty=False)
    assert code == 0
    assert err == ""
    code, out, err = await asyncio.to_thread(
        run_attached, ["stats", store_dir, "--deep", "--json"], stderr_tty=True
    )
    assert code == 0
    assert "reading" in err
    assert json.loads(out)["deep"] is True  # stdout stays one clean document


async def test_every_command_explains_itself(capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("stats", "verify", "cat"):
        result = await cli(capsys, command, "--help")
        assert result.code == 0
        help_text = " ".join(result.out.split())
        assert "Exit status" in help_text, command
        assert "--json" in help_text
        assert "--keyring" in help_text


# Bounds and races, on the library calls behind the commands.


class TrackedBackend(LocalBackend):
    """A real local store that notes how many bytes are being read at once."""

    def __init__(self, root: Path) -> None:
        super().__init__(root, fsync=False)
        self.reading = 0
        self.most_reading = 0
        self.vanish: set[str] = set()

    async def get(self, key: str, *, max_size: int | None = None) -> bytes:
        if key in self.vanish:  # deleted between the listing and the read, as gc would
            await self.delete(key)
        size = self.path_for(key).stat().st_size if self.path_for(key).exists() else 0
        self.reading += size
        self.most_reading = max(self.most_reading, self.reading)
        try:
            await asyncio.sleep(0.01)
            return await super().get(key, max_size=max_size)
        finally:
            self.reading -= size


async def test_verify_holds_to_its_memory_budget_and_concurrency(tmp_path: Path) -> None:
    backend = TrackedBackend(tmp_path)
    # Whole objects: the first pass's budget (chunked ones are read by the second).
    driver = CasStorageDriver(backend, compression_level=None, chunking=False)
    context = StorageDriverStoreContext(
        target=StorageDriverWorkflowInfo(namespace="default", id="w", run_id=None, type=None)
    )
    await driver.store(context, [json_payload("x" * 100_000 + str(i)) for i in range(12)])
    report = await verify_store(backend, concurrency=8, memory_budget=250_000)
    assert report.good == 12
    assert 100_000 < backend.most_reading <= 250_000


async def test_an_object_deleted_during_verify_is_reported_as_vanished_not_bad(
    tmp_path: Path,
) -> None:
    backend = TrackedBackend(tmp_path)
    stored = await populate(backend)
    gone = sorted(stored.objects)[:2]
    backend.vanish.update(gone)
    report = await verify_store(backend)
    assert report.ok
    assert sorted(report.vanished) == gone
    assert report.good == len(stored.objects) - 2


# Reading keys back for people, and references of other drivers.


def test_object_keys_are_read_back_into_decoded_scopes() -> None:
    digest = bytes(range(32))
    long_id = "w" * 201
    cases = [
        (location_for(scope="workflow", namespace="prod ns", workflow_id="a/b ü"), "workflow"),
        (location_for(scope="workflow", namespace="default", activity_id="_act"), "activity"),
        (location_for(scope="namespace", namespace="default", workflow_id="x"), "namespace"),
        (location_for(scope="workflow", namespace=None), "none"),
        (location_for(scope="workflow", namespace="default", workflow_id=long_id), "workflow"),
    ]
    names = [parse_object_key(object_key(location, digest)) for location, _ in cases]
    assert [n.scope for n in names] == [scope for _, scope in cases]
    assert (names[0].namespace, names[0].workflow_id) == ("prod ns", "a/b ü")
    assert names[1].activity_id == "_act"
    assert names[3].namespace is None
    assert names[4].workflow_id is not None
    assert names[4].workflow_id.startswith("_h")  # hashed: shown as stored
    assert all(n.digest == digest for n in names)
    with pytest.raises(BadKeyError):
        parse_object_key("v1/default/not-a-digest")


async def test_cat_says_when_a_reference_belongs_to_another_driver(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    backend = LocalBackend(tmp_path / "store", fsync=False)
    [ours] = await references_for(CasStorageDriver(backend), ["ours"])
    theirs = {"driverName": "aws-s3", "claimData": {"bucket": "b", "key": "k"}}
    history = {
        "events": [
            {"eventId": "1", "input": json.loads(json_format.MessageToJson(ours))},
            {"eventId": "2", "input": {"payloads": [reference_payload_json(theirs)]}},
        ]
    }
    result = await cli(capsys, "cat", "--store", str(tmp_path / "store"), stdin=json.dumps(history))
    assert result.code == 1
    assert '"ours"' in result.out
    assert "event 2" in result.err
    assert "not a casstore reference (driver 'aws-s3')" in result.err


def reference_payload_json(reference: dict[str, Any]) -> dict[str, Any]:
    """A reference payload as ``temporal workflow show --output json`` prints it."""
    return {
        "metadata": {
            "encoding": base64.b64encode(b"json/protobuf").decode(),
            "messageType": base64.b64encode(
                b"temporal.api.sdk.v1.ExternalStorageReference"
            ).decode(),
        },
        "data": base64.b64encode(json.dumps(reference).encode()).decode(),
    }


def test_ctrl_c_ends_a_command_with_130_and_one_line(tmp_path: Path) -> None:
    LocalBackend(tmp_path / "store")
    # cat waits on its standard input, which this test never closes, until SIGINT.
    proc = subprocess.Popen(
        [sys.executable, "-m", "casstore", "cat", "--store", str(tmp_path / "store")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A test run started in the background (nohup, `cmd &`) passes SIGINT on
        # ignored, and Python then keeps ignoring it, as it should: give the
        # command the terminal's default, as a user typing Ctrl-C has.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.monotonic() + 60
        # /proc/PID/syscall reads "0 0x0 ..." while blocked in read(0, ...): the
        # command is running (imports done, handlers in place) and waiting.
        while not Path(f"/proc/{proc.pid}/syscall").read_text().startswith("0 0x0 "):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "cat never waited on its input"
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        # Wait before communicate(): it closes stdin, and an end of input that
        # arrives before the signal would be read as an (empty) input.
        proc.wait(timeout=30)
        out, err = proc.communicate()
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert err.strip() == "casstore cat: interrupted"
    assert out == ""


@LOCAL_ONLY
async def test_verify_never_reads_an_object_too_large_for_any_payload(
    store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    stored = await populate(store.backend)
    sizes = {key: size async for key, size in store.backend.scan()}
    limit = 4_000
    too_big = sorted(k for k, size in sizes.items() if size > limit + 64)
    assert too_big  # the 400 kB document, at least
    result = await cli(capsys, "verify", store.url, "--max-payload-size", str(limit), "--json")
    assert result.code == 1
    reasons = {bad["key"]: bad["reason"] for bad in result.json()["bad"]}
    for key in too_big:
        assert "larger than any object holding a payload" in reasons[key]
    assert result.json()["checked"] == len(stored.objects)


async def test_verify_refuses_a_store_with_no_manifest_and_no_objects(
    store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    await store.raw_put("notes/readme", b"not ours")  # a folder or prefix used for something else
    result = await cli(capsys, "verify", store.url)
    assert_one_line_error(result, "not a casstore store", "_casstore/lifecycle.json")
    await ensure_policy(store.backend, LifecyclePolicy())  # an empty store a writer set up
    result = await cli(capsys, "verify", "--store", store.url)
    assert result.code == 0, result
    assert result.out.startswith("checked 0 objects")
