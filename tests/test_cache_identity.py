"""A warm cache answers every claim exactly as a cold read does (hypothesis).

Retrieval caches verified payloads (and shares in-flight reads) so repeated
claims cost no request. Those caches must never accept a claim a cold read
refuses: a claim that names another namespace's location (or ``_``), another
digest, key id, claim version or size. Each example stores payloads in two
namespaces, plain and encrypted, warms drivers (and a codec server) by storing
and reading them, then mutates a valid claim field by field and checks that a
warm reader and a cold one give the same payload or the same kind of error.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, replace

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from temporalio.api.common.v1 import Payload
from temporalio.converter import (
    StorageDriverClaim,
    StorageDriverRetrieveContext,
    StorageDriverStoreContext,
    StorageDriverWorkflowInfo,
)

from casstore import CasStorageDriver, KeyRing
from casstore._format.claims import Claim, make_claim_data, make_claim_data_v2, parse_claim_data
from casstore._format.encrypted import ObjectCipher
from casstore._format.header import Codec
from casstore.backends import MemoryBackend
from casstore.errors import CasstoreError
from casstore.server import create_app
from casstore.server._references import make_reference

RING = KeyRing({"k1": bytes(range(32)), "k2": bytes(range(1, 33))})
VALUES = (b"alpha", b"bravo", b"charlie " * 40)
"""Stored in both namespaces."""
OWN = {"team-a": b"only team-a has this", "team-b": b"only team-b has this " * 20}
"""Stored in one namespace each: what another namespace must not confirm or read."""
NAMESPACES = ("team-a", "team-b")
EXAMPLES = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _context(namespace: str, workflow_id: str) -> StorageDriverStoreContext:
    return StorageDriverStoreContext(
        target=StorageDriverWorkflowInfo(namespace=namespace, id=workflow_id)
    )


def _payload(value: bytes) -> Payload:
    return Payload(metadata={"encoding": b"binary/plain"}, data=value)


@dataclass
class World:
    """A store holding plain and encrypted payloads of two namespaces, and its claims."""

    backend: MemoryBackend
    plain: CasStorageDriver
    """Wrote the plain objects: warm through its store path."""
    sealed: CasStorageDriver
    """Wrote the encrypted objects and read every claim: warm both ways."""
    claims: list[Claim]


async def _world() -> World:
    backend = MemoryBackend()
    plain = CasStorageDriver(backend)
    sealed = CasStorageDriver(backend, keyring=RING)
    by_namespace = CasStorageDriver(backend, scope="namespace", keyring=RING.with_active("k2"))
    claims: list[Claim] = []
    for namespace, workflow_id in (("team-a", "wa"), ("team-b", "wb")):
        for driver in (plain, sealed, by_namespace):
            values = [*VALUES, OWN[namespace]]
            stored = await driver.store(
                _context(namespace, workflow_id), [_payload(v) for v in values]
            )
            claims += [parse_claim_data(c.claim_data, max_size=1 << 20) for c in stored]
    await sealed.retrieve(StorageDriverRetrieveContext(), [_claim(c) for c in claims])
    return World(backend, plain, sealed, claims)


def _claim_data(claim: Claim) -> dict[str, str]:
    if claim.version == 1:
        return make_claim_data(claim.location, claim.digest, claim.size, claim.codec or Codec.RAW)
    return make_claim_data_v2(claim.location, claim.digest, claim.size, claim.key_id)


def _claim(claim: Claim) -> StorageDriverClaim:
    return StorageDriverClaim(claim_data=_claim_data(claim))


def _digests(world: World) -> list[bytes]:
    """Every digest a claim could name: the stored ones and the other keys' digests."""
    ciphers = [ObjectCipher(key_id, RING.key(key_id)) for key_id in RING.key_ids]
    found = {c.digest for c in world.claims}
    for value in [*VALUES, *OWN.values()]:
        data = _payload(value).SerializeToString(deterministic=True)
        found |= {cipher.digest(data) for cipher in ciphers}
    return sorted(found)


FIELDS = ("location", "digest", "size", "key_id", "version", "codec")


