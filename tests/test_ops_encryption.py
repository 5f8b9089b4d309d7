"""casstore verify, stats and cat on a store holding plain and encrypted objects."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from casstore import CasStorageDriver, KeyRing
from casstore.backends import LocalBackend
from tests.cli_helpers import assert_one_line_error, cli
from tests.helpers import big_json, in_workflow, make_converter, reference_of

K1 = bytes(range(32))
KEYRING_TEXT = f"k1:{base64.b64encode(K1).decode()}\n"


async def mixed_store(root: Path) -> tuple[LocalBackend, list[Any], list[Any]]:
    """Two plain and two encrypted objects; returns the backend and the references."""
    backend = LocalBackend(root, fsync=False)
    plain = await in_workflow(make_converter(CasStorageDriver(backend))).encode(
        ["plain", big_json(5_000)]
    )
    ring = KeyRing.from_bytes(K1, key_id="k1")
    encrypted = await in_workflow(make_converter(CasStorageDriver(backend, keyring=ring))).encode(
        ["secret", big_json(5_000, seed=1)]
    )
    return backend, list(plain), list(encrypted)


async def encrypted_keys(backend: LocalBackend) -> list[str]:
    return sorted([key async for key, _ in backend.scan() if (await backend.get(key))[3] == 2])


async def test_verify_without_the_key_skips_encrypted_objects_and_never_calls_them_bad(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CASSTORE_KEYRING", raising=False)
    await mixed_store(tmp_path / "store")
    result = await cli(capsys, "verify", str(tmp_path / "store"), "--json")
    assert result.code == 0, result
    report = result.json()
    assert (report["ok"], report["good"], report["bad"]) == (True, 2, [])
    assert report["not_checked_no_key"] == {"k1": 2}
    text = await cli(capsys, "verify", str(tmp_path / "store"))
    assert "2 encrypted objects not checked: key 'k1' is not in the keyring" in text.out


async def test_verify_with_the_keyring_checks_encrypted_objects_and_finds_tampering(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    backend, _, _ = await mixed_store(tmp_path / "store")
    keyring = tmp_path / "keyring"
    keyring.write_text(KEYRING_TEXT)
    url = str(tmp_path / "store")
    result = await cli(capsys, "verify", url, "--keyring", f"file:{keyring}", "--json")
    assert result.code == 0, result
    report = result.json()
    assert (report["good"], report["not_checked_no_key"]) == (4, {})
    assert sum(n for codec, n in report["codecs"].items() if codec.endswith("encrypted")) == 2

    first, second = await encrypted_keys(backend)
    a, b = backend.path_for(first), backend.path_for(second)
    a_bytes, b_bytes = a.read_bytes(), b.read_bytes()
    a.write_bytes(b_bytes)  # swapped contents
    b.write_bytes(b_bytes[:-1] + bytes([b_bytes[-1] ^ 1]))  # flipped tag byte
    result = await cli(capsys, "verify", url, "--keyring", f"file:{keyring}", "--json")
    assert result.code == 1, result
    bad = {entry["key"]: entry["reason"] for entry in result.json()["bad"]}
    assert set(bad) == {first, second}
    assert all("failed authentication" in reason for reason in bad.values()), bad
    del a_bytes


async def test_stats_deep_counts_encrypted_objects_by_codec(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    await mixed_store(tmp_path / "store")
    result = await cli(capsys, "stats", str(tmp_path / "store"), "--deep", "--json")
    assert result.code == 0, result
    codecs = result.json()["codecs"]
    assert sum(t["objects"] for name, t in codecs.items() if name.endswith("encrypted")) == 2
    assert sum(t["objects"] for t in codecs.values()) == 4


async def test_cat_reads_encrypted_references_with_the_keyring(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CASSTORE_KEYRING", raising=False)
    _, plain, encrypted = await mixed_store(tmp_path / "store")
    url = str(tmp_path / "store")
    claim = reference_of(encrypted[0]).claim_data["c"]
    assert claim.startswith("2,")
    without = await cli(capsys, "cat", claim, "--store", url)
    assert without.code == 1, without
    assert "key 'k1'" in without.err
    monkeypatch.setenv("MY_KEYS", KEYRING_TEXT)
    with_env = await cli(capsys, "cat", claim, "--store", url, "--keyring", "env:MY_KEYS")
    assert with_env.code == 0, with_env
    assert with_env.out.strip() == '"secret"'
    monkeypatch.setenv("CASSTORE_KEYRING", KEYRING_TEXT)  # the default when --keyring is absent
    plain_claim = reference_of(plain[0]).claim_data["c"]
    for form in (claim, plain_claim):
        result = await cli(capsys, "cat", form, "--store", url)
        assert result.code == 0, result


async def test_a_bad_keyring_is_one_line_without_key_material(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    await mixed_store(tmp_path / "store")
    short = base64.b64encode(K1[:16]).decode()
    monkeypatch.setenv("BAD_KEYS", f"k1:{short}")
    result = await cli(capsys, "verify", str(tmp_path / "store"), "--keyring", "env:BAD_KEYS")
    assert_one_line_error(result, "bad keyring", "32 bytes", "$BAD_KEYS")
    assert short not in result.err
    missing = await cli(capsys, "verify", str(tmp_path / "store"), "--keyring", "file:/nope")
    assert_one_line_error(missing, "cannot read keyring file")
