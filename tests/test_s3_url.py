"""``s3://`` URLs: the default client, one set of option names, and the credential sources.

Credentials are checked against moto, with every other source switched off
(config files pointed into a temporary folder, instance metadata at a dead
loopback port), so a test passes only through the source it names.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from casstore import CasStorePlugin, open_backend
from casstore.backends.objectstore import ObjectStoreBackend
from casstore.backends.s3 import S3Backend
from casstore.errors import BackendPermissionError, ConfigurationError
from casstore.ops._store import open_store
from tests.support.objectstore import DEAD_ENDPOINT
from tests.support.s3 import S3Target, s3_place

KEY = "v1/default/order-42/" + "cd" * 32
_AWS_VARIABLES = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_ARN",
    "AWS_ROLE_SESSION_NAME",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_ENDPOINT_URL_STS",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
)


@pytest.fixture
def no_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No AWS credentials anywhere: empty config files, no variables, no metadata service."""
    for name in _AWS_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return tmp_path


def _url(target: S3Target, bucket: str, prefix: str, extra: str = "") -> str:
    return (
        f"s3://{bucket}/{prefix}?endpoint_url={target.endpoint_url}"
        f"&metadata_endpoint={DEAD_ENDPOINT}{extra}"
    )


# The default client, everywhere a URL is given.


def test_s3_urls_build_the_obstore_client_unless_told_otherwise(monkeypatch: Any) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIATEST")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "SECRETTEST")
    assert isinstance(open_backend("s3://payloads/prod"), ObjectStoreBackend)
    assert isinstance(CasStorePlugin("s3://payloads/prod").backend, ObjectStoreBackend)
    assert isinstance(open_backend("s3://payloads/prod?client=aioboto3"), S3Backend)
    assert isinstance(CasStorePlugin("s3://payloads/prod?client=aioboto3").backend, S3Backend)


async def test_commands_open_s3_urls_with_the_default_client_and_operator_retries(
    moto_s3: S3Target, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", str(moto_s3.access_key))
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", str(moto_s3.secret_key))
    async with s3_place(moto_s3) as place:
        url = f"s3://{place.bucket}/{place.prefix}?endpoint_url={moto_s3.endpoint_url}"
        async with open_store(url) as backend:
            assert isinstance(backend, ObjectStoreBackend)
            assert _obstore_view(backend)["attempts"] == 5
        async with open_store(url + "&client=aioboto3") as backend:
            assert isinstance(backend, S3Backend)
            assert _aioboto3_view(backend)["attempts"] == 5
        async with open_store(url + "&max_attempts=2") as backend:
            assert isinstance(backend, ObjectStoreBackend)
            assert _obstore_view(backend)["attempts"] == 2


# One URL, either client.


def _obstore_view(backend: Any) -> dict[str, Any]:
    store = backend.store
    return {
        "endpoint": store.config.get("endpoint"),
        "region": store.config.get("region"),
        "attempts": store.retry_config["max_retries"] + 1,
        "virtual": store.config.get("virtual_hosted_style_request") == "true",
        "connect_timeout": store.client_options["connect_timeout"],
        "conditional_writes": backend.conditional_writes,
    }


def _aioboto3_view(backend: Any) -> dict[str, Any]:
    config = backend._config
    return {
        "endpoint": backend.describe()["endpoint"],
        "region": backend.describe()["region"],
        "attempts": config.retries["total_max_attempts"],
        "virtual": config.s3 == {"addressing_style": "virtual"},
        "connect_timeout": f"{config.connect_timeout:g}s",
        "conditional_writes": backend.conditional_writes,
    }


@pytest.mark.parametrize(
    "query",
    [
        "endpoint_url=http://127.0.0.1:9000&max_attempts=3&addressing_style=virtual",
        "endpoint=http://127.0.0.1:9000&max_retries=2&virtual_hosted_style=true",
    ],
)
def test_one_url_means_the_same_store_with_either_client(query: str, monkeypatch: Any) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIATEST")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "SECRETTEST")
    url = f"s3://payloads/prod?{query}&region=eu-west-1&connect_timeout=3&conditional_writes=false"
    expected = {
        "endpoint": "http://127.0.0.1:9000",
        "region": "eu-west-1",
        "attempts": 3,
        "virtual": True,
        "connect_timeout": "3s",
        "conditional_writes": False,
    }
    assert _obstore_view(open_backend(url)) == expected
    assert _aioboto3_view(open_backend(url + "&client=aioboto3")) == expected


def test_a_worker_store_makes_one_attempt_per_request_with_either_client(monkeypatch: Any) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIATEST")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "SECRETTEST")
    assert _obstore_view(open_backend("s3://payloads"))["attempts"] == 1
    assert _aioboto3_view(open_backend("s3://payloads?client=aioboto3"))["attempts"] == 1


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("s3://payloads?multipart_threshold=32MiB", "multipart_threshold applies only to client="),
        ("s3://payloads?max_pool_connections=8", "add client=aioboto3 or drop"),
        ("s3://payloads?retry_mode=adaptive", "retry_mode applies only to client=aioboto3"),
        ("s3://payloads?client=aioboto3&touch=rewrite", "touch applies only to the default"),
        ("s3://payloads?client=aioboto3&request_timeout=5", "builds the aioboto3 client"),
        ("s3://payloads?endpoint=http://a&endpoint_url=http://b", "one option \\(endpoint_url\\)"),
        ("s3://payloads?max_attempts=0", "max_attempts must be at least 1"),
        ("s3://payloads?max_retries=-1", "max_retries must be at least 0"),
        ("s3://payloads?client=boto2", "client must be one of obstore, aioboto3"),
        ("s3://payloads?addressing_style=sideways", "addressing_style must be one of"),
    ],
)
def test_an_option_of_the_other_client_says_which_client_has_it(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message) as info:
        open_backend(url)
    assert f"[url={url}]" in str(info.value)


