"""End to end under faults: a fan-out workflow on a real dev server, S3 behind the fault proxy.

One in ten S3 requests fails (5xx, resets before/after/mid-answer, silence,
trickle, latency); the workflow must complete, and afterwards, with the
faults gone, every reference in every history must decode (0 payloads lost).
"""

from __future__ import annotations

import uuid
from urllib.parse import urlsplit

from temporalio.client import Client
from temporalio.converter import StorageDriverClaim, StorageDriverRetrieveContext

from casstore import CasStorageDriver
from casstore.backends.s3 import S3Backend
from casstore.history import history_references, workflow_task_failures
from casstore.plugin import CasStorePlugin
from testrig import TemporalDevServer
from testrig.chaos import ChaosProxy
from tests.support.fanout import run_fan_out
from tests.support.s3 import S3Target, s3_place
from tests.support.sdk import big_json

FAULT_RATE = 0.1


async def test_fan_out_completes_with_no_payload_lost_while_10_percent_of_s3_requests_fail(
    temporal: TemporalDevServer, moto_s3: S3Target
) -> None:
    port = urlsplit(moto_s3.endpoint_url or "").port
    assert port is not None
    document = big_json(32 * 1024)
    width, children = 8, 3
    workflow_id, task_queue = f"faults-{uuid.uuid4().hex[:12]}", f"q-{uuid.uuid4().hex[:8]}"
    workflow_ids = [workflow_id] + [f"{workflow_id}-child-{i}" for i in range(children)]
    async with s3_place(moto_s3) as place:
        with ChaosProxy(("127.0.0.1", port), fault_rate=FAULT_RATE, seed=10) as proxy:
            backend = S3Backend(
                place.bucket, place.prefix, session=place.session(), endpoint_url=proxy.endpoint_url
            )
            async with CasStorePlugin(backend, payload_size_threshold=0) as plugin:
                client = await Client.connect(temporal.address, plugins=[plugin])
                summary = await run_fan_out(
                    client,
                    document,
                    activities=width,
                    children=children,
                    child_activities=width,
                    workflow_id=workflow_id,
                    task_queue=task_queue,
                )
                histories = [
                    await client.get_workflow_handle(wid).fetch_history() for wid in workflow_ids
                ]
            injected = sum(proxy.injected.values())
            requests = proxy.requests
        assert summary.activities == width * (1 + children)
        assert summary.rows == len(document["rows"]) * (1 + children)
        assert injected >= 3, (injected, requests)

        # Faults gone, caches cold: every reference decodes (a lost payload would not).
        claims = [
            StorageDriverClaim(claim_data=dict(ref.reference.claim_data))
            for history in histories
            for ref in history_references(history)
        ]
        assert len(claims) > 2 * (1 + children)
        async with S3Backend(
            place.bucket, place.prefix, session=place.session(), endpoint_url=moto_s3.endpoint_url
        ) as direct:
            fresh = CasStorageDriver(direct, retrieval_cache_bytes=0)
            payloads = await fresh.retrieve(StorageDriverRetrieveContext(), claims)
        assert len(payloads) == len(claims)
        failures = [f for history in histories for f in workflow_task_failures(history)]
        print(
            f"{requests} S3 requests, {injected} faults injected {dict(proxy.injected)}, "
            f"{len(claims)} references, 0 lost, {len(failures)} workflow task failures"
        )
