"""The codec server's admission lanes, body and send timeouts, in process."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.types import Message

from casstore import CasStorageDriver
from casstore._cli import main
from casstore.backends import MemoryBackend
from casstore.server import create_app
from casstore.server._admission import SMALL_COST, Admission
from casstore.server._sending import SlowClientError, TicketedResponse
from tests.support.server_http import JSON, ORDER, body, stored, values_of

MiB = 1024 * 1024


async def test_a_small_request_is_admitted_while_large_ones_queue() -> None:
    admission = Admission(max_bytes_in_flight=64 * MiB, max_concurrent_requests=2)
    held = [await admission.admit(10 * MiB) for _ in range(2)]
    queued = [asyncio.create_task(admission.admit(10 * MiB)) for _ in range(3)]
    await asyncio.sleep(0)
    small = await asyncio.wait_for(admission.admit(SMALL_COST), 1)
    assert not any(t.done() for t in queued)
    held[0].release()
    first = await asyncio.wait_for(queued[0], 1)  # first come, first served
    assert not queued[1].done()
    for ticket in (first, held[1], small):
        ticket.release()
        ticket.release()  # a second release gives nothing back twice
    for task in queued[1:]:
        (await asyncio.wait_for(task, 1)).release()


async def test_the_byte_budget_holds_and_a_cancelled_waiter_gives_its_place_back() -> None:
    admission = Admission(max_bytes_in_flight=40 * MiB, max_concurrent_requests=10)
    big = await admission.admit(30 * MiB)  # the large lane holds 35 MiB
    waiter = asyncio.create_task(admission.admit(10 * MiB))
    behind = asyncio.create_task(admission.admit(2 * MiB))
    await asyncio.sleep(0.01)
    assert not waiter.done()
    assert not behind.done()  # first come, first served: it waits behind the waiter
    waiter.cancel()
    (await asyncio.wait_for(behind, 1)).release()
    huge = asyncio.create_task(admission.admit(500 * MiB))  # larger than the lane: alone
    await asyncio.sleep(0.01)
    assert not huge.done()
    big.release()
    (await asyncio.wait_for(huge, 1)).release()


async def test_a_body_that_does_not_arrive_in_time_gets_408() -> None:
    driver = CasStorageDriver(MemoryBackend())
    app = create_app(driver, namespace="default", body_timeout=0.5)
    history = await stored(driver, ORDER)

    async def trickle() -> AsyncIterator[bytes]:
        yield b'{"payloads": '
        await asyncio.sleep(30)
        yield b"[]}"

    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://codec.test"
    ) as client:
        response = await client.post("/decode", content=trickle(), headers=JSON)
        assert response.status_code == 408
        assert "did not arrive within 0.5 s" in response.json()["message"]
        ok = await client.post("/decode", content=body(history), headers=JSON)
        assert values_of(ok) == [ORDER]


async def test_a_client_that_stops_reading_is_dropped_and_its_ticket_released() -> None:
    admission = Admission(max_bytes_in_flight=8 * MiB, max_concurrent_requests=1)
    ticket = await admission.admit(4 * MiB)
    sent: list[Message] = []
    aborted: list[bool] = []

    async def send(message: Message) -> None:
        if len(sent) == 3:
            await asyncio.sleep(30)  # the client stopped reading
        sent.append(message)

    response = TicketedResponse(b"x" * (1 * MiB), ticket, send_timeout=0.2)
    scope = {
        "method": "POST",
        "path": "/decode",
        "extensions": {"casstore.abort": {"abort": lambda: aborted.append(True)}},
    }
    with pytest.raises(SlowClientError):
        await response(scope, None, send)  # type: ignore[arg-type]
    assert aborted == [True]
    assert [m["type"] for m in sent] == ["http.response.start"] + ["http.response.body"] * 2
    # Released: another large request is admitted at once.
    (await asyncio.wait_for(admission.admit(4 * MiB), 1)).release()


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--max-references", "0", "must be greater than zero, got 0"),
        ("--header-timeout", "-1", "must be greater than zero, got -1"),
        ("--max-connections", "many", "expected a number, got 'many'"),
    ],
)
def test_serve_refuses_limits_that_are_not_positive(
    tmp_path: object, capsys: pytest.CaptureFixture[str], flag: str, value: str, message: str
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["serve", "--store", str(tmp_path), flag, value])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert flag in err
    assert message in err


async def test_a_response_being_sent_holds_its_bytes_but_not_its_slot() -> None:
    admission = Admission(max_bytes_in_flight=40 * MiB, max_concurrent_requests=1)
    sending = await admission.admit(20 * MiB)
    second = asyncio.create_task(admission.admit(10 * MiB))
    await asyncio.sleep(0.01)
    assert not second.done()  # one large request processed at a time
    sending.done_processing()  # its response is built; it is only being sent
    processing = await asyncio.wait_for(second, 1)
    processing.done_processing()
    third = asyncio.create_task(admission.admit(10 * MiB))  # 20 + 10 + 10 > 35 MiB
    await asyncio.sleep(0.01)
    assert not third.done()
    sending.release()
    (await asyncio.wait_for(third, 1)).release()
    processing.release()
