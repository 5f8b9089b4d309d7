"""S3 test targets: two real local servers, or an endpoint named by the environment.

Every S3 test gets an :class:`S3Place`: an empty bucket-and-prefix on one
target plus a raw client that bypasses :class:`~casstore.backends.s3.S3Backend`.
On the local servers that is a fresh bucket per test (cheaper than resetting,
and immune to other tests resetting moto's process-wide state); on an endpoint
from the environment, where tests cannot create buckets, it is a fresh prefix
in the given bucket, deleted afterwards.

Environment variables for testing against your own endpoint (MinIO, Ceph, AWS)::

    CASSTORE_TEST_S3_BUCKET              bucket to test in (required; enables the target)
    CASSTORE_TEST_S3_ENDPOINT            endpoint URL (unset: AWS)
    CASSTORE_TEST_S3_REGION              region (default us-east-1)
    CASSTORE_TEST_S3_CONDITIONAL_WRITES  false if the server ignores If-None-Match
    AWS_ACCESS_KEY_ID, AWS_PROFILE, ...  credentials, from the standard AWS chain
"""

from __future__ import annotations

import os
import secrets
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aioboto3
import pytest
from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession

from casstore._format.manifest import MANIFEST_KEY
from casstore.backends.s3 import S3Backend
from testrig import RcloneS3Server, S3Server

if TYPE_CHECKING:
    from types_aiobotocore_s3.client import S3Client

ENV_BUCKET = "CASSTORE_TEST_S3_BUCKET"
ENV_ENDPOINT = "CASSTORE_TEST_S3_ENDPOINT"
ENV_REGION = "CASSTORE_TEST_S3_REGION"
ENV_CONDITIONAL_WRITES = "CASSTORE_TEST_S3_CONDITIONAL_WRITES"
RACED_DIRECTORY = "v1/default/order-42"
"""Where tests write concurrently: the directory of the default test key."""


@dataclass(frozen=True)
class S3Target:
    """An S3 endpoint to run tests against."""

    name: str
    endpoint_url: str | None
    region: str
    access_key: str | None = None
    """None: credentials come from the standard AWS chain."""
    secret_key: str | None = None
    bucket: str | None = None
    """None: tests create a fresh bucket each."""
    conditional_writes: bool = True
    """Whether the server honours ``If-None-Match: *``."""
    server: S3Server | None = field(default=None, compare=False, repr=False)
    """The local server behind the target, if the session started one."""

    @classmethod
    def of_server(cls, name: str, server: S3Server, *, conditional_writes: bool) -> S3Target:
        return cls(
            name=name,
            endpoint_url=server.endpoint_url,
            region=server.region,
            access_key=server.access_key,
            secret_key=server.secret_key,
            conditional_writes=conditional_writes,
            server=server,
        )

    def prepare_directories(self, bucket: str, prefixes: list[str]) -> None:
        """Create the directories ``prefixes`` on rclone before anything writes into them.

        rclone creates a key's missing parent directories before reading the
        request body, and two requests racing to create one directory can fail
        there, leaving a client that sent ``Expect: 100-continue`` (botocore)
        waiting forever. Real S3 has no directories; on rclone, tests that
        write concurrently get theirs made up front, the same for every client.
        """
        if not isinstance(self.server, RcloneS3Server):
            return
        for prefix in prefixes:
            (self.server.root / bucket / prefix).mkdir(parents=True, exist_ok=True)
        self.server.flush_dir_cache()

    @classmethod
    def from_env(cls) -> S3Target | None:
        bucket = os.environ.get(ENV_BUCKET)
        if not bucket:
            return None
        conditional = os.environ.get(ENV_CONDITIONAL_WRITES, "true").lower()
        return cls(
            name="env",
            endpoint_url=os.environ.get(ENV_ENDPOINT) or None,
            region=os.environ.get(ENV_REGION) or "us-east-1",
            bucket=bucket,
            conditional_writes=conditional not in ("0", "false", "no", "off"),
        )

    def session(self, *, access_key: str | None = None) -> aioboto3.Session:
        """A new session for this target (``access_key`` overrides the key id)."""
        session = aioboto3.Session(
            aws_access_key_id=access_key or self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
            botocore_session=_botocore_session(),
        )
        # Each aioboto3 session appends its data folder to the shared loader's paths.
        paths = _SHARED["loader"].search_paths
        paths[:] = list(dict.fromkeys(paths))
        return session


_SHARED: dict[str, Any] = {}


def _botocore_session() -> AioSession:
    """A fresh botocore session sharing one model loader with every other test session.

    Each session would parse botocore's S3 models again (0.15-0.3 s of CPU per
    client, seconds under load); tests build two clients each, hundreds of times.
    """
    session = AioSession()
    if "loader" in _SHARED:
        session.register_component("data_loader", _SHARED["loader"])
    else:
        _SHARED["loader"] = session.get_component("data_loader")
    return session