def test_secret_keywords_belong_to_the_obstore_client() -> None:
    with pytest.raises(ConfigurationError, match="access_key_id applies only to the default"):
        open_backend("s3://payloads?client=aioboto3", access_key_id="AKIATEST")


# Credentials: the sources a boto3 user has.


async def _round_trip(url: str) -> ObjectStoreBackend:
    backend = open_backend(url)
    assert isinstance(backend, ObjectStoreBackend)
    async with asyncio.timeout(30), backend:
        await backend.put(KEY, b"credentials")
        assert await backend.get(KEY) == b"credentials"
    return backend


def _access_key(backend: ObjectStoreBackend) -> str | None:
    provider: Any = backend.store.credential_provider
    if provider is None:
        return str(backend.store.config.get("access_key_id"))
    return str(provider()["access_key_id"])


async def test_credentials_from_the_environment(
    moto_s3: S3Target, no_aws: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAFROMENVIRONMENT")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "environment-secret")
    async with s3_place(moto_s3) as place:
        backend = await _round_trip(_url(moto_s3, place.bucket, place.prefix))
    assert backend.store.credential_provider is None  # obstore reads them itself
    assert await place.raw_get(KEY) == b"credentials"


@pytest.mark.parametrize("how", ["option", "AWS_PROFILE"])
async def test_credentials_and_region_from_a_shared_config_profile(
    moto_s3: S3Target, no_aws: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    (no_aws / "credentials").write_text(
        "[reader]\naws_access_key_id = AKIAFROMPROFILE\naws_secret_access_key = profile-secret\n"
    )
    (no_aws / "config").write_text("[profile reader]\nregion = eu-central-1\n")
    extra = "&profile=reader"
    if how == "AWS_PROFILE":
        monkeypatch.setenv("AWS_PROFILE", "reader")
        extra = ""
    async with s3_place(moto_s3) as place:
        backend = await _round_trip(_url(moto_s3, place.bucket, place.prefix, extra))
    assert _access_key(backend) == "AKIAFROMPROFILE"
    assert backend.describe()["region"] == "eu-central-1"


async def test_credentials_from_a_web_identity_token(
    moto_s3: S3Target, no_aws: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = no_aws / "token"
    token.write_text("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ3b3JrZXIifQ.")
    monkeypatch.setenv("AWS_WEB_IDENTITY_TOKEN_FILE", str(token))
    monkeypatch.setenv("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/casstore-worker")
    monkeypatch.setenv("AWS_ROLE_SESSION_NAME", "worker")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    # STS on loopback for boto3 (and for obstore's own chain, were it asked).
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", str(moto_s3.endpoint_url))
    monkeypatch.setenv("AWS_STS_ENDPOINT", str(moto_s3.endpoint_url))
    async with s3_place(moto_s3) as place:
        backend = await _round_trip(_url(moto_s3, place.bucket, place.prefix))
    key = _access_key(backend)
    assert key is not None
    assert key.startswith("ASIA")  # temporary credentials that STS handed out


async def test_no_credentials_fail_fast_naming_where_they_are_looked_up(
    moto_s3: S3Target, no_aws: Path
) -> None:
    backend = open_backend(_url(moto_s3, "casstore-none", "p"))
    async with asyncio.timeout(20), backend:
        with pytest.raises(BackendPermissionError, match="no usable credentials"):
            await backend.stat(KEY)


def test_a_profile_that_does_not_exist_or_has_no_credentials_is_a_configuration_error(
    no_aws: Path,
) -> None:
    with pytest.raises(ConfigurationError, match="profile 'nobody' not found"):
        open_backend("s3://payloads?profile=nobody")
    (no_aws / "config").write_text("[profile empty]\nregion = eu-west-1\n")
    with pytest.raises(ConfigurationError, match="profile 'empty' has no credentials"):
        open_backend("s3://payloads?profile=empty")
