"""``casstore serve``: options, error messages, a real process with a token and a codec."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from google.protobuf import json_format
from temporalio.api.common.v1 import Payloads
from temporalio.converter import DataConverter

from casstore import CasStorageDriver, KeyRing
from casstore._cli import main
from casstore.backends import LocalBackend
from testrig import CodecServerProcess
from tests.support.codec import EncryptionCodec
from tests.support.sdk import codec_converter

ORDER = {"customer": "ada", "items": ["sku-1"]}
REPO = Path(__file__).resolve().parent.parent
_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def serve_error(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert main(["serve", *args]) == 2
    return capsys.readouterr().err


@pytest.mark.parametrize(
    ("codec", "message"),
    [
        ("json", "--codec takes MODULE:ATTR"),
        ("no_such_module_here:Codec", "cannot import module 'no_such_module_here'"),
        ("tests.support.codec:Nope", "'tests.support.codec' has no attribute 'Nope'"),
        ("tests.support.codec:KEY", "is a bytes, not a temporalio PayloadCodec"),
    ],
)
def test_a_bad_codec_is_named(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, codec: str, message: str
) -> None:
    err = serve_error(capsys, "--store", str(tmp_path), "--codec", codec)
    assert err.startswith("casstore serve: error: ")
    assert message in err


def test_a_missing_token_variable_is_named(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CASSTORE_TEST_NO_TOKEN", raising=False)
    err = serve_error(
        capsys, "--store", str(tmp_path), "--auth-token-env", "CASSTORE_TEST_NO_TOKEN"
    )
    assert "environment variable CASSTORE_TEST_NO_TOKEN is not set or empty" in err


def test_a_bad_keyring_is_named(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    err = serve_error(capsys, "--store", str(tmp_path), "--keyring", f"file:{tmp_path}/none")
    assert "bad keyring: cannot read keyring file" in err


def test_a_bad_store_url_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    err = serve_error(capsys, "--store", "ftp://example/x")
    assert "unknown backend URL scheme 'ftp'" in err


def test_a_port_in_use_is_reported(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        err = serve_error(capsys, "--store", str(tmp_path), "--port", str(port))
    assert f"could not listen on 127.0.0.1:{port}" in err


def test_without_the_server_extra_the_install_hint_is_given(tmp_path: Path) -> None:
    # The CLI and the library import no web stack; then hide starlette as a
    # machine without the extra would (imports of it fail) and ask for the server.
    script = (
        "import sys, casstore, casstore._cli\n"
        "print(sorted({'starlette', 'uvicorn'} & set(sys.modules)))\n"
        "sys.modules['starlette'] = None\n"
        f"code = casstore._cli.main(['serve', '--store', {str(tmp_path)!r}])\n"
        "import casstore.server\n"
        "try:\n"
        "    casstore.server.create_app\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__, exc)\n"
        "sys.exit(code)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, check=False
    )
    assert done.returncode == 2, done.stderr
    assert "pip install 'casstore[server]'" in done.stderr
    imported, hint = done.stdout.splitlines()
    assert imported == "[]"
    assert hint.startswith("ConfigurationError ")
    assert "pip install 'casstore[server]'" in hint


@pytest.mark.integration
def test_a_real_server_with_a_token_a_keyring_and_a_codec(tmp_path: Path) -> None:
    keyring_text = "k2026a:" + base64.b64encode(bytes(range(32))).decode()
    writer = CasStorageDriver(LocalBackend(tmp_path), keyring=KeyRing.from_text(keyring_text))
    history = asyncio.run(codec_converter(writer, codec=EncryptionCodec()).encode([ORDER]))
    body = json_format.MessageToJson(Payloads(payloads=history)).encode()
    server = CodecServerProcess(
        "--store", str(tmp_path), "--port", "0", "--namespace", "default",
        "--codec", "tests.support.codec:EncryptionCodec", "--auth-token-env", "CODEC_TOKEN",
        "--keyring", "env:CASSTORE_TEST_KEYRING",
        env={**os.environ, "CODEC_TOKEN": "s3cret", "CASSTORE_TEST_KEYRING": keyring_text},
        cwd=REPO,
    )  # fmt: skip
    try:

        def post(**headers: str) -> tuple[int, bytes]:
            request = urllib.request.Request(
                server.url + "/decode",
                data=body,
                headers={"Content-Type": "application/json", **headers},
                method="POST",
            )
            try:
                with _HTTP.open(request, timeout=30) as response:
                    return response.status, response.read()
            except urllib.error.HTTPError as error:
                return error.code, error.read()

        status, answer = post()
        assert status == 401
        assert "authorization required for namespace 'default'" in json.loads(answer)["message"]
        status, answer = post(Authorization="Bearer s3cret")
        assert status == 200
        decoded = json_format.Parse(answer, Payloads()).payloads
        assert DataConverter.default.payload_converter.from_payloads(decoded) == [ORDER]
    finally:
        code, out = server.stop(signal.SIGINT)  # Ctrl-C (the clients' test uses SIGTERM)
    assert code == 0, out
    assert "casstore serve: POST /decode -> 401: authorization required" in out
    assert "casstore serve: stopped (SIGINT)" in out
    assert "Traceback" not in out


def test_the_server_package_exports_its_public_names_only() -> None:
    import casstore.server

    assert sorted(casstore.server.__all__) == [
        "Authorizer",
        "ClaimNamespace",
        "bearer_token_authorizer",
        "create_app",
    ]
    for name in casstore.server.__all__:
        assert getattr(casstore.server, name) is not None
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        casstore.server.nope  # noqa: B018


def test_the_server_extra_is_declared() -> None:
    from importlib.metadata import metadata

    meta = metadata("casstore")
    assert "server" in (meta.get_all("Provides-Extra") or [])
    required = meta.get_all("Requires-Dist") or []
    assert any(r.startswith("starlette") and "extra == 'server'" in r for r in required)
    assert any(r.startswith("uvicorn") and "extra == 'server'" in r for r in required)


def test_cors_origins_are_given_in_one_or_several_flags() -> None:
    from casstore._cli import _parser

    args = _parser().parse_args(
        ["serve", "--store", "x", "--cors-origin", "http://a:1", "http://b:2", "--cors-origin", "*"]
    )
    assert args.cors_origin == ["http://a:1", "http://b:2", "*"]
    assert args.port == 8081
    assert args.host == "127.0.0.1"


@pytest.mark.parametrize(
    ("host", "authenticated", "warned"),
    [
        ("127.0.0.1", False, False),
        ("::1", False, False),
        ("localhost", False, False),
        ("0.0.0.0", False, True),
        ("192.0.2.10", False, True),
        ("codec.internal", False, True),
        ("0.0.0.0", True, False),
    ],
)
def test_serving_beyond_loopback_without_a_token_is_warned_about(
    host: str, authenticated: bool, warned: bool
) -> None:
    from casstore.server._command import exposure_warning

    warning = exposure_warning(host, authenticated=authenticated)
    assert (warning is not None) == warned
    if warning:
        assert f"listening on {host} without --auth-token-env" in warning