def _is_manifest(key: str) -> bool:
    return key == MANIFEST_KEY or key.endswith("/" + MANIFEST_KEY)


@dataclass
class RequestLog:
    """Records every S3 API call made by clients of the sessions it is attached to."""

    calls: list[tuple[str, str, str]] = field(default_factory=list)
    """(operation, bucket, key) in order."""

    def attach(self, session: aioboto3.Session) -> aioboto3.Session:
        # Clients copy their session's handlers when created.
        session.events.register("before-parameter-build.s3", self._record)
        return session

    def _record(self, params: dict[str, Any], event_name: str, **_: Any) -> None:
        operation = event_name.rsplit(".", 1)[-1]
        self.calls.append((operation, params.get("Bucket", ""), params.get("Key", "")))

    @property
    def counts(self) -> Counter[str]:
        """Calls by operation, but for the lifecycle manifest's (see :attr:`manifest_counts`)."""
        return Counter(op for op, _, key in self.calls if not _is_manifest(key))

    @property
    def manifest_counts(self) -> Counter[str]:
        """Calls for the lifecycle manifest, which each driver reads on its first store."""
        return Counter(op for op, _, key in self.calls if _is_manifest(key))


@dataclass
class S3Place:
    """An empty bucket and prefix on a target, and a raw client bypassing S3Backend."""

    target: S3Target
    bucket: str
    prefix: str
    raw: S3Client

    def session(
        self, *, log: RequestLog | None = None, access_key: str | None = None
    ) -> aioboto3.Session:
        session = self.target.session(access_key=access_key)
        return log.attach(session) if log else session

    def backend(
        self,
        *,
        log: RequestLog | None = None,
        bucket: str | None = None,
        session: aioboto3.Session | None = None,
        access_key: str | None = None,
        **options: Any,
    ) -> S3Backend:
        """An S3Backend that builds (and owns) its client, as most users run it."""
        options.setdefault("conditional_writes", self.target.conditional_writes)
        return S3Backend(
            bucket or self.bucket,
            self.prefix,
            session=session or self.session(log=log, access_key=access_key),
            endpoint_url=self.target.endpoint_url,
            **options,
        )

    def s3_key(self, key: str) -> str:
        return f"{self.prefix}/{key}"

    async def raw_get(self, key: str) -> bytes:
        response = await self.raw.get_object(Bucket=self.bucket, Key=self.s3_key(key))
        async with response["Body"] as body:
            return await body.read()

    async def raw_put(self, key: str, data: bytes) -> None:
        await self.raw.put_object(Bucket=self.bucket, Key=self.s3_key(key), Body=data)

    async def raw_keys(self, prefix: str | None = None) -> list[str]:
        """Keys under the backend's prefix (or under ``prefix``), as stored in S3."""
        pages = self.raw.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.prefix + "/" if prefix is None else prefix
        )
        return [item["Key"] async for page in pages for item in page.get("Contents", ())]


def _raw_config() -> AioConfig:
    return AioConfig(
        s3={"addressing_style": "path"}, retries={"mode": "standard", "total_max_attempts": 3}
    )


@asynccontextmanager
async def s3_place(target: S3Target) -> AsyncIterator[S3Place]:
    """Open a fresh place on ``target``; remove what it held afterwards where shared."""
    async with target.session().client(
        "s3", endpoint_url=target.endpoint_url, config=_raw_config()
    ) as raw:
        if target.bucket is None:
            bucket = f"casstore-{secrets.token_hex(6)}"
            await raw.create_bucket(Bucket=bucket)
        else:
            bucket = target.bucket
        # Tests may write next to the backend's prefix too: clean up the parent.
        scratch = f"casstore-test/{secrets.token_hex(6)}/"
        place = S3Place(target=target, bucket=bucket, prefix=scratch + "store", raw=raw)
        target.prepare_directories(bucket, [f"{place.prefix}/{RACED_DIRECTORY}"])
        try:
            yield place
        finally:
            if target.bucket is not None:
                for key in await place.raw_keys(scratch):
                    await raw.delete_object(Bucket=bucket, Key=key)


# Your own endpoint joins the targets only when configured, so that a plain
# `make test` does not list dozens of skipped tests.
TARGETS = ["moto", "rclone"] + (["env"] if S3Target.from_env() else [])


def put_credentials_in_env(monkeypatch: pytest.MonkeyPatch, target: S3Target) -> S3Target:
    """Put ``target``'s keys where the AWS chain finds them (the CLI, worker subprocesses)."""
    assert target.access_key is not None
    assert target.secret_key is not None
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", target.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", target.secret_key)
    for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    return target
