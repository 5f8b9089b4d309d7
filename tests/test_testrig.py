"""Tests for the real-process launchers in ``testrig`` (the test and benchmark servers).

Plain sync tests (``asyncio.run`` where a coroutine is needed) so that they do
not depend on the pytest-asyncio configuration.
"""

from __future__ import annotations

import asyncio
import http.client
import os
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from botocore.exceptions import ClientError  # type: ignore[import-untyped, unused-ignore]

from testrig import (
    MotoS3Server,
    RcloneS3Server,
    S3Server,
    TemporalDevServer,
    find_rclone,
    find_temporal_cli,
    free_port,
)
from testrig.chaos import Answer, ChaosProxy
from tests.support.servers import server_fixture

REPO_ROOT = Path(__file__).resolve().parents[1]


def _pid_alive(pid: int) -> bool:
    """Return whether ``pid`` exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return True
    return state != "Z"


def _wait_dead(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _pid_alive(pid):
            return True
        time.sleep(0.05)
    return False


def _port_free(port: int) -> bool:
    """Return whether nothing listens on the port and a server could bind it."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Like every server, ignore TIME_WAIT leftovers of closed connections.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _error(exc: ClientError) -> tuple[str, int]:
    """Return ``(error code, HTTP status)`` of a botocore ``ClientError``."""
    error = exc.response.get("Error", {})
    meta = exc.response.get("ResponseMetadata", {})
    return str(error.get("Code")), int(meta.get("HTTPStatusCode", 0))


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


def test_free_port_is_bindable() -> None:
    port = free_port()
    assert 0 < port < 65536
    assert _port_free(port)


def test_binaries_are_found() -> None:
    for path in (find_temporal_cli(), find_rclone()):
        assert Path(path).is_file()
        assert os.access(path, os.X_OK)


# ---------------------------------------------------------------------------
# Temporal
# ---------------------------------------------------------------------------


async def _check_temporal(address: str, namespace: str) -> None:
    from temporalio.client import Client

    client = await Client.connect(address, namespace=namespace)
    assert await client.service_client.check_health()
    names = [
        ns.namespace_info.name
        async for ns in _list_namespaces(client)  # one page is plenty here
    ]
    assert "default" in names
    assert namespace in names


async def _list_namespaces(client: Any) -> Any:
    from temporalio.api.workflowservice.v1 import ListNamespacesRequest

    response = await client.workflow_service.list_namespaces(ListNamespacesRequest())
    for ns in response.namespaces:
        yield ns


@pytest.mark.integration  # starts a server
def test_temporal_dev_server_lifecycle() -> None:
    server = TemporalDevServer()
    server.start()
    try:
        pid = server.pid
        assert pid is not None
        assert server.is_running()
        assert server.address == f"127.0.0.1:{server.port}"
        assert server.startup_seconds is not None
        print(f"temporal dev server ready in {server.startup_seconds:.2f}s")
        asyncio.run(_check_temporal(server.address, "default"))
        port = server.port
    finally:
        server.stop()
    assert _wait_dead(pid)
    assert _port_free(port)
    assert not server.is_running()
    server.stop()  # idempotent


@pytest.mark.integration  # starts a server
def test_temporal_two_servers_side_by_side_with_extra_namespace(tmp_path: Path) -> None:
    db = tmp_path / "temporal.sqlite"
    log = tmp_path / "temporal.log"
    with (
        TemporalDevServer(namespace="casstore-test", db_filename=str(db), log_path=str(log)) as a,
        TemporalDevServer() as b,
    ):
        assert a.port != b.port
        asyncio.run(_check_temporal(a.address, "casstore-test"))
        asyncio.run(_check_temporal(b.address, "default"))
        assert db.exists()
    assert log.exists()  # caller-provided logs are kept


@pytest.mark.integration  # starts a server
def test_temporal_startup_failure_reports_log(tmp_path: Path) -> None:
    from testrig import ServerStartError

    # An unparsable flag value makes the CLI exit immediately.
    server = TemporalDevServer(extra_args=["--sqlite-pragma", "bogus"], startup_timeout=20)
    with pytest.raises(ServerStartError, match="exited with code"):
        server.start()
    assert not server.is_running()


# ---------------------------------------------------------------------------
# S3 servers
# ---------------------------------------------------------------------------


@server_fixture(scope="function")
def moto_server() -> Iterator[MotoS3Server]:
    with MotoS3Server() as server:
        yield server
        server.reset()


@server_fixture(scope="function")
def rclone_server() -> Iterator[RcloneS3Server]:
    with RcloneS3Server() as server:
        yield server


