"""RedisBackend on a real redis-server: the conformance suite, plus what only Redis has."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from redis.asyncio import Redis

from casstore import CasStorageDriver, open_backend
from casstore.backends import Backend, CountingBackend
from casstore.backends.redis import MAX_STRING_SIZE, RedisBackend
from casstore.errors import (
    BackendError,
    BackendPermissionError,
    BackendUnavailableError,
    ConfigurationError,
    ObjectNotFoundError,
)
from casstore.testing import BackendTests, DriverTests
from testrig.processes import free_port
from tests.support.redis import RedisPlace

pytestmark = pytest.mark.integration

KEY = "v1/default/order-42/" + "ab" * 32
MANIFEST = "_casstore/lifecycle.json"


class TestRedisBackend(BackendTests, DriverTests):
    @pytest.fixture
    async def backend(self, redis_place: RedisPlace) -> AsyncIterator[RedisBackend]:
        self.place = redis_place
        async with redis_place.backend() as backend:
            yield backend

    async def raw_get(self, backend: Backend, key: str) -> bytes:
        return await self.place.raw_get(key)

    async def raw_put(self, backend: Backend, key: str, data: bytes) -> None:
        await self.place.raw_put(key, data)

    def names_in_errors(self, backend: Backend, key: str) -> list[str]:
        return [f"db=0, key={self.place.prefix}/{key}"]


class TestRedisBackendWithTTL(TestRedisBackend):
    @pytest.fixture
    async def backend(self, redis_place: RedisPlace) -> AsyncIterator[RedisBackend]:
        self.place = redis_place
        async with redis_place.backend(ttl=timedelta(hours=1)) as backend:
            yield backend


# Layout and lifecycle.


async def test_objects_are_plain_strings_under_the_prefix(redis_place: RedisPlace) -> None:
    async with redis_place.backend() as backend:
        await backend.put(KEY, b"payload")
        assert backend.redis_key(KEY) == f"{redis_place.prefix}/{KEY}"
    assert await redis_place.raw.get(f"{redis_place.prefix}/{KEY}") == b"payload"
    assert await redis_place.raw.type(f"{redis_place.prefix}/{KEY}") == b"string"
    assert await redis_place.raw_keys() == [
        f"{redis_place.prefix}#modified/{KEY}",
        f"{redis_place.prefix}/{KEY}",
    ]


async def test_ttl_is_set_on_write_and_reset_by_refresh_but_not_on_the_manifest(
    redis_place: RedisPlace,
) -> None:
    raw, name = redis_place.raw, f"{redis_place.prefix}/{KEY}"
    async with redis_place.backend(ttl=timedelta(seconds=4)) as backend:
        await backend.put(KEY, b"payload")
        await backend.put(MANIFEST, b"{}")
        assert 3000 < await raw.pttl(name) <= 4000
        assert 3000 < await raw.pttl(f"{redis_place.prefix}#modified/{KEY}") <= 4000
        assert await raw.pttl(f"{redis_place.prefix}/{MANIFEST}") == -1  # never expires
        before = await backend.stat(KEY)
        await asyncio.sleep(1.5)
        assert await backend.put(KEY, b"payload") is False  # a dedup hit resets nothing
        assert await raw.pttl(name) < 2600
        await backend.touch(KEY)
        assert await raw.pttl(name) > 3000
        after = await backend.stat(KEY)
        assert before is not None
        assert after is not None
        assert timedelta(seconds=1.4) < after.modified - before.modified < timedelta(seconds=3)
    # Opened without a ttl, a refresh removes the expiry: it follows the backend.
    async with redis_place.backend() as backend:
        await backend.touch(KEY)
        assert await raw.pttl(name) == -1


async def test_an_object_not_refreshed_expires_with_its_time(redis_place: RedisPlace) -> None:
    async with redis_place.backend(ttl=timedelta(milliseconds=300)) as backend:
        await backend.put(KEY, b"payload")
        await asyncio.sleep(0.6)
        assert await backend.stat(KEY) is None
        assert await redis_place.raw_keys() == []


async def test_move_never_replaces_an_existing_destination(redis_place: RedisPlace) -> None:
    # Content-addressed keys hold the same bytes; were they ever to differ, the
    # destination's bytes are the ones kept, and the source goes.
    trash = "_casstore/trash/" + KEY
    async with redis_place.backend(ttl=timedelta(hours=1)) as backend:
        await backend.put(KEY, b"source")
        await backend.put(trash, b"destination")
        assert await backend.move(KEY, trash) is True
        assert await redis_place.raw_get(trash) == b"destination"
        assert await backend.stat(KEY) is None
        assert await redis_place.raw.pttl(f"{redis_place.prefix}/{trash}") > 3_500_000
        with pytest.raises(ValueError, match="invalid object key"):
            await backend.move(trash, "../" + KEY)
        assert await redis_place.raw_get(trash) == b"destination"


async def test_scan_pages_through_thousands_of_keys_and_skips_foreign_ones(
    redis_place: RedisPlace,
) -> None:
    keys = [f"v1/default/wf/{i:064x}" for i in range(2500)]
    async with redis_place.raw.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.set(f"{redis_place.prefix}/{key}", b"x")
        pipe.set(f"{redis_place.prefix}/v1/sp ace", b"foreign")
        pipe.hset(f"{redis_place.prefix}/v1/a-hash", "f", "v")
        pipe.set(f"{redis_place.prefix}-sibling/{keys[0]}", b"theirs")
        await pipe.execute()
    async with redis_place.backend() as backend:
        listed = [key async for key, _ in backend.scan("v1/")]
        assert sorted(listed) == keys
        assert [k async for k, _ in backend.scan("v1/default/wf/" + "0" * 63 + "1")] == [keys[1]]
        with pytest.raises(ValueError, match="invalid scan prefix"):
            [k async for k, _ in backend.scan("*")]


async def test_get_range_reads_a_slice(redis_place: RedisPlace) -> None:
    data = bytes(range(256)) * 16
    async with redis_place.backend() as backend:
        await backend.put(KEY, data)
        assert await backend.get_range(KEY, 100, 50) == data[100:150]
        assert await backend.get_range(KEY, len(data) - 10, 50) == data[-10:]
        assert await backend.get_range(KEY, 0, 0) == b""
        with pytest.raises(ObjectNotFoundError, match="order-42"):
            await backend.get_range("v1/default/order-42/" + "cd" * 32, 0, 10)


# Eviction policy.


@pytest.mark.parametrize(
    ("policy", "ttl", "refused"),
    [
        ("allkeys-lru", None, True),
        ("volatile-lru", timedelta(hours=1), True),
        ("volatile-lru", None, False),
        ("noeviction", timedelta(hours=1), False),
    ],
)
async def test_an_evicting_policy_is_refused_unless_allowed(
    redis_place: RedisPlace, policy: str, ttl: timedelta | None, refused: bool
) -> None:
    await redis_place.raw.config_set("maxmemory-policy", policy)
    try:
        backend = redis_place.backend(ttl=ttl)
        if refused:
            with pytest.raises(ConfigurationError, match=f"maxmemory-policy is '{policy}'"):
                await backend.put(KEY, b"x")
            assert await redis_place.raw_keys() == []
            async with redis_place.backend(ttl=ttl, allow_eviction=True) as allowed:
                assert await allowed.put(KEY, b"x") is True
        else:
            async with backend:
                assert await backend.put(KEY, b"x") is True
    finally:
        await redis_place.raw.config_set("maxmemory-policy", "noeviction")


# Clients, URLs, errors.


async def test_a_passed_in_client_is_used_and_never_closed(redis_place: RedisPlace) -> None:
    client = Redis(host="127.0.0.1", port=redis_place.server.port)
    async with redis_place.backend(client=client) as backend:
        await backend.put(KEY, b"mine")
    assert await client.get(f"{redis_place.prefix}/{KEY}") == b"mine"  # still open
    await client.aclose()
    with pytest.raises(ConfigurationError, match="decode_responses=False"):
        redis_place.backend(client=Redis(decode_responses=True))
    with pytest.raises(ConfigurationError, match="leave port unset"):
        redis_place.backend(client=client, port=1)


def test_urls_give_every_option_and_never_show_the_password() -> None:
    backend = open_backend("redis://app:s3cret@cache.internal:6380/2?prefix=prod/p&ttl=60")
    assert isinstance(backend, RedisBackend)
    assert backend.prefix == "prod/p"
    assert backend.ttl == timedelta(seconds=60)
    assert dict(backend.describe()) == {
        "backend": "redis",
        "host": "cache.internal:6380",
        "db": "2",
        "prefix": "prod/p",
        "ttl": "60s",
    }
    assert "s3cret" not in repr(backend)
    assert open_backend("rediss://h", max_connections="4").describe()["host"] == "h:6379"
    for bad, words in [
        ("redis://:s3cret@h/zero", "database number"),
        ("redis://:s3cret@h?ttl=soon", "option ttl"),
        ("redis://:s3cret@h?prefix=/", "must not be empty"),
        ("redis://:s3cret@h?bucket=x", "unknown option 'bucket'"),
    ]:
        with pytest.raises(ConfigurationError, match=words) as info:
            open_backend(bad)
        assert "s3cret" not in str(info.value)


def test_the_largest_payload_is_checked_against_the_string_limit() -> None:
    backend = RedisBackend(port=1)
    assert backend.max_object_size == MAX_STRING_SIZE
    with pytest.raises(ConfigurationError, match="above the store's 536870912-byte limit"):
        CasStorageDriver(backend, max_payload_size=MAX_STRING_SIZE)
    CasStorageDriver(backend, max_payload_size=500 * 1024 * 1024)
    with pytest.raises(ConfigurationError, match="536870912-byte limit"):
        CasStorageDriver(CountingBackend(backend), max_payload_size=MAX_STRING_SIZE)


def test_a_wrapped_backend_keeps_its_capabilities() -> None:
    backend = CountingBackend(RedisBackend(port=1, ttl=timedelta(hours=1)))
    assert backend.expires_after == timedelta(hours=1)
    assert backend.max_object_size == MAX_STRING_SIZE
    assert RedisBackend(port=1).expires_after is None


async def test_a_refused_connection_names_host_key_and_operation() -> None:
    port = free_port()
    backend = RedisBackend("127.0.0.1", port, connect_timeout=2)
    with pytest.raises(BackendUnavailableError) as info:
        await backend.get(KEY)
    message = str(info.value)
    assert "Redis get could not reach the server" in message
    assert f"[host=127.0.0.1:{port}, db=0, key=casstore/{KEY}]" in message
    assert info.value.key == KEY
    with pytest.raises(BackendUnavailableError, match="Redis open could not reach"):
        await backend.open()
    await backend.aclose()


async def test_wrong_credentials_are_a_permission_error(redis_place: RedisPlace) -> None:
    backend = redis_place.backend(username="nobody", password="wrong")
    with pytest.raises(BackendPermissionError, match="refused the credentials for stat") as info:
        await backend.stat(KEY)
    assert "wrong" not in str(info.value)
    await backend.aclose()


async def test_an_acl_without_scripts_names_the_commands_needed(redis_place: RedisPlace) -> None:
    user = f"limited-{redis_place.prefix}"
    await redis_place.raw.acl_setuser(
        user, enabled=True, passwords=["+pw"], keys=["*"], commands=["+@all", "-evalsha", "-eval"]
    )
    try:
        async with redis_place.backend(username=user, password="pw") as backend:
            with pytest.raises(BackendPermissionError, match="EVALSHA") as info:
                await backend.stat(KEY)
        assert info.value.key == KEY
    finally:
        await redis_place.raw.acl_deluser(user)


async def test_an_oversized_object_is_refused_before_any_io() -> None:
    class Huge(bytes):
        def __len__(self) -> int:
            return MAX_STRING_SIZE + 1

    backend = RedisBackend(port=free_port())  # nothing listens: any I/O would fail otherwise
    with pytest.raises(BackendError, match="string limit"):
        await backend.put(KEY, Huge(b"x"))


# Deleting: every path tried against hostile keys, siblings and faults.


async def test_deletes_reach_exactly_their_own_objects(redis_place: RedisPlace) -> None:
    other = "v1/default/order-43/" + "ab" * 32
    sibling = f"{redis_place.prefix}-sibling/{KEY}"
    await redis_place.raw.set(sibling, b"theirs")
    async with redis_place.backend() as backend:
        await backend.put(KEY, b"ours")
        await backend.put(other, b"also ours")
        for hostile in ("../x/" + KEY, "", "v1/*", "v1/default/order-42/", "/" + KEY):
            with pytest.raises(ValueError, match="invalid object key"):
                await backend.delete(hostile)
            with pytest.raises(ValueError, match="invalid object key"):
                await backend.delete_many([KEY, hostile])  # checked before any DEL
        await backend.delete("v1/default")  # a "directory" deletes nothing below it
        assert await backend.stat(KEY) is not None
        await backend.delete(KEY)
        assert [k async for k, _ in backend.scan()] == [other]
    assert await redis_place.raw.get(sibling) == b"theirs"
    assert await redis_place.raw.get(f"{redis_place.prefix}#modified/{other}") is not None


async def test_a_move_whose_answer_is_lost_leaves_the_object_in_place(
    redis_place: RedisPlace,
) -> None:
    from testrig.tcpchaos import TcpChaosProxy

    trash = "_casstore/trash/" + KEY
    with TcpChaosProxy(redis_place.server.address) as proxy:
        backend = RedisBackend("127.0.0.1", proxy.port, prefix=redis_place.prefix)
        async with backend:
            await backend.put(KEY, b"payload")
            assert await backend.move("v1/default/order-42/" + "cd" * 32, trash) is False  # loaded
            proxy.schedule("reset_after")  # the script runs; its answer is lost
            with pytest.raises(BackendUnavailableError, match="move"):
                await backend.move(KEY, trash)
            proxy.schedule("reset")  # never reaches the server
            with pytest.raises(BackendUnavailableError, match="move"):
                await backend.move(trash, KEY)
    assert await redis_place.raw_get(trash) == b"payload"  # at the destination, never at neither
    assert await redis_place.raw.exists(f"{redis_place.prefix}/{KEY}") == 0


async def test_tls_with_rediss_urls_and_an_unverifiable_server_is_refused() -> None:
    from testrig.redis import RedisServer

    with RedisServer(tls=True) as server:
        async with open_backend(server.url) as backend:
            assert await backend.put(KEY, b"over tls") is True
            assert await backend.get(KEY) == b"over tls"
        # Without the CA, the self-signed certificate cannot be verified.
        backend = open_backend(f"rediss://127.0.0.1:{server.port}/0", connect_timeout=5)
        with pytest.raises(BackendUnavailableError, match="could not reach") as info:
            await backend.stat(KEY)
        assert "CERTIFICATE_VERIFY_FAILED" in str(info.value) or "certificate" in str(info.value)
        await backend.aclose()
        # A plain connection to a TLS port is refused too, clearly.
        plain = open_backend(f"redis://127.0.0.1:{server.port}/0", connect_timeout=2)
        with pytest.raises(BackendUnavailableError):
            await plain.stat(KEY)
        await plain.aclose()
