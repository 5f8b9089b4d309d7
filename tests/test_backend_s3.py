"""S3Backend: the shared conformance suite on real S3 servers, plus S3 specifics."""

from __future__ import annotations

import secrets
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from casstore import open_backend
from casstore.backends import Backend
from casstore.backends.s3 import S3Backend
from casstore.errors import (
    BackendError,
    BackendPermissionError,
    BackendUnavailableError,
    ConfigurationError,
)
from casstore.testing import BackendTests, DriverTests
from testrig import free_port
from tests.support.conformance import RawThroughPlace
from tests.support.s3 import TARGETS, RequestLog, S3Place, S3Target, s3_place

KEY = "v1/default/order-42/" + "ab" * 32
CONFORMANCE_DIR = "v1/default/order-42"  # where casstore.testing's concurrent puts go
REPO_ROOT = Path(__file__).resolve().parents[1]


class _S3Conformance(RawThroughPlace, BackendTests, DriverTests):
    pytestmark = pytest.mark.integration  # its backend fixture picks a server at run time
    target = ""
    place: S3Place

    @pytest.fixture
    async def backend(self, request: pytest.FixtureRequest) -> AsyncIterator[S3Backend]:
        target: S3Target = request.getfixturevalue(f"{self.target}_s3")
        # rclone replaces an existing file by deleting it, then renaming its upload
        # into place, so concurrent PUTs of one key can fail each other with a 500
        # (docs/backends.md); the driver retries those, the suite calls put directly.
        options: dict[str, Any] = {"max_attempts": 3} if self.target == "rclone" else {}
        async with s3_place(target) as place, place.backend(**options) as backend:
            self.place = place
            # The suite's concurrent puts write under one directory: rclone's trap.
            target.prepare_directories(place.bucket, [f"{place.prefix}/{CONFORMANCE_DIR}"])
            yield backend

    def names_in_errors(self, backend: Backend, key: str) -> list[str]:
        return [f"bucket={self.place.bucket}", f"key={self.place.s3_key(key)}"]


class TestS3BackendOnMoto(_S3Conformance):
    target = "moto"


class TestS3BackendOnRclone(_S3Conformance):
    target = "rclone"


if "env" in TARGETS:

    class TestS3BackendOnYourEndpoint(_S3Conformance):
        target = "env"


# Layout and listing.


async def test_objects_live_under_the_prefix_in_the_bucket(s3: S3Place) -> None:
    async with s3.backend() as backend:
        await backend.put(KEY, b"data")
        assert backend.s3_key(KEY) == f"{s3.prefix}/{KEY}"
    assert await s3.raw_keys() == [f"{s3.prefix}/{KEY}"]


async def test_scan_skips_foreign_objects_and_stays_inside_the_prefix(s3: S3Place) -> None:
    await s3.raw_put("notes/read me.txt", b"not ours")
    await s3.raw.put_object(Bucket=s3.bucket, Key=f"{s3.prefix}-sibling/{KEY}", Body=b"x")
    async with s3.backend() as backend:
        await backend.put(KEY, b"data")
        assert [item async for item in backend.scan()] == [(KEY, 4)]


# Conditional create.


async def test_server_that_ignores_if_none_match_still_works(rclone_s3: S3Target) -> None:
    async with s3_place(rclone_s3) as s3, s3.backend(conditional_writes=True) as backend:
        assert await backend.put(KEY, b"same bytes") is True
        assert await backend.put(KEY, b"same bytes") is True  # overwritten, harmlessly
        assert await backend.get(KEY) == b"same bytes"