def _roundtrip(server: S3Server) -> Any:
    assert server.endpoint_url.startswith("http://127.0.0.1:")
    assert server.region == "us-east-1"
    server.create_bucket("casstore-test")
    s3 = server.boto3_client()
    assert "casstore-test" in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    key = "sha256/ab/abcdef"
    s3.put_object(Bucket="casstore-test", Key=key, Body=b"payload-1")
    assert s3.get_object(Bucket="casstore-test", Key=key)["Body"].read() == b"payload-1"
    head = s3.head_object(Bucket="casstore-test", Key=key)
    assert head["ContentLength"] == len(b"payload-1")
    listed = s3.list_objects_v2(Bucket="casstore-test", Prefix="sha256/")
    assert [o["Key"] for o in listed["Contents"]] == [key]
    with pytest.raises(ClientError) as missing:
        s3.head_object(Bucket="casstore-test", Key="sha256/nope")
    assert _error(missing.value)[1] == 404
    return s3


@pytest.mark.integration  # starts a server
def test_moto_roundtrip_and_conditional_put(moto_server: MotoS3Server) -> None:
    print(f"moto ready in {moto_server.startup_seconds:.2f}s")
    s3 = _roundtrip(moto_server)
    bucket, key = "casstore-test", "cond/object"
    s3.put_object(Bucket=bucket, Key=key, Body=b"first", IfNoneMatch="*")
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key=key, Body=b"second", IfNoneMatch="*")
    assert _error(exc.value) == ("PreconditionFailed", 412)
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"first"


@pytest.mark.integration  # starts a server
def test_moto_reset_wipes_state(moto_server: MotoS3Server) -> None:
    moto_server.create_bucket("to-be-wiped")
    s3 = moto_server.boto3_client()
    assert s3.list_buckets()["Buckets"]
    moto_server.reset()
    assert s3.list_buckets()["Buckets"] == []


@pytest.mark.integration  # starts a server
def test_rclone_roundtrip_and_conditional_put(rclone_server: RcloneS3Server) -> None:
    print(f"rclone ready in {rclone_server.startup_seconds:.2f}s")
    s3 = _roundtrip(rclone_server)
    # Buckets are top-level directories, objects are files.
    assert (rclone_server.root / "casstore-test" / "sha256" / "ab" / "abcdef").is_file()

    bucket, key = "casstore-test", "cond/object"
    s3.put_object(Bucket=bucket, Key=key, Body=b"first", IfNoneMatch="*")
    # Observed with rclone v1.75.2: If-None-Match is ignored on PUT, the
    # second conditional put succeeds and overwrites. Callers must not rely
    # on conditional writes against rclone.
    second = s3.put_object(Bucket=bucket, Key=key, Body=b"second", IfNoneMatch="*")
    assert second["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"second"


@pytest.mark.integration  # starts a server
def test_rclone_rejects_wrong_credentials(rclone_server: RcloneS3Server) -> None:
    rclone_server.create_bucket("locked")
    import boto3  # type: ignore[import-untyped, unused-ignore]
    from botocore.config import Config  # type: ignore[import-untyped, unused-ignore]

    config = Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1})
    for access_key, secret_key, expected in [
        (rclone_server.access_key, "WRONG-SECRET", "SignatureDoesNotMatch"),
        ("AKIAWRONG", rclone_server.secret_key, "InvalidAccessKeyId"),
    ]:
        s3 = boto3.client(
            "s3",
            endpoint_url=rclone_server.endpoint_url,
            aws_access_key_id=access_key,
            aws_secret_access_key=secret_key,
            region_name="us-east-1",
            config=config,
        )
        with pytest.raises(ClientError) as exc:
            s3.put_object(Bucket="locked", Key="k", Body=b"x")
        assert _error(exc.value) == (expected, 403)
    assert not (rclone_server.root / "locked" / "k").exists()


@pytest.mark.integration  # starts a server
def test_rclone_given_root_is_kept_and_stop_is_idempotent(tmp_path: Path) -> None:
    root = tmp_path / "s3root"
    (root / "prebucket").mkdir(parents=True)
    (root / "prebucket" / "obj").write_bytes(b"on-disk")
    server = RcloneS3Server(root=str(root))
    with server:
        pid = server.pid
        assert pid is not None
        s3 = server.boto3_client()
        # A directory created before start is a bucket; files are objects.
        assert s3.get_object(Bucket="prebucket", Key="obj")["Body"].read() == b"on-disk"
        port = int(server.endpoint_url.rsplit(":", 1)[1])
    assert _wait_dead(pid)
    assert _port_free(port)
    server.stop()
    assert (root / "prebucket" / "obj").read_bytes() == b"on-disk"


