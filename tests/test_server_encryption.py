"""The codec server on encrypted objects: decoded with the workers' keyring, named without it."""

from __future__ import annotations

import asyncio
import base64
import os
import urllib.request
from pathlib import Path

import pytest
from google.protobuf import json_format
from temporalio.api.common.v1 import Payloads
from temporalio.converter import DataConverter

from casstore import CasStorageDriver, KeyRing
from casstore._cli import main
from casstore.backends import LocalBackend, MemoryBackend
from testrig import CodecServerProcess
from tests.test_server_protocol import ORDER, ClientFactory, body, post, stored, values_of
from tests.test_server_protocol import make_client as make_client

KEY = bytes(range(32))
KEYRING_TEXT = "k1:" + base64.b64encode(KEY).decode()
_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


async def test_decode_uses_the_keyring_and_names_a_missing_key(
    make_client: ClientFactory,
) -> None:
    backend = MemoryBackend()
    keyring = KeyRing.from_text(KEYRING_TEXT)
    history = await stored(CasStorageDriver(backend, keyring=keyring), ORDER)
    with_key = make_client(CasStorageDriver(backend, keyring=keyring))
    assert values_of(await post(with_key, "/decode", body(history))) == [ORDER]
    without = make_client(CasStorageDriver(backend))
    response = await post(without, "/download", body(history))
    assert response.status_code >= 400
    assert "key 'k1'" in response.json()["message"]
    assert response.json()["key"].startswith("v1/default/order-42/")


def test_a_bad_keyring_spec_is_named_without_key_material(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHORT_KEYS", "k1:" + base64.b64encode(KEY[:8]).decode())
    assert main(["serve", "--store", str(tmp_path), "--keyring", "env:SHORT_KEYS"]) == 2
    err = capsys.readouterr().err
    assert "casstore serve: error:" in err
    assert "32 bytes" in err
    assert "$SHORT_KEYS" in err
    assert base64.b64encode(KEY[:8]).decode() not in err
    assert main(["serve", "--store", str(tmp_path), "--keyring", "env:NO_SUCH_KEYS_VAR"]) == 2
    assert "NO_SUCH_KEYS_VAR holds no keyring" in capsys.readouterr().err


def test_casstore_serve_with_keyring_decodes_encrypted_references(tmp_path: Path) -> None:
    keyring = KeyRing.from_text(KEYRING_TEXT)
    history = asyncio.run(stored(CasStorageDriver(LocalBackend(tmp_path), keyring=keyring), ORDER))
    server = CodecServerProcess(
        "--store", str(tmp_path), "--port", "0", "--namespace", "default",
        "--keyring", "env:CODEC_KEYS",
        env={**os.environ, "CODEC_KEYS": KEYRING_TEXT},
    )  # fmt: skip
    try:
        request = urllib.request.Request(
            server.url + "/decode",
            data=body(history).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with _HTTP.open(request, timeout=30) as response:
            decoded = json_format.Parse(response.read(), Payloads()).payloads
        assert DataConverter.default.payload_converter.from_payloads(decoded) == [ORDER]
    finally:
        code, out = server.stop()
    assert code == 0, out
    assert KEYRING_TEXT.split(":")[1] not in out