async def test_concurrent_conditional_write_conflict_is_retried(moto_s3: S3Target) -> None:
    # AWS answers 409 while another conditional write of the key is in flight;
    # neither local server does, so the first PutObject gets that answer here.
    conflicts = [409]

    def conflict_once(**_: Any) -> Any:
        if not conflicts:
            return None
        status = conflicts.pop()
        error = {"Code": "ConditionalRequestConflict", "Message": "in flight"}
        return SimpleNamespace(status_code=status), {
            "Error": error,
            "ResponseMetadata": {"HTTPStatusCode": status},
        }

    async with s3_place(moto_s3) as s3:
        log = RequestLog()
        session = s3.session(log=log)
        session.events.register("before-call.s3.PutObject", conflict_once)
        async with S3Backend(
            s3.bucket, s3.prefix, session=session, endpoint_url=s3.target.endpoint_url
        ) as backend:
            assert await backend.put(KEY, b"data") is True
        assert log.counts["PutObject"] == 2
        assert await s3.raw_get(KEY) == b"data"


# Multipart.


async def test_large_objects_go_up_in_parts(s3: S3Place) -> None:
    log = RequestLog()
    data = bytes(range(256)) * (48 * 1024)  # 12 MiB: parts of 5, 5 and 2 MiB
    async with s3.backend(
        log=log, multipart_threshold=6 * 1024 * 1024, multipart_part_size=5 * 1024 * 1024
    ) as backend:
        assert await backend.put(KEY, data) is True
        assert await backend.put(KEY, data) is not backend.conditional_writes
        assert await s3.raw_get(KEY) == data
    # Both puts upload in parts; only a server honouring If-None-Match
    # refuses to complete the second.
    assert log.counts == {
        "CreateMultipartUpload": 2,
        "UploadPart": 6,
        "CompleteMultipartUpload": 2,
        **({"AbortMultipartUpload": 1} if backend.conditional_writes else {}),
    }
    if backend.conditional_writes:
        # The losing upload is aborted, not left behind to be billed.
        uploads = await s3.raw.list_multipart_uploads(Bucket=s3.bucket, Prefix=s3.prefix)
        assert uploads.get("Uploads", []) == []


async def test_failed_multipart_upload_is_aborted(moto_s3: S3Target) -> None:
    from botocore.exceptions import ConnectionClosedError

    parts_seen: list[int] = []

    def fail_second_part(params: dict[str, Any], **_: Any) -> None:
        parts_seen.append(params["PartNumber"])
        if params["PartNumber"] == 2:
            raise ConnectionClosedError(endpoint_url="injected")

    async with s3_place(moto_s3) as s3:
        session = s3.session()
        session.events.register("before-parameter-build.s3.UploadPart", fail_second_part)
        backend = S3Backend(
            s3.bucket,
            s3.prefix,
            session=session,
            endpoint_url=s3.target.endpoint_url,
            multipart_threshold=6 * 1024 * 1024,
            multipart_part_size=5 * 1024 * 1024,
            multipart_concurrency=1,
        )
        async with backend:
            with pytest.raises(BackendUnavailableError, match=s3.bucket):
                await backend.put(KEY, bytes(11 * 1024 * 1024))
        uploads = await s3.raw.list_multipart_uploads(Bucket=s3.bucket, Prefix=s3.prefix)
        assert uploads.get("Uploads", []) == []
        assert await s3.raw_keys() == []
        assert 2 in parts_seen


# Errors.


async def test_missing_bucket_says_so(s3: S3Place) -> None:
    missing = f"casstore-missing-{secrets.token_hex(8)}"
    async with s3.backend(bucket=missing) as backend:
        assert await backend.stat(KEY) is None  # HEAD cannot tell a missing bucket apart
        for call in (backend.put(KEY, b"x"), backend.get(KEY)):
            with pytest.raises(BackendUnavailableError, match="does not exist") as info:
                await call
            assert f"bucket={missing}" in str(info.value)


async def test_wrong_credentials_are_a_permission_error(rclone_s3: S3Target) -> None:
    async with s3_place(rclone_s3) as s3, s3.backend(access_key="AKIAWRONG") as backend:
        for call in (backend.stat(KEY), backend.put(KEY, b"x"), backend.get(KEY)):
            with pytest.raises(BackendPermissionError, match="credentials") as info:
                await call
            message = str(info.value)
            assert f"bucket={s3.bucket}" in message
            assert f"key={s3.prefix}/{KEY}" in message
            assert "region=us-east-1" in message


