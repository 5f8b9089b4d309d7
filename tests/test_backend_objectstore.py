"""ObjectStoreBackend: the conformance suite on moto, rclone and Azurite, plus its specifics."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from casstore.backends import Backend
from casstore.backends.objectstore import ObjectStoreBackend, TouchMode
from casstore.errors import (
    BackendError,
    BackendPermissionError,
    BackendUnavailableError,
    ConfigurationError,
    ObjectNotFoundError,
)
from casstore.testing import BackendTests, DriverTests
from testrig.azurite import AzuriteBlobServer
from testrig.chaos import Answer, ChaosProxy
from testrig.processes import free_port
from tests.support.conformance import RawThroughPlace
from tests.support.fresh import run_fresh
from tests.support.objectstore import (
    DEAD_ENDPOINT,
    WRONG_CREDENTIALS,
    ObjStorePlace,
    objstore_place,
    target_server,
)
from tests.support.s3 import S3Target

KEY = "v1/default/order-42/" + "ab" * 32
REPO_ROOT = Path(__file__).resolve().parents[1]


class _Conformance(RawThroughPlace, BackendTests, DriverTests):
    pytestmark = pytest.mark.integration  # its backend fixture picks a server at run time
    target = ""
    place: ObjStorePlace

    @pytest.fixture
    async def backend(self, request: pytest.FixtureRequest) -> AsyncIterator[ObjectStoreBackend]:
        async with objstore_place(self.target, target_server(request, self.target)) as place:
            self.place = place
            async with place.backend() as backend:
                yield backend

    def names_in_errors(self, backend: Backend, key: str) -> list[str]:
        return [f"={self.place.container}, key={self.place.full_key(key)}"]


class TestObjectStoreOnMoto(_Conformance):
    target = "moto"


class TestObjectStoreOnRclone(_Conformance):
    target = "rclone"


class TestObjectStoreOnAzurite(_Conformance):
    target = "azurite"


# Layout, confinement and listing.


async def test_objects_live_under_the_prefix_and_nowhere_else(objstore: ObjStorePlace) -> None:
    async with objstore.backend() as backend:
        await backend.put(KEY, b"data")
        assert backend.object_key(KEY) == f"{objstore.prefix}/{KEY}"
    assert await objstore.raw_keys("") == [f"{objstore.prefix}/{KEY}"]


async def test_scan_skips_foreign_objects_and_siblings_of_the_prefix(
    objstore: ObjStorePlace,
) -> None:
    await objstore.raw_put("notes/read me.txt", b"not ours")
    await objstore.raw_put_name(f"{objstore.prefix}-sibling/{KEY}", b"x")
    async with objstore.backend() as backend:
        await backend.put(KEY, b"data")
        assert [item async for item in backend.scan()] == [(KEY, 4)]
        # A prefix that ends inside a segment still matches by string, as the contract says.
        assert [k async for k, _ in backend.scan("v1/def")] == [KEY]
        assert [k async for k, _ in backend.scan("v1/other")] == []
        with pytest.raises(ValueError, match="invalid scan prefix"):
            [k async for k, _ in backend.scan("../")]


@pytest.mark.parametrize("touch", ["copy", "rewrite"])
async def test_touch_resets_the_age_each_service_counts_from(
    objstore: ObjStorePlace, touch: TouchMode
) -> None:
    # moto refuses a plain self-copy (as AWS does); the REPLACE copy is what works.
    async with objstore.backend(touch=touch) as backend:
        await backend.put(KEY, b"payload bytes")
        before = await objstore.last_modified(objstore.full_key(KEY))
        await asyncio.sleep(1.1)
        await backend.touch(KEY)
        assert await objstore.last_modified(objstore.full_key(KEY)) > before
        assert await objstore.raw_get(KEY) == b"payload bytes"
        with pytest.raises(ObjectNotFoundError):
            await backend.touch("v1/default/order-42/" + "cd" * 32)


async def test_delete_removes_only_its_own_object(objstore: ObjStorePlace) -> None:
    # The one delete path: a checked key, joined under the prefix, one object.
    other = "v1/default/order-43/" + "ab" * 32
    await objstore.raw_put_name(f"{objstore.prefix}-sibling/{KEY}", b"theirs")
    async with objstore.backend() as backend:
        await backend.put(KEY, b"ours")
        await backend.put(other, b"also ours")
        for hostile in ("../store-sibling/" + KEY, "", "v1/default/order-42/", "/" + KEY):
            with pytest.raises(ValueError, match="invalid object key"):
                await backend.delete(hostile)
        # A key naming a "directory" deletes no object below it (rclone, whose
        # keys are files in directories, refuses such a delete with a 500).
        for directory in ("v1/default", "v1"):
            try:
                await backend.delete(directory)
            except BackendUnavailableError:
                assert objstore.target == "rclone"
        await backend.delete(KEY)
        await backend.delete(KEY)
        assert [k async for k, _ in backend.scan()] == [other]
    assert await objstore.raw_keys(f"{objstore.prefix}-sibling/") == [
        f"{objstore.prefix}-sibling/{KEY}"
    ]


async def test_move_deletes_its_source_only_after_the_copy(objstore: ObjStorePlace) -> None:
    # gc's trash moves go through here: the one other delete path.
    trash = "_casstore/trash/" + KEY
    async with objstore.backend() as backend:
        await backend.put(KEY, b"payload")
        with pytest.raises(ValueError, match="invalid object key"):
            await backend.move(KEY, "../outside/" + KEY)  # refused before any request
        assert await objstore.raw_get(KEY) == b"payload"
        missing = "v1/default/order-42/" + "cd" * 32
        assert await backend.move(missing, trash) is False
        assert await backend.stat(trash) is None  # nothing was created either
        assert await backend.move(KEY, trash) is True
        assert await objstore.raw_get(trash) == b"payload"
        assert await backend.stat(KEY) is None
    async with objstore.backend(container="casstore-missing-" + objstore.container[-8:]) as gone:
        with pytest.raises(BackendUnavailableError, match="does not exist"):
            await gone.move(trash, KEY)
    assert await objstore.raw_get(trash) == b"payload"  # a failed move deleted nothing


# Conditional create.


async def test_create_if_absent_reports_the_lost_race(objstore: ObjStorePlace) -> None:
    async with objstore.backend() as backend:
        assert await backend.put(KEY, b"same bytes") is True
        second = await backend.put(KEY, b"same bytes")
    if objstore.target == "rclone":
        assert second is True  # rclone ignores If-None-Match: overwritten, harmlessly
    else:
        assert second is False  # moto answers 412, Azurite 409
    assert await objstore.raw_get(KEY) == b"same bytes"


async def test_unconditional_writes_against_a_conditional_server(moto_s3: S3Target) -> None:
    async with (
        objstore_place("moto", moto_s3) as place,
        place.backend(conditional_writes=False) as backend,
    ):
        assert backend.conditional_writes is False
        assert await backend.put(KEY, b"x") is True
        assert await backend.put(KEY, b"x") is True


# Errors.


async def test_missing_bucket_or_container_says_so(objstore: ObjStorePlace) -> None:
    missing = "casstore-missing-" + objstore.container[-12:]
    async with objstore.backend(container=missing) as backend:
        assert await backend.stat(KEY) is None  # HEAD cannot tell a missing container apart
        for call in (backend.put(KEY, b"x"), backend.get(KEY)):
            with pytest.raises(BackendUnavailableError, match="does not exist") as info:
                await call
            assert f"={missing}, key={objstore.prefix}/{KEY}" in str(info.value)


async def test_missing_object_is_not_found_naming_store_and_key(objstore: ObjStorePlace) -> None:
    async with objstore.backend() as backend:
        with pytest.raises(ObjectNotFoundError) as info:
            await backend.get(KEY)
    message = str(info.value)
    assert f"={objstore.container}, key={objstore.prefix}/{KEY}" in message
    assert "Debug source" not in message  # obstore's dump is summarized, not pasted
    assert isinstance(info.value.__cause__, FileNotFoundError)
    assert info.value.key == KEY
    assert info.value.backend is not None
    assert f"bucket={objstore.container}" in info.value.backend or (
        f"container={objstore.container}" in info.value.backend
    )


@pytest.mark.integration
@pytest.mark.parametrize("target", ["rclone", "azurite"])
async def test_wrong_credentials_are_a_permission_error(
    request: pytest.FixtureRequest, target: str
) -> None:
    # moto accepts any signature; rclone and Azurite check it.
    server, wrong = target_server(request, target), WRONG_CREDENTIALS[target]
    async with objstore_place(target, server) as place, place.backend(**wrong) as backend:
        for call in (backend.stat(KEY), backend.put(KEY, b"x"), backend.get(KEY)):
            with pytest.raises(BackendPermissionError, match="check the credentials") as info:
                await call
            assert f"={place.container}, key={place.prefix}/{KEY}" in str(info.value)


async def test_no_credentials_anywhere_fails_fast_without_a_cloud_metadata_service(
    moto_s3: S3Target,
    azurite: AzuriteBlobServer,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    for name in ("AZURE_STORAGE_ACCOUNT_KEY", "AZURE_STORAGE_SAS_TOKEN", "AZURE_CLIENT_SECRET"):
        monkeypatch.delenv(name, raising=False)
    backends = [
        ObjectStoreBackend.s3(
            "casstore-test",
            endpoint=moto_s3.endpoint_url,
            metadata_endpoint=DEAD_ENDPOINT,
            max_retries=0,
        ),
        ObjectStoreBackend.azure(
            "casstore-test",
            account="devstoreaccount1",
            endpoint=azurite.endpoint,
            msi_endpoint=DEAD_ENDPOINT,
            max_retries=0,
        ),
    ]
    for backend in backends:
        async with asyncio.timeout(20), backend:
            with pytest.raises(BackendPermissionError, match="no usable credentials") as info:
                await backend.stat(KEY)
        assert "casstore-test" in str(info.value)


async def test_unreachable_endpoint_is_unavailable_naming_it() -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"
    backend = ObjectStoreBackend.s3(
        "casstore-test",
        endpoint=endpoint,
        access_key_id="AKIATEST",
        secret_access_key="SECRETTEST",
        max_retries=0,
    )
    async with backend:
        with pytest.raises(BackendUnavailableError, match=f"endpoint={endpoint}"):
            await backend.get(KEY)


# Configuration and URLs.


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: ObjectStoreBackend.s3("a/b"), "invalid S3 bucket"),
        (lambda: ObjectStoreBackend.azure("Upper"), "invalid Azure container"),
        (lambda: ObjectStoreBackend.s3("bucket", "../up"), "invalid prefix"),
        (lambda: ObjectStoreBackend.s3("bucket", connect_timeout=0), "connect_timeout must be"),
        (lambda: ObjectStoreBackend.s3("bucket", max_retries=-1), "max_retries must be"),
        (lambda: ObjectStoreBackend.s3("bucket", config={"nonsense": 1}), "nonsense"),
        (lambda: ObjectStoreBackend.s3("bucket", touch="teleport"), "touch must be"),  # type: ignore[arg-type]
    ],
)
def test_bad_settings_are_configuration_errors(build: Any, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        build()


def test_store_with_its_own_prefix_is_refused() -> None:
    from obstore.store import S3Store

    with pytest.raises(ConfigurationError, match="pass the prefix to ObjectStoreBackend"):
        ObjectStoreBackend(S3Store("bucket", prefix="elsewhere", region="us-east-1"))


def test_describe_names_service_store_and_endpoint() -> None:
    s3 = ObjectStoreBackend.s3("payloads", "/prod/eu/", region="eu-west-1")
    assert dict(s3.describe()) == {
        "backend": "objectstore-s3",
        "bucket": "payloads",
        "prefix": "prod/eu",
        "region": "eu-west-1",
        "endpoint": "aws",
    }
    azure = ObjectStoreBackend.azure("payloads", account="acct", account_key="a2V5")
    assert dict(azure.describe()) == {
        "backend": "objectstore-azure",
        "container": "payloads",
        "account": "acct",
        "endpoint": "https://acct.blob.core.windows.net",
    }


def test_import_without_obstore_says_how_to_install() -> None:
    code = """
        from casstore.errors import ConfigurationError

        try:
            import casstore.backends.objectstore
        except ConfigurationError as exc:
            assert isinstance(exc, ImportError), type(exc).__mro__
            print(exc)
        """
    result = run_fresh(code, blocked=["obstore"])
    assert result.returncode == 0, result.stderr
    assert "pip install casstore[s3] for S3, casstore[objectstore] for Azure" in result.stdout


def test_url_options_reach_the_store() -> None:
    backend = ObjectStoreBackend.from_url(
        "s3://payloads/prod/eu?client=obstore&endpoint=http://127.0.0.1:9000&region=eu-west-1"
        "&connect_timeout=3&read_timeout=7&request_timeout=90&max_retries=2&retry_timeout=30"
        "&conditional_writes=false&touch=rewrite&virtual_hosted_style=false",
        access_key_id="AKIATEST",
        secret_access_key="SECRETTEST",
    )
    assert (backend.prefix, backend.conditional_writes) == ("prod/eu", False)
    assert dict(backend.describe()) == {
        "backend": "objectstore-s3",
        "bucket": "payloads",
        "prefix": "prod/eu",
        "region": "eu-west-1",
        "endpoint": "http://127.0.0.1:9000",
    }
    store: Any = backend.store
    assert store.config["access_key_id"] == "AKIATEST"
    # obstore reports client options as the strings it parsed them into.
    options = store.client_options
    assert options["allow_http"] == "true"  # an http:// endpoint asked for it
    assert (options["connect_timeout"], options["read_timeout"], options["timeout"]) == (
        "3s",
        "7s",
        "1m 30s",
    )
    assert store.retry_config["max_retries"] == 2
    assert store.retry_config["retry_timeout"].total_seconds() == 30


@pytest.mark.parametrize(
    ("url", "container", "prefix", "account"),
    [
        ("az://payloads/prod", "payloads", "prod", "acct"),
        ("azure://payloads/prod/eu", "payloads", "prod/eu", "acct"),
        ("abfs://payloads", "payloads", "", "acct"),
        ("abfss://payloads@other.dfs.core.windows.net/prod", "payloads", "prod", "other"),
        ("adl://payloads/prod", "payloads", "prod", "acct"),
    ],
)
def test_azure_url_spellings(url: str, container: str, prefix: str, account: str) -> None:
    options: dict[str, Any] = {"account_key": "a2V5"}
    if "@" not in url:
        options["account"] = "acct"
    backend = ObjectStoreBackend.from_url(url, **options)
    facts = backend.describe()
    assert (facts["container"], backend.prefix, facts["account"]) == (container, prefix, account)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("s3://", "needs a bucket or container"),
        ("az://key:secret@payloads", "credentials never go in a backend URL"),
        ("s3://payloads?secret_access_key=x", "never go in a backend URL"),
        ("az://payloads?account_key=x", "never go in a backend URL"),
        ("s3://payloads?client=aioboto3", "client must be obstore"),
        ("s3://payloads?multipart_threshold=5MiB", "applies only to client=aioboto3"),
        ("s3://payloads?client=obstore&max_retries=many", "max_retries must be a number"),
        ("s3://payloads?client=obstore&touch=teleport", "touch must be one of copy, rewrite"),
        ("az://payloads?region=eu-west-1", "unknown option 'region'"),
        ("gs://payloads", "not an S3 or Azure URL"),
    ],
)
def test_bad_urls_are_configuration_errors(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message) as info:
        ObjectStoreBackend.from_url(url)
    assert "secret" not in str(info.value).split("[")[-1].replace("secret_access_key", "")


def test_open_backend_picks_the_client_by_url_and_option() -> None:
    from casstore import open_backend
    from casstore.backends.s3 import S3Backend

    keys = {"access_key_id": "AKIATEST", "secret_access_key": "SECRETTEST"}
    assert isinstance(open_backend("s3://payloads/prod?client=aioboto3"), S3Backend)
    assert isinstance(open_backend("s3://payloads/prod", client="aioboto3"), S3Backend)
    default = open_backend("s3://payloads/prod", **keys)
    via_query = open_backend("s3://payloads/prod?client=obstore", **keys)
    via_keyword = open_backend("s3://payloads/prod", client="obstore", **keys)
    for backend in (default, via_query, via_keyword):
        assert isinstance(backend, ObjectStoreBackend)
        assert backend.describe()["bucket"] == "payloads"
    azure = open_backend("az://payloads/prod?account=acct", account_key="a2V5")
    assert isinstance(azure, ObjectStoreBackend)
    with pytest.raises(ConfigurationError, match="client must be one of obstore, aioboto3"):
        open_backend("s3://payloads?client=boto2")


async def test_open_backend_azure_url_round_trips_on_azurite(
    azurite: AzuriteBlobServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Credentials from the environment, as worker processes get them.
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_KEY", azurite.key)
    from casstore import open_backend

    async with objstore_place("azurite", azurite) as place:
        url = (
            f"az://{place.container}/{place.prefix}?account={azurite.account}"
            f"&endpoint={azurite.endpoint}&msi_endpoint={DEAD_ENDPOINT}"
        )
        async with open_backend(url) as backend:
            assert await backend.put(KEY, b"via url") is True
        assert await place.raw_get(KEY) == b"via url"


# Faults on the wire: a proxy in front of moto answers chosen requests itself.

_CONFLICT = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>ConditionalRequestConflict</Code>'
    b"<Message>A conflicting conditional operation is in progress</Message></Error>"
)


def _create_only(headers: Mapping[str, str]) -> bool:
    return headers.get("if-none-match") == "*"


@pytest.mark.parametrize(
    ("faults", "expected", "error"),
    [
        # AWS answers 409 while another conditional write of the key is in flight:
        # retried, and the retry's answer (created, or 412) is the result.
        ([409], True, None),
        ([409, 409, 409, 409], None, BackendUnavailableError),
        ([503] * 3, None, BackendUnavailableError),
        ([400], None, None),
    ],
)
async def test_answers_injected_on_the_wire_map_to_results_and_errors(
    moto_s3: S3Target, faults: list[int], expected: bool | None, error: type[Exception] | None
) -> None:
    upstream = urlsplit(moto_s3.endpoint_url or "")
    assert upstream.hostname is not None
    assert upstream.port is not None
    body = {409: _CONFLICT, 503: b"<Error><Code>SlowDown</Code></Error>"}
    async with objstore_place("moto", moto_s3) as place:
        with ChaosProxy((upstream.hostname, upstream.port)) as proxy:
            for status in faults:
                answer = Answer(status, body.get(status, b"<Error><Code>Bad</Code></Error>"))
                proxy.schedule(answer, method="PUT", headers_match=_create_only)
            backend = ObjectStoreBackend.s3(
                place.container,
                place.prefix,
                endpoint=proxy.endpoint_url,
                access_key_id="AKIATEST",
                secret_access_key="SECRETTEST",
                metadata_endpoint=DEAD_ENDPOINT,
                max_retries=2,
                retry_timeout=5,
            )
            async with backend:
                if error is None and expected is not None:
                    assert await backend.put(KEY, b"data") is expected
                    assert await place.raw_get(KEY) == b"data"
                elif error is not None:
                    with pytest.raises(error, match=f"bucket={place.container}"):
                        await backend.put(KEY, b"data")
                else:
                    with pytest.raises(BackendError, match=r"Bad \(HTTP 400\)") as info:
                        await backend.put(KEY, b"data")
                    assert type(info.value) is BackendError
            assert proxy.injected == Counter(f"status_{status}" for status in faults)