@pytest.mark.integration  # starts a server
def test_rclone_flush_dir_cache_shows_out_of_band_changes(
    rclone_server: RcloneS3Server,
) -> None:
    rclone_server.create_bucket("oob")
    s3 = rclone_server.boto3_client()
    s3.put_object(Bucket="oob", Key="d/old", Body=b"1")
    assert [o["Key"] for o in s3.list_objects_v2(Bucket="oob")["Contents"]] == ["d/old"]
    (rclone_server.root / "oob" / "d" / "new").write_bytes(b"2")
    (rclone_server.root / "oob" / "d" / "old").unlink()
    # rclone's directory cache hides changes made behind its back ...
    with pytest.raises(ClientError):
        s3.head_object(Bucket="oob", Key="d/new")
    # ... until it is flushed.
    rclone_server.flush_dir_cache()
    assert s3.get_object(Bucket="oob", Key="d/new")["Body"].read() == b"2"
    assert [o["Key"] for o in s3.list_objects_v2(Bucket="oob")["Contents"]] == ["d/new"]


@pytest.mark.integration  # starts a server
def test_rclone_temp_root_is_removed() -> None:
    with RcloneS3Server() as server:
        root = server.root
        server.create_bucket("tmpbucket")
        assert (root / "tmpbucket").is_dir()
    assert not root.exists()


# ---------------------------------------------------------------------------
# ChaosProxy canned answers (its wire faults: tests/test_s3_faults.py)
# ---------------------------------------------------------------------------


@pytest.mark.integration  # starts a server
def test_chaos_proxy_gives_scheduled_answers_to_matching_requests(
    moto_server: MotoS3Server,
) -> None:
    upstream = urlsplit(moto_server.endpoint_url)
    assert upstream.port is not None
    conflict = Answer(409, b"<Error><Code>Conflict</Code></Error>", content_type="text/xml")
    with ChaosProxy(("127.0.0.1", upstream.port)) as proxy:
        proxy.schedule(
            conflict, count=2, method="PUT", headers_match=lambda h: h.get("if-none-match") == "*"
        )
        proxy.schedule(Answer(503, b"<Error/>"), method="HEAD", target_contains="/b/")
        # One kept-alive connection: a canned answer leaves it usable.
        connection = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)

        def ask(
            method: str, path: str, headers: dict[str, str] | None = None
        ) -> tuple[int, str | None, bytes]:
            body = b"x" if method == "PUT" else None
            connection.request(method, path, body=body, headers=headers or {})
            answer = connection.getresponse()
            return answer.status, answer.getheader("Content-Type"), answer.read()

        # moto answers 404 (no such bucket) to whatever the proxy forwards.
        assert ask("PUT", "/nobucket/k")[0] == 404
        assert ask("PUT", "/nobucket/k", {"If-None-Match": "*"}) == (409, "text/xml", conflict.body)
        assert ask("PUT", "/nobucket/k", {"if-none-match": "*"}) == (409, "text/xml", conflict.body)
        assert ask("PUT", "/nobucket/k", {"If-None-Match": "*"})[0] == 404
        assert ask("HEAD", "/b/k") == (503, "application/xml", b"")
        assert ask("HEAD", "/b/k")[0] == 404
        connection.close()
    assert proxy.injected == Counter({"status_409": 2, "status_503": 1})
    assert proxy.requests == 6
    with pytest.raises(ValueError, match="200 to 599"):
        Answer(100)


# ---------------------------------------------------------------------------
# leak safety
# ---------------------------------------------------------------------------

_CHILD = textwrap.dedent(
    """
    import os, signal, sys, tempfile
    from testrig import RcloneS3Server, TemporalDevServer
    tempfile.tempdir = sys.argv[2]  # a SIGKILLed caller cannot clean up
    server = {cls}()
    server.start()
    print(server.pid, flush=True)
    if sys.argv[1] == "raise":
        raise SystemExit("caller crashed without calling stop()")
    os.kill(os.getpid(), signal.SIGKILL)  # no atexit, no finally
    """
)


@pytest.mark.parametrize(
    ("cls", "how"),
    [
        ("RcloneS3Server", "raise"),
        ("RcloneS3Server", "sigkill"),
        ("TemporalDevServer", "raise"),
        ("TemporalDevServer", "sigkill"),
    ],
)
@pytest.mark.integration  # starts a server
def test_server_does_not_outlive_crashed_caller(cls: str, how: str, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", _CHILD.format(cls=cls), how, str(tmp_path)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert result.returncode != 0
    pid = int(result.stdout.split()[0])
    assert _wait_dead(pid, timeout=15), f"{cls} pid {pid} leaked after caller {how}"