@pytest.mark.parametrize(
    ("status", "code", "headers", "error", "message"),
    [
        (503, "SlowDown", {}, BackendUnavailableError, "unavailable or throttling"),
        (500, "InternalError", {}, BackendUnavailableError, "unavailable or throttling"),
        (
            301,
            "PermanentRedirect",
            {"x-amz-bucket-region": "eu-west-1"},
            BackendError,
            "set region=eu-west-1",
        ),
        (501, "NotImplemented", {}, BackendError, "set conditional_writes=false"),
        (400, "InvalidArgument", {}, BackendError, "InvalidArgument \\(HTTP 400\\)"),
        (403, "InvalidObjectState", {}, BackendError, "archived"),
    ],
)
async def test_s3_error_answers_map_to_casstore_errors(
    moto_s3: S3Target,
    status: int,
    code: str,
    headers: dict[str, str],
    error: type[Exception],
    message: str,
) -> None:
    # Answers neither local server gives on demand, injected at the client.
    def answer(**_: Any) -> Any:
        metadata = {"HTTPStatusCode": status, "HTTPHeaders": headers}
        return SimpleNamespace(status_code=status), {
            "Error": {"Code": code, "Message": "injected"},
            "ResponseMetadata": metadata,
        }

    async with s3_place(moto_s3) as s3:
        session = s3.session()
        session.events.register("before-call.s3.PutObject", answer)
        async with s3.backend(session=session) as backend:
            with pytest.raises(error, match=message) as info:
                await backend.put(KEY, b"data")
    assert type(info.value) is error
    assert f"bucket={s3.bucket}, key={s3.prefix}/{KEY}, region=us-east-1" in str(info.value)
    assert isinstance(info.value, BackendError)
    assert info.value.key == KEY  # the casstore key; the message names the S3 key
    assert info.value.backend is not None
    assert info.value.backend.startswith(f"S3Backend(backend=s3, bucket={s3.bucket}")


async def test_unreachable_endpoint_is_unavailable_naming_it() -> None:
    import aioboto3

    endpoint = f"http://127.0.0.1:{free_port()}"
    session = aioboto3.Session(
        aws_access_key_id="AKIATEST", aws_secret_access_key="SECRETTEST", region_name="us-east-1"
    )
    async with S3Backend(
        "casstore-test", session=session, endpoint_url=endpoint, max_attempts=1
    ) as backend:
        with pytest.raises(BackendUnavailableError, match=f"endpoint={endpoint}"):
            await backend.get(KEY)