def _mutated(world: World, data: st.DataObject) -> Claim:
    """A valid claim with one or more fields replaced by another claim's or a near value."""
    claim = data.draw(st.sampled_from(world.claims))
    fields = data.draw(st.sets(st.sampled_from(FIELDS), min_size=1))
    locations = sorted({c.location for c in world.claims} | {"_", "team-a/other", "team-c"})
    sizes = sorted({c.size for c in world.claims} | {0, claim.size - 1, claim.size + 1} - {-1})
    choices: dict[str, st.SearchStrategy[object]] = {
        "location": st.sampled_from(locations),
        "digest": st.sampled_from(_digests(world)),
        "size": st.sampled_from(sizes),
        "key_id": st.sampled_from([None, "k1", "k2", "k9"]),
        "version": st.sampled_from([1, 2]),
        "codec": st.sampled_from([Codec.RAW, Codec.ZSTD]),
    }
    changes = {name: data.draw(choices[name], label=name) for name in sorted(fields)}
    claim = replace(claim, **changes)  # type: ignore[arg-type]
    if claim.version == 1:  # version 1 claims are plain: they carry no key id
        claim = replace(claim, key_id=None, codec=claim.codec or Codec.RAW)
    return claim


async def _outcome(driver: CasStorageDriver, claim: Claim) -> object:
    try:
        [payload] = await driver.retrieve(StorageDriverRetrieveContext(), [_claim(claim)])
    except CasstoreError as exc:
        return type(exc)
    return payload.SerializeToString(deterministic=True)


@EXAMPLES
@given(data=st.data())
def test_a_warm_driver_answers_every_mutated_claim_as_a_cold_one(data: st.DataObject) -> None:
    async def check() -> None:
        world = await _world()
        claim = _mutated(world, data)
        for warm, keyring in ((world.sealed, RING), (world.plain, None)):
            cold = CasStorageDriver(world.backend, keyring=keyring, retrieval_cache_bytes=0)
            expected = await _outcome(cold, claim)
            assert await _outcome(warm, claim) == expected, (claim, keyring)

    asyncio.run(check())


async def test_a_warm_driver_refuses_another_namespaces_location_and_plain_claims() -> None:
    """The cases that motivate the property, spelled out."""
    world = await _world()
    size = len(_payload(OWN["team-b"]).SerializeToString())
    [theirs, sealed] = [
        c
        for c in world.claims
        if c.location == "team-b/wb" and c.size == size and c.key_id in (None, "k1")
    ]
    forged = [
        replace(theirs, location="team-a/wa"),
        replace(theirs, location="_"),
        replace(theirs, location="team-a", version=2, codec=None),
        replace(sealed, version=1, key_id=None, codec=Codec.RAW),  # plain claim, keyed digest
        replace(sealed, location="team-a/wa"),
        replace(sealed, key_id="k2"),
        replace(sealed, size=sealed.size + 1),
    ]
    hits = world.sealed.stats.retrieval_cache_hits
    for claim in forged:
        assert isinstance(await _outcome(world.sealed, claim), type), claim
    assert world.sealed.stats.retrieval_cache_hits == hits


# Through the codec server: the same property per HTTP request.


async def _respond(client: httpx.AsyncClient, path: str, claim: Claim) -> tuple[int, object]:
    reference = make_reference("casstore", _claim_data(claim), claim.size)
    body = {"payloads": [json.loads(_payload_json(reference))]}
    response = await client.post(path, json=body)
    if response.status_code != 200:
        return response.status_code, None
    return 200, response.json()


def _payload_json(payload: Payload) -> str:
    from google.protobuf import json_format

    return json_format.MessageToJson(payload)


def _client(driver: CasStorageDriver) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=create_app(driver))
    return httpx.AsyncClient(transport=transport, base_url="http://codec.test")


@EXAMPLES
@given(
    data=st.data(),
    namespace=st.sampled_from(NAMESPACES),
    verb=st.sampled_from(["decode", "download"]),
)
def test_a_warm_codec_server_answers_every_mutated_claim_as_a_cold_one(
    data: st.DataObject, namespace: str, verb: str
) -> None:
    async def check() -> None:
        world = await _world()
        async with _client(world.sealed) as warm:
            # Warm it the way the Web UI does: each namespace reads its own payloads.
            for own in NAMESPACES:
                for claim in world.claims:
                    if claim.location.split("/")[0] == own:
                        status, _ = await _respond(warm, f"/{own}/download", claim)
                        assert status == 200, claim
            claim = _mutated(world, data)
            path = f"/{namespace}/{verb}"
            cold_driver = CasStorageDriver(world.backend, keyring=RING, retrieval_cache_bytes=0)
            async with _client(cold_driver) as cold:
                expected = await _respond(cold, path, claim)
            assert await _respond(warm, path, claim) == expected, (path, claim)

    asyncio.run(check())
