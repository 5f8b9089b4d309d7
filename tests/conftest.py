"""Every fixture the test modules share; the helpers behind them live in tests/support/.

Servers start on first use, on free loopback ports: S3 and Azure servers once
per session, a Temporal dev server once per module (a module can pass it
``temporal server start-dev`` flags in ``TEMPORAL_ARGS``).

The ``integration`` marker: a test that needs a real server or browser is
marked ``integration``, so that ``pytest -m "not integration"`` runs the unit
tests alone, fast and without starting anything. The marking is automatic for
every test using a fixture defined with ``@server_fixture``
(tests/support/servers.py), directly or through other fixtures; a test that
starts a server itself, or picks a server fixture by name at run time, carries
``@pytest.mark.integration`` (or its module sets ``pytestmark``, or its
parameter ``pytest.param(..., marks=pytest.mark.integration)``). A test that is
not marked and starts a testrig server anyway fails, naming the server, so a
missing mark cannot go unnoticed.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from redis.asyncio import Redis

import testrig.codec
import testrig.processes
import testrig.s3
from testrig import (
    AzuriteBlobServer,
    FakeGCSServer,
    MotoS3Server,
    RcloneS3Server,
    RedisServer,
    TemporalDevServer,
)
from tests.support.gcs import GCSPlace
from tests.support.objectstore import OBJSTORE_TARGETS, ObjStorePlace, objstore_place, target_server
from tests.support.redis import RedisPlace
from tests.support.s3 import (
    ENV_BUCKET,
    TARGETS,
    S3Place,
    S3Target,
    put_credentials_in_env,
    s3_place,
)
from tests.support.servers import SERVER_FIXTURES, server_fixture

# These pick a server fixture below by name, at run time.
SERVER_FIXTURES.update({"s3_target", "objstore_server"})

# The marker machinery.


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SERVER_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


_current: list[pytest.Item] = []


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[None]:
    _current.append(item)
    try:
        return (yield)
    finally:
        _current.pop()


def _refuse_unmarked(what: Callable[..., Any], name: str) -> Callable[..., Any]:
    def guarded(*args: Any, **kwargs: Any) -> Any:
        item = _current[-1] if _current else None
        if item is not None and item.get_closest_marker("integration") is None:
            raise RuntimeError(
                f"{item.nodeid} starts a server ({name}) but is not marked integration: "
                "define the fixture that starts it with @server_fixture "
                "(tests/support/servers.py), or mark the test @pytest.mark.integration"
            )
        return what(*args, **kwargs)

    return guarded


def pytest_configure(config: pytest.Config) -> None:
    # Every server the tests start goes through one of these.
    guards: list[tuple[Any, str]] = [
        (testrig.processes.Process, "__init__"),
        (testrig.s3.MotoS3Server, "start"),
        (testrig.codec.CodecServerProcess, "__init__"),
    ]
    for owner, attr in guards:
        original = getattr(owner, attr)
        setattr(owner, attr, _refuse_unmarked(original, f"{owner.__name__}.{attr}"))


# Temporal.


@server_fixture(scope="module")
def temporal(request: pytest.FixtureRequest) -> Iterator[TemporalDevServer]:
    """A dev server for the module; its extra flags come from the module's ``TEMPORAL_ARGS``."""
    extra_args: list[str] = list(getattr(request.module, "TEMPORAL_ARGS", ()))
    with TemporalDevServer(extra_args=extra_args) as server:
        yield server


# S3: two local servers, or your own endpoint (see tests/support/s3.py).


@server_fixture(scope="session")
def moto_s3() -> Iterator[S3Target]:
    with MotoS3Server() as server:
        yield S3Target.of_server("moto", server, conditional_writes=True)


@server_fixture(scope="session")
def rclone_s3() -> Iterator[S3Target]:
    # rclone ignores If-None-Match: it cannot report a lost create race.
    with RcloneS3Server() as server:
        yield S3Target.of_server("rclone", server, conditional_writes=False)


@server_fixture(scope="session")
def env_s3() -> S3Target:
    target = S3Target.from_env()
    if target is None:
        pytest.skip(f"set {ENV_BUCKET} (see tests/support/s3.py) to test your own S3 endpoint")
    return target


@pytest.fixture(params=TARGETS)
def s3_target(request: pytest.FixtureRequest) -> S3Target:
    """Each S3 target in turn."""
    target: S3Target = request.getfixturevalue(f"{request.param}_s3")
    return target


@pytest.fixture
async def s3(s3_target: S3Target) -> AsyncIterator[S3Place]:
    """A fresh bucket-and-prefix on each S3 target in turn."""
    async with s3_place(s3_target) as place:
        yield place


@pytest.fixture
def aws_env(moto_s3: S3Target, monkeypatch: pytest.MonkeyPatch) -> S3Target:
    """moto's credentials in the environment, where the CLI's S3 backend finds them."""
    return put_credentials_in_env(monkeypatch, moto_s3)


@pytest.fixture
async def rclone_place(
    rclone_s3: S3Target, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[S3Place]:
    """A fresh bucket on rclone's S3 server, its credentials in the environment.

    S3Backend takes credentials from the AWS chain, never from URLs: they go in
    the environment, which worker subprocesses inherit.
    """
    put_credentials_in_env(monkeypatch, rclone_s3)
    async with s3_place(rclone_s3) as place:
        yield place


# Object stores: moto and rclone (S3), Azurite (Azure), through obstore.


@server_fixture(scope="session")
def azurite() -> Iterator[AzuriteBlobServer]:
    with AzuriteBlobServer() as server:
        yield server


@pytest.fixture(params=OBJSTORE_TARGETS)
def objstore_server(request: pytest.FixtureRequest) -> tuple[str, S3Target | AzuriteBlobServer]:
    """Each object-store target in turn: its name and its server."""
    name: str = request.param
    return name, target_server(request, name)


@pytest.fixture
async def objstore(
    objstore_server: tuple[str, S3Target | AzuriteBlobServer],
) -> AsyncIterator[ObjStorePlace]:
    """A fresh place on each object-store target in turn."""
    async with objstore_place(*objstore_server) as place:
        yield place


# Redis and GCS: one server each per session, a fresh prefix or bucket per test.


@server_fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture
async def redis_place(redis_server: RedisServer) -> AsyncIterator[RedisPlace]:
    raw = Redis(host="127.0.0.1", port=redis_server.port)
    place = RedisPlace(redis_server, f"t-{secrets.token_hex(6)}", raw)
    try:
        yield place
    finally:
        names = [name async for name in raw.scan_iter(match=f"{place.prefix}*")]
        if names:
            await raw.delete(*names)
        await raw.aclose()


@server_fixture(scope="session")
def gcs_server() -> Iterator[FakeGCSServer]:
    with FakeGCSServer() as server:
        yield server


@pytest.fixture
async def gcs_place(gcs_server: FakeGCSServer) -> GCSPlace:
    raw = gcs_server.client()
    bucket = f"b-{secrets.token_hex(6)}"
    await asyncio.to_thread(raw.create_bucket, bucket)
    return GCSPlace(gcs_server, bucket, f"p-{secrets.token_hex(4)}", raw)
