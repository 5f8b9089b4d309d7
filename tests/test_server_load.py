"""``casstore serve`` under load on loopback: no request or client can starve the others.

A real server process and raw socket clients (tests/support/load.py). Each test
asserts what a user sees (every answer right, the small request answered
while the large ones are still running, memory and descriptors bounded, a
prompt exit on SIGTERM), never a timing; the figures are printed and written
to test-artifacts/server-load.json. ``CASSTORE_LOAD_SCALE=full`` (``make
bench-server``) runs the sizes docs/codec-server.md reports; the default is
smaller so the module takes tens of seconds.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.common.v1 import Payload

from casstore import CasStorageDriver
from casstore._url import open_backend
from testrig import CodecServerProcess
from tests.support import load
from tests.support.server_http import body, stored

pytestmark = pytest.mark.integration
FULL = os.environ.get("CASSTORE_LOAD_SCALE") == "full"
BIG_BYTES = 10 * 1024 * 1024
BIG_CLIENTS = 200 if FULL else 60
STALLED_CLIENTS = 100 if FULL else 24
TRICKLING = 2000 if FULL else 600
TRICKLING_OVER_LIMIT = 1100
FD_LIMIT = 1024
HEADER_TIMEOUT = 2.0
SEND_TIMEOUT = 4.0
MAX_BYTES_IN_FLIGHT = 128 * 1024 * 1024
ARTIFACTS = Path(os.environ.get("CASSTORE_TEST_ARTIFACTS", "test-artifacts"))
FIGURES: dict[str, Any] = {"scale": "full" if FULL else "quick"}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, bytes]]:
    """A store with one 10 MiB payload and a few small ones; their /decode bodies."""
    root = str(tmp_path_factory.mktemp("load-store"))

    async def write() -> dict[str, bytes]:
        async with open_backend(root) as backend:
            driver = CasStorageDriver(backend, max_payload_size=64 * 1024 * 1024)
            big = base64.b64encode(secrets.token_bytes(BIG_BYTES * 3 // 4)).decode()
            [big_ref] = await stored(driver, big)
            smalls = await stored(driver, *[f"small value {i}" for i in range(8)])
            return {
                "big": body([big_ref]).encode(),
                **{f"small{i}": body([ref]).encode() for i, ref in enumerate(smalls)},
            }

    bodies = asyncio.run(write())
    bodies["root"] = root.encode()
    yield bodies
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "server-load.json").write_text(json.dumps(FIGURES, indent=2))
    print("\ncodec server load figures:", json.dumps(FIGURES, indent=2))


def serve(store: dict[str, bytes], *extra: str, **options: Any) -> CodecServerProcess:
    return CodecServerProcess(
        "--store", store["root"].decode(), "--port", "0", "--namespace", "default",
        "--header-timeout", str(HEADER_TIMEOUT), "--send-timeout", str(SEND_TIMEOUT),
        "--shutdown-timeout", "3", "--max-bytes-in-flight", str(MAX_BYTES_IN_FLIGHT),
        *extra, **options,
    )  # fmt: skip


def stop(server: CodecServerProcess) -> tuple[float, str]:
    """SIGTERM; assert a clean exit; return how long it took and what it printed."""
    started = time.monotonic()
    code, out = server.stop()
    took = time.monotonic() - started
    assert code == 0, out
    assert "casstore serve: stopped (SIGTERM)" in out
    return took, out


def missing_references(count: int) -> bytes:
    """``count`` distinct casstore references to objects that do not exist."""
    payloads = []
    for _ in range(count):
        digest = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
        claim = json.dumps([1, "default/order-42", digest, 29, 0], separators=(",", ":"))
        payload = Payload(
            data=json.dumps({"driverName": "casstore", "claimData": {"c": claim}}).encode()
        )
        payload.metadata["encoding"] = b"json/protobuf"
        payload.metadata["messageType"] = b"temporal.api.sdk.v1.ExternalStorageReference"
        payloads.append(payload)
    return body(payloads).encode()


def test_thousands_of_missing_references_answer_promptly_and_starve_no_one(
    store: dict[str, bytes],
) -> None:
    server = serve(store)
    try:

        async def scenario() -> tuple[load.Answer, load.Answer, load.Answer]:
            flood = asyncio.create_task(
                load.post(server.url, "/decode", missing_references(20_000))
            )
            missing = asyncio.create_task(
                load.post(server.url, "/decode", missing_references(1000))
            )
            await asyncio.sleep(0.2)
            cold = await load.post(server.url, "/decode", store["small0"])
            return await flood, await missing, cold

        flood, missing, cold = asyncio.run(scenario())
        assert flood.status == 413, flood.body
        assert "more than 1000 distinct stored payloads (max_references)" in str(
            load.json_of(flood)
        )
        assert missing.status == 404, missing.body
        assert str(load.json_of(missing)["key"]).startswith("v1/default/order-42/")
        assert cold.status == 200, cold.body
        assert b"small value 0" in base64.b64decode(json.loads(cold.body)["payloads"][0]["data"])
        FIGURES["missing"] = {
            "20000 distinct references: 413 after s": round(flood.seconds, 2),
            "1000 distinct missing references: 404 after s": round(missing.seconds, 2),
            "another client's cold read meanwhile, s": round(cold.seconds, 2),
        }
    finally:
        stop(server)


def test_a_small_request_is_served_while_large_ones_queue(store: dict[str, bytes]) -> None:
    server = serve(store)
    try:

        async def scenario() -> tuple[list[load.Answer], list[load.Answer]]:
            big = [
                asyncio.create_task(load.post(server.url, "/decode", store["big"], within=300))
                for _ in range(BIG_CLIENTS)
            ]
            await asyncio.sleep(1.0)  # the large requests are queued or running
            small = await asyncio.gather(
                *[load.post(server.url, "/decode", store[f"small{i}"]) for i in range(1, 6)]
            )
            return list(await asyncio.gather(*big)), list(small)

        big, small = asyncio.run(scenario())
        peak = load.memory_kib(server.proc.pid, "VmHWM")
        assert all(a.status == 200 for a in big), {a.status for a in big}
        assert all(a.size > BIG_BYTES for a in big)
        assert all(a.status == 200 for a in small), [a.body for a in small]
        # Fair: the small requests, sent after all the large ones, did not wait for
        # them (one first-come, first-served queue would answer them last).
        last_small = max(a.finished_at for a in small)
        finished_before = sum(a.finished_at < last_small for a in big)
        assert finished_before < BIG_CLIENTS // 2, (finished_before, BIG_CLIENTS)
        FIGURES["large"] = {
            "concurrent 10 MiB decodes": BIG_CLIENTS,
            "all answered in s": round(
                max(a.finished_at for a in big) - min(a.finished_at - a.seconds for a in big), 1
            ),
            "slowest large, s": round(max(a.seconds for a in big), 1),
            "small request, worst s": round(max(a.seconds for a in small), 2),
            "large ones answered before the last small one": finished_before,
            "server peak RSS MiB": peak // 1024,
        }
    finally:
        stop(server)


def test_clients_that_never_read_hold_bounded_memory_and_are_dropped(
    store: dict[str, bytes],
) -> None:
    server = serve(store)
    pid = server.proc.pid
    try:
        before = load.memory_kib(pid)
        stalled = load.open_stalled(server.url, "/decode", store["big"], STALLED_CLIENTS)
        try:
            time.sleep(2.0)
            small = asyncio.run(load.post(server.url, "/decode", store["small6"]))
            assert small.status == 200, small.body
            peak = load.memory_kib(pid, "VmHWM")
            # Bounded by the byte budget (payload, JSON and chunks: about 3x), not by the clients.
            assert (peak - before) * 1024 < 4 * MAX_BYTES_IN_FLIGHT, (peak, before)
            fds_stalled = load.open_descriptors(pid)
            deadline = time.monotonic() + 20 * SEND_TIMEOUT
            while load.open_descriptors(pid) > fds_stalled - STALLED_CLIENTS // 2:
                assert time.monotonic() < deadline, "stalled clients were never dropped"
                time.sleep(0.5)
            dropped_after = time.monotonic() - (deadline - 20 * SEND_TIMEOUT)
        finally:
            for sock in stalled:
                sock.close()
        after = asyncio.run(load.post(server.url, "/decode", store["small7"]))
        assert after.status == 200
        FIGURES["stalled"] = {
            "clients never reading a 10 MiB response": STALLED_CLIENTS,
            "server RSS before MiB": before // 1024,
            "server peak RSS MiB": peak // 1024,
            "small request meanwhile, s": round(small.seconds, 2),
            "half of them dropped after s": round(dropped_after, 1),
        }
    finally:
        _, out = stop(server)
    assert "connection dropped" in out


def test_trickling_connections_are_dropped_and_bounded_below_the_descriptor_limit(
    store: dict[str, bytes],
) -> None:
    server = serve(store, max_open_files=FD_LIMIT)
    pid = server.proc.pid
    sockets: list[Any] = []
    try:
        sockets = load.open_trickling(server.url, TRICKLING_OVER_LIMIT)
        stop_trickling = threading.Event()

        def trickler() -> None:
            while not stop_trickling.wait(1.0):
                load.trickle(sockets)

        thread = threading.Thread(target=trickler, daemon=True)
        thread.start()
        time.sleep(0.5)
        fds_flood = load.open_descriptors(pid)
        assert fds_flood < FD_LIMIT
        real = asyncio.run(load.post(server.url, "/decode", store["small1"], within=30))
        assert real.status == 200, real.body
        time.sleep(HEADER_TIMEOUT + 2.0)
        closed = load.trickle(sockets)
        stop_trickling.set()
        thread.join()
        assert closed == len(sockets), f"{len(sockets) - closed} trickling connections still open"
        for sock in sockets:
            sock.close()

        # More connections than the limit would allow, then SIGTERM in the middle of them.
        sockets = load.open_trickling(server.url, TRICKLING)
        fds_second = load.open_descriptors(pid)
        assert fds_second < FD_LIMIT
        took, _ = stop(server)
        assert took < 15  # --shutdown-timeout 3, and a wide margin for a loaded machine
        FIGURES["trickle"] = {
            "descriptor limit": FD_LIMIT,
            "trickling connections": TRICKLING_OVER_LIMIT,
            "server descriptors during the flood": fds_flood,
            "real request during the flood, s": round(real.seconds, 2),
            f"server descriptors with {TRICKLING} trickling": fds_second,
            "all dropped within s": HEADER_TIMEOUT + 2.0,
            "SIGTERM to exit, s": round(took, 2),
        }
    finally:
        for sock in sockets:
            sock.close()
        if server.proc.poll() is None:
            server.proc.send_signal(signal.SIGKILL)
