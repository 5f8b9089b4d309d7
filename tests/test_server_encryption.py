"""``casstore serve --keyring``: a bad keyring is named without showing key material.

Decoding with and without the keyring is in tests/test_server_protocol.py and
tests/test_server_command.py.
"""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from casstore._cli import main

KEY = bytes(range(32))


def test_a_bad_keyring_spec_is_named_without_key_material(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    short = base64.b64encode(KEY[:8]).decode()
    monkeypatch.setenv("SHORT_KEYS", "k1:" + short)
    assert main(["serve", "--store", str(tmp_path), "--keyring", "env:SHORT_KEYS"]) == 2
    err = capsys.readouterr().err
    assert "casstore serve: error:" in err
    assert "32 bytes" in err
    assert "$SHORT_KEYS" in err
    assert short not in err
    assert main(["serve", "--store", str(tmp_path), "--keyring", "env:NO_SUCH_KEYS_VAR"]) == 2
    assert "NO_SUCH_KEYS_VAR holds no keyring" in capsys.readouterr().err