async def test_no_credentials_anywhere_is_a_permission_error(
    moto_s3: S3Target, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # loopback only: no IMDS probe
    async with S3Backend(
        "casstore-test", region="us-east-1", endpoint_url=moto_s3.endpoint_url
    ) as backend:
        with pytest.raises(BackendPermissionError, match="no usable AWS credentials"):
            await backend.stat(KEY)


# Client ownership.


async def test_passed_in_client_is_used_and_left_open(moto_s3: S3Target) -> None:
    async with s3_place(moto_s3) as s3:
        async with s3.backend() as owner:
            await owner.put(KEY, b"data")
        async with S3Backend(s3.bucket, s3.prefix, client=s3.raw) as backend:
            assert await backend.get(KEY) == b"data"
        assert await s3.raw_get(KEY) == b"data"  # still open after the backend closed


async def test_owned_client_is_closed_and_rebuilt_on_next_use(moto_s3: S3Target) -> None:
    async with s3_place(moto_s3) as s3:
        backend = s3.backend()
        await backend.put(KEY, b"data")
        await backend.aclose()
        assert backend._client is None
        assert await backend.get(KEY) == b"data"
        await backend.aclose()


async def test_entering_builds_the_client_before_any_request(moto_s3: S3Target) -> None:
    # So the first request's deadline does not pay for the build.
    async with s3_place(moto_s3) as s3:
        backend = s3.backend()
        assert backend._client is None
        async with backend:
            client = backend._client
            assert client is not None
            await backend.open()
            assert backend._client is client  # idempotent
            assert await backend.put(KEY, b"data")
            assert await backend.get(KEY) == b"data"
        assert backend._client is None


def test_client_building_options_conflict_with_a_client() -> None:
    client: Any = object()
    with pytest.raises(ConfigurationError, match="endpoint_url, region"):
        S3Backend("bucket", client=client, region="eu-west-1", endpoint_url="http://x")


# Configuration.


@pytest.mark.parametrize(
    ("bucket", "prefix", "message"),
    [
        ("", "", "invalid S3 bucket"),
        ("a/b", "", "invalid S3 bucket"),
        ("bucket", "../up", "invalid S3 prefix"),
        ("bucket", "sp ace", "invalid S3 prefix"),
        ("bucket", "x" * 300, "above the 256 limit"),
    ],
)
def test_invalid_bucket_or_prefix_is_a_configuration_error(
    bucket: str, prefix: str, message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        S3Backend(bucket, prefix)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"multipart_part_size": 1024}, "at least 5 MiB"),
        ({"multipart_concurrency": 0}, "at least 1"),
        ({"max_attempts": 0}, "max_attempts must be greater than zero"),
        ({"retry_mode": "legacy"}, "retry_mode must be"),
    ],
)
def test_invalid_options_are_configuration_errors(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        S3Backend("bucket", **options)


def test_prefix_slashes_are_normalized() -> None:
    backend = S3Backend("bucket", "/prod/eu/")
    assert backend.prefix == "prod/eu"
    assert backend.s3_key(KEY) == f"prod/eu/{KEY}"
    assert S3Backend("bucket").s3_key(KEY) == KEY


def test_url_options_reach_the_backend() -> None:
    backend = open_backend(
        "s3://payloads/prod/eu?endpoint_url=http://127.0.0.1:9000&region=eu-west-1"
        "&retry_mode=adaptive&max_attempts=7&read_timeout=5&max_pool_connections=64"
        "&multipart_threshold=32MiB&multipart_part_size=6291456&multipart_concurrency=2"
        "&conditional_writes=false&addressing_style=virtual&client=aioboto3"
    )
    assert isinstance(backend, S3Backend)
    assert (backend.bucket, backend.prefix, backend.conditional_writes) == (
        "payloads",
        "prod/eu",
        False,
    )
    assert dict(backend.describe()) == {
        "backend": "s3",
        "bucket": "payloads",
        "prefix": "prod/eu",
        "region": "eu-west-1",
        "endpoint": "http://127.0.0.1:9000",
    }
    config: Any = backend._config
    assert config.retries == {"mode": "adaptive", "total_max_attempts": 7}
    assert (config.read_timeout, config.max_pool_connections) == (5.0, 64)
    assert config.s3 == {"addressing_style": "virtual"}
    assert (backend._multipart_threshold, backend._part_size) == (32 << 20, 6 << 20)


def test_keyword_options_work_like_query_options_and_override_them() -> None:
    backend = open_backend(
        "s3://payloads/prod/eu?region=us-east-1&max_attempts=2&conditional_writes=true",
        client="aioboto3",
        endpoint_url="http://127.0.0.1:9000",
        region="eu-west-1",  # overrides the query
        retry_mode="adaptive",
        max_attempts=7,
        read_timeout=5,
        max_pool_connections="64",  # strings are parsed as in a query
        multipart_threshold="32MiB",
        multipart_part_size=6 << 20,
        multipart_concurrency=2,
        conditional_writes=False,
        addressing_style="virtual",
        profile=None,  # None: not given
    )
    assert isinstance(backend, S3Backend)
    assert backend.conditional_writes is False
    assert backend.describe()["region"] == "eu-west-1"
    config: Any = backend._config
    assert config.retries == {"mode": "adaptive", "total_max_attempts": 7}
    assert (config.read_timeout, config.max_pool_connections) == (5.0, 64)
    assert config.s3 == {"addressing_style": "virtual"}
    assert (backend._multipart_threshold, backend._part_size) == (32 << 20, 6 << 20)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"touch": "copy"}, "option touch applies only to the default client \\(obstore\\)"),
        ({"session": object()}, "unknown option 'session'"),
        ({"client": object()}, "option client must be a string"),
        ({"max_attempts": 2.5}, "max_attempts must be a number, got 2.5"),
        ({"max_attempts": True}, "max_attempts must be a number"),
        ({"read_timeout": "soon"}, "read_timeout must be a number"),
        ({"multipart_threshold": 1.5}, "must be a size in bytes"),
        ({"conditional_writes": "maybe"}, "conditional_writes must be true or false"),
        ({"conditional_writes": 1}, "conditional_writes must be true or false"),
        ({"region": 5}, "region must be a string"),
        ({"retry_mode": "legacy"}, "retry_mode must be one of standard, adaptive"),
    ],
)
def test_bad_keyword_options_are_configuration_errors_naming_the_url(
    options: dict[str, object], message: str
) -> None:
    options.setdefault("client", "aioboto3")
    with pytest.raises(ConfigurationError, match=message) as info:
        open_backend("s3://payloads/prod", **options)
    assert "[url=s3://payloads/prod]" in str(info.value)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("s3://", "s3://bucket/prefix"),
        ("s3://key:secret@bucket/prefix", "no credentials"),
        ("s3://bucket?endpoint=http://x&endpoint_url=http://x", "one option \\(endpoint_url\\)"),
        ("s3://bucket?touch=copy", "applies only to the default client"),
        ("s3://bucket?max_attempts=many", "max_attempts must be a number"),
        ("s3://bucket?multipart_threshold=16MB", "must be a size in bytes"),
        ("s3://bucket?retry_mode=legacy", "retry_mode must be one of standard, adaptive"),
        ("s3://bucket?conditional_writes=maybe", "conditional_writes must be true or false"),
    ],
)
def test_bad_urls_are_configuration_errors_naming_the_url(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        S3Backend.from_url(url)
    with pytest.raises(ConfigurationError, match=message):
        open_backend(url + ("&" if "?" in url else "?") + "client=aioboto3")


async def test_backend_from_url_uses_the_aws_credential_chain(
    moto_s3: S3Target, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", str(moto_s3.access_key))
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", str(moto_s3.secret_key))
    async with s3_place(moto_s3) as s3:
        url = (
            f"s3://{s3.bucket}/{s3.prefix}?endpoint_url={moto_s3.endpoint_url}&region=us-east-1"
            "&client=aioboto3"
        )
        async with open_backend(url) as backend:
            assert isinstance(backend, S3Backend)
            await backend.put(KEY, b"via url")
        assert await s3.raw_get(KEY) == b"via url"


def test_unknown_profile_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    with pytest.raises(ConfigurationError, match="profile 'nobody' not found"):
        S3Backend("bucket", profile="nobody")


def test_import_without_aioboto3_says_how_to_install() -> None:
    script = textwrap.dedent(
        """
        import sys

        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("aioboto3", "aiobotocore", "botocore", "boto3"):
                    raise ImportError(f"No module named {name!r}")

        sys.meta_path.insert(0, Block())
        import casstore
        from casstore.errors import ConfigurationError

        for url in ("s3://bucket?client=aioboto3", None):
            try:
                if url:
                    casstore.open_backend(url)
                else:
                    import casstore.backends.s3
            except ConfigurationError as exc:
                assert isinstance(exc, ImportError), type(exc).__mro__
                print(exc)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 2
    assert all("pip install casstore[aioboto3]" in line for line in lines)
