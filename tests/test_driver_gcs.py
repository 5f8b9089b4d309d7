"""CasStorageDriver on GCSBackend (fake-gcs-server): faults on the wire.

The driver suite every backend runs (casstore.testing.DriverTests) runs on
GCS from tests/test_backend_gcs.py.

Faults come from the real HTTP chaos proxy (testrig/chaos.py) in front of the
real server: 5xx answers, resets before, after and in the middle of answers,
requests never answered, trickled answers, delays.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from casstore.backends.gcs import GCSBackend
from testrig.chaos import FAULTS, ChaosProxy
from tests.support.faults import nothing_lost_under_faults, survive_one_fault
from tests.support.gcs import GCSPlace

pytestmark = pytest.mark.integration


@pytest.fixture
def proxy(gcs_place: GCSPlace) -> Iterator[ChaosProxy]:
    upstream = ("127.0.0.1", gcs_place.server.port)
    with ChaosProxy(upstream, seed=5, trickle_interval=0.2) as chaos:
        yield chaos


def _through(gcs_place: GCSPlace, proxy: ChaosProxy) -> GCSBackend:
    return GCSBackend(
        gcs_place.bucket, gcs_place.prefix, endpoint=proxy.endpoint_url, emulator=True
    )


@pytest.mark.parametrize("fault", FAULTS)
async def test_each_fault_is_survived_within_the_deadline(
    gcs_place: GCSPlace, proxy: ChaosProxy, fault: str
) -> None:
    async with _through(gcs_place, proxy) as backend:
        await survive_one_fault(backend, lambda: proxy.schedule(fault))
    assert proxy.injected[fault] == 2


async def test_under_20_percent_faults_no_payload_is_lost_or_wrong(
    gcs_place: GCSPlace, proxy: ChaosProxy
) -> None:
    async with _through(gcs_place, proxy) as backend:
        await nothing_lost_under_faults(
            backend,
            start=lambda: proxy.configure(fault_rate=0.2, seed=20),
            stop=lambda: proxy.configure(fault_rate=0.0),
        )
    assert sum(proxy.injected.values()) >= 5
