"""Operator commands on encrypted objects: what tests/test_ops.py does not cover.

Swapped encrypted objects, a bare version 2 claim given to ``cat``, and keyring
errors that never show key material.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from casstore import CasStorageDriver, KeyRing
from casstore.backends import LocalBackend
from tests.support.cli import assert_one_line_error, cli
from tests.support.sdk import big_json, in_workflow, make_converter, reference_of

K1 = bytes(range(32))
KEYRING_TEXT = f"k1:{base64.b64encode(K1).decode()}\n"


async def encrypted_store(root: Path) -> tuple[LocalBackend, list[Any]]:
    backend = LocalBackend(root, fsync=False)
    ring = KeyRing.from_bytes(K1, key_id="k1")
    references = await in_workflow(make_converter(CasStorageDriver(backend, keyring=ring))).encode(
        ["secret", big_json(5_000, seed=1)]
    )
    return backend, list(references)


async def test_verify_finds_two_encrypted_objects_with_swapped_contents(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    backend, _ = await encrypted_store(tmp_path / "store")
    (tmp_path / "keyring").write_text(KEYRING_TEXT)
    first, second = sorted([key async for key, _ in backend.scan()])
    a, b = backend.path_for(first), backend.path_for(second)
    a_bytes, b_bytes = a.read_bytes(), b.read_bytes()
    a.write_bytes(b_bytes)
    b.write_bytes(a_bytes)
    url, spec = str(tmp_path / "store"), f"file:{tmp_path / 'keyring'}"
    result = await cli(capsys, "verify", url, "--keyring", spec, "--json")
    assert result.code == 1, result
    bad = {entry["key"]: entry["reason"] for entry in result.json()["bad"]}
    assert set(bad) == {first, second}
    assert all("failed authentication" in reason for reason in bad.values()), bad


async def test_cat_takes_a_bare_version_2_claim(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, references = await encrypted_store(tmp_path / "store")
    claim = reference_of(references[0]).claim_data["c"]
    assert claim.startswith("2,")
    assert claim.endswith(",k1")
    monkeypatch.setenv("MY_KEYS", KEYRING_TEXT)
    url = str(tmp_path / "store")
    for argv in (["cat", claim], ["cat"]):
        stdin = claim + "\n" if argv == ["cat"] else None
        result = await cli(capsys, *argv, "--store", url, "--keyring", "env:MY_KEYS", stdin=stdin)
        assert result.code == 0, result
        assert result.out.strip() == '"secret"'


async def test_a_bad_keyring_is_one_line_without_key_material(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    await encrypted_store(tmp_path / "store")
    short = base64.b64encode(K1[:16]).decode()
    monkeypatch.setenv("BAD_KEYS", f"k1:{short}")
    result = await cli(capsys, "verify", str(tmp_path / "store"), "--keyring", "env:BAD_KEYS")
    assert_one_line_error(result, "bad keyring", "32 bytes", "$BAD_KEYS")
    assert short not in result.err
    swapped = f"{base64.b64encode(K1).decode()}:k1"  # key and id the wrong way round
    monkeypatch.setenv("BAD_KEYS", swapped)
    result = await cli(capsys, "verify", str(tmp_path / "store"), "--keyring", "env:BAD_KEYS")
    assert_one_line_error(result, "bad keyring", "key id must be")
    assert base64.b64encode(K1).decode() not in result.err
    missing = await cli(capsys, "verify", str(tmp_path / "store"), "--keyring", "file:/nope")
    assert_one_line_error(missing, "cannot read keyring file")
