"""KeyRing: building, parsing, and never showing key material."""

from __future__ import annotations

import base64
import os
import pickle
from pathlib import Path

import pytest

from casstore import KeyRing
from casstore.errors import ConfigurationError

K1 = bytes(range(32))
K2 = bytes(range(100, 132))
B64_1 = base64.b64encode(K1).decode()
B64_2 = base64.urlsafe_b64encode(K2).decode().rstrip("=")


def test_first_entry_is_active_and_every_key_reads() -> None:
    ring = KeyRing.from_text(f"k2:{B64_2},k1:{B64_1}")
    assert ring.active_id == "k2"
    assert ring.key_ids == ("k2", "k1")
    assert ring.key("k1") == K1
    assert ring.key("k2") == K2
    assert "k1" in ring
    assert "k3" not in ring


def test_file_form_with_comments_and_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text(f"# rotated 2026-11\n\nnew-key.2 : {B64_2}\n  old_key:{B64_1}  \n")
    ring = KeyRing.from_file(path)
    assert ring.key_ids == ("new-key.2", "old_key")
    assert KeyRing.open(f"file:{path}").key_ids == ring.key_ids
    assert KeyRing.open(str(path)).key_ids == ring.key_ids


def test_from_env_and_open_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CASSTORE_KEYRING", f"a:{B64_1}")
    monkeypatch.setenv("OTHER_KEYS", f"b:{B64_2}")
    assert KeyRing.from_env().active_id == "a"
    assert KeyRing.open("env:").active_id == "a"
    assert KeyRing.open("env:OTHER_KEYS").active_id == "b"
    monkeypatch.delenv("OTHER_KEYS")
    with pytest.raises(ConfigurationError, match=r"OTHER_KEYS holds no keyring"):
        KeyRing.open("env:OTHER_KEYS")


def test_from_bytes_and_explicit_active() -> None:
    ring = KeyRing.from_bytes(K1, key_id="prod")
    assert (ring.active_id, ring.key_ids) == ("prod", ("prod",))
    both = KeyRing({"old": K1, "new": K2}, active="new")
    assert both.key_ids == ("new", "old")
    assert both.with_active("old").active_id == "old"


def test_repr_pickle_and_errors_never_show_key_material(tmp_path: Path) -> None:
    ring = KeyRing({"k1": K1, "k2": K2})
    shown = repr(ring) + str(ring)
    assert shown == "KeyRing(active='k1', key_ids=['k1', 'k2'])" * 2
    for secret in (B64_1, B64_2, K1.hex(), K2.hex(), repr(K1), repr(K2)):
        assert secret not in shown
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(ring)
    short = base64.b64encode(K1[:31]).decode()
    for text in (f"k1:{short}", f"k1:{B64_1}!", B64_1, f"{B64_1}:{B64_1}"):
        with pytest.raises(ConfigurationError) as info:
            KeyRing.from_text(text, source="test")
        assert short not in str(info.value)
        assert B64_1 not in str(info.value)
        assert "source=test" in str(info.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "has no keys"),
        ("# only a comment\n", "has no keys"),
        (f"k1:{B64_1},k1:{B64_2}", "'k1' appears twice"),
        (f"k1:{base64.b64encode(bytes(16)).decode()}", r"32 bytes \(256 bits\), got 16.*key_id=k1"),
        ("k1:@@@@", "not valid base64.*entry=1, key_id=k1"),
        (f"k1:{B64_1}\nbare", "not 'key-id:base64-key'.*entry=2"),
        (f"-bad:{B64_1}", "key id must be"),
        (f"{'x' * 33}:{B64_1}", "key id must be"),
        (f"a b:{B64_1}", "key id must be"),
    ],
)
def test_malformed_keyring_text_is_a_clear_error(text: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        KeyRing.from_text(text)


def test_constructor_checks_ids_sizes_and_active(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="at least one key"):
        KeyRing({})
    with pytest.raises(ConfigurationError, match=r"got 31 \[key_id=k\]"):
        KeyRing({"k": K1[:31]})
    with pytest.raises(ConfigurationError, match="must be bytes"):
        KeyRing({"k": B64_1})  # type: ignore[dict-item]
    with pytest.raises(ConfigurationError, match="key id must be"):
        KeyRing({"k/1": K1})
    with pytest.raises(ConfigurationError, match=r"active key 'x' is not in the keyring"):
        KeyRing({"k": K1}, active="x")
    with pytest.raises(ConfigurationError, match=r"cannot read keyring file \[path="):
        KeyRing.from_file(tmp_path / "missing")


# Keyring files: only regular files, of bounded size (a keyring is a few lines).


@pytest.mark.parametrize(
    ("spec", "kind"),
    [("file:/dev/zero", "a character device"), ("/dev/null", "a character device")],
)
def test_a_device_is_refused_as_a_keyring_file_without_reading_it(spec: str, kind: str) -> None:
    with pytest.raises(ConfigurationError, match=rf"must be a regular file, but it is {kind}"):
        KeyRing.open(spec)


def test_a_directory_and_a_fifo_without_writer_are_refused_at_once(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"it is a directory \[path="):
        KeyRing.open(f"file:{tmp_path}")
    fifo = tmp_path / "keyring.fifo"
    os.mkfifo(fifo)
    # Opening a FIFO for reading would wait for a writer: the check must not.
    with pytest.raises(ConfigurationError, match=r"it is a pipe \(FIFO\)"):
        KeyRing.open(f"file:{fifo}")


def test_a_keyring_file_above_64_kib_is_refused_naming_size_and_limit(tmp_path: Path) -> None:
    path = tmp_path / "keyring"
    path.write_text(f"k1:{B64_1}\n" + "#" * (64 * 1024))
    with pytest.raises(ConfigurationError, match=r"is 65\d\d\d bytes, above the 65536-byte limit"):
        KeyRing.from_file(path)


def test_a_symlink_to_a_keyring_file_is_read(tmp_path: Path) -> None:
    # Mounted secrets (Kubernetes) are symlinks to regular files.
    target = tmp_path / "..data" / "keyring"
    target.parent.mkdir()
    target.write_text(f"k1:{B64_1}\n")
    link = tmp_path / "keyring"
    link.symlink_to(target)
    assert KeyRing.open(f"file:{link}").active_id == "k1"
    (tmp_path / "dev").symlink_to("/dev/zero")
    with pytest.raises(ConfigurationError, match="character device"):
        KeyRing.open(f"file:{tmp_path / 'dev'}")
