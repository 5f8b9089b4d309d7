"""The operator commands' arguments and input, on local stores: what a user types wrong.

Each command runs as a user runs it, through the CLI entry point; the ones
that read a real standard input (a pipe from ``/dev/zero``) run as a process.
"""

from __future__ import annotations

import importlib
import json
import os
import stat
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.converter import StorageDriverStoreContext, StorageDriverWorkflowInfo

from casstore import CasStorageDriver
from casstore._cli import main
from casstore._format.claims import parse_claim_data
from casstore._format.manifest import MANIFEST_KEY, LifecyclePolicy
from casstore._freshness import ensure_policy
from casstore._url import open_backend
from casstore.backends import LocalBackend
from casstore.errors import ConfigurationError
from tests.support.cli import assert_one_line_error, cli

REPO = Path(__file__).resolve().parent.parent
OPS = REPO / "casstore" / "ops"


async def a_store(root: Path) -> str:
    """A local store a worker wrote one payload to; returns its folder."""
    backend = LocalBackend(root, fsync=False)
    await ensure_policy(backend, LifecyclePolicy())  # as a worker's plugin does
    target = StorageDriverWorkflowInfo(namespace="default", id="wf-1", run_id=None, type=None)
    payload = Payload(metadata={"encoding": b"json/plain"}, data=b'{"n": 1}')
    await CasStorageDriver(backend).store(StorageDriverStoreContext(target=target), [payload])
    return str(root)


def test_command_plumbing_lives_in_one_module_per_job() -> None:
    jobs = {
        "_run": ("run_command", "CommandError", "EXIT_OK", "EXIT_PROBLEMS", "EXIT_USAGE"),
        "_args": ("add_store_argument", "resolve_store", "open_keyring", "positive_int"),
        "_durations": ("parse_duration",),
        "_store": ("open_store", "require_local_store", "require_casstore_store"),
        "_progress": ("Progress",),
        "_output": ("write_json", "format_bytes"),
    }
    for module, names in jobs.items():
        loaded = importlib.import_module(f"casstore.ops.{module}")
        for name in names:
            assert hasattr(loaded, name), (module, name)
    assert not (OPS / "_common.py").exists()  # no catch-all module left behind
    for path in OPS.glob("*.py"):
        assert len(path.read_text().splitlines()) <= 400, path.name


# The store argument: --store URL everywhere, the first positional as an alias.


async def test_every_command_takes_the_store_either_way(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = await a_store(tmp_path / "store")
    for argv in (["verify", "--store", root], ["verify", root]):
        result = await cli(capsys, *argv)
        assert result.code == 0, result
        assert "1 good, 0 bad" in result.out
    for argv in (["stats", "--store", root, "--json"], ["stats", root, "--json"]):
        result = await cli(capsys, *argv)
        assert result.code == 0, result
        assert result.json()["objects"] == 1
    gc = ["--namespace", "default", "--older-than", "60d"]
    for argv in (["gc", "--store", root, *gc], ["gc", root, *gc]):
        result = await cli(capsys, *argv)
        assert result.code == 0, result

    claim = '"2,default/wf-1,00,1"'  # a claim of an object not in the store
    for argv in (
        ["cat", "--store", root, claim],
        ["cat", root, claim],
        ["cat", claim, "--store", root],
    ):
        result = await cli(capsys, *argv)
        assert result.code == 1, result  # read the store, found no such object
        assert "Traceback" not in result.err


async def test_the_store_given_twice_or_not_at_all_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = await a_store(tmp_path / "store")
    for command in ("stats", "verify", "serve"):
        twice = await cli(capsys, command, root, "--store", root)
        assert twice.code == 2, twice
        assert "given twice" in twice.err
        assert "--store URL" in twice.err
        neither = await cli(capsys, command)
        assert neither.code == 2, neither
        assert "no store given" in neither.err
        assert "--store URL" in neither.err
    neither = await cli(capsys, "gc", "--namespace", "default", "--older-than", "60d")
    assert "no store given" in neither.err
    for argv in (["cat", "{}"], ["cat"]):
        neither = await cli(capsys, *argv)
        assert neither.code == 2, neither
        assert "no store given: pass --store URL (or STORE_URL before REF)" in neither.err
    twice = await cli(capsys, "cat", root, "{}", "--store", root)
    assert twice.code == 2
    assert "given twice" in twice.err


# Refusing what is not a store.


async def test_verify_refuses_a_folder_that_holds_no_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty"
    (empty / "photos").mkdir(parents=True)
    (empty / "photos" / "cat.jpg").write_bytes(b"\xff\xd8")
    result = await cli(capsys, "verify", str(empty))
    assert_one_line_error(result, "not a casstore store", MANIFEST_KEY, "v1/")
    gc = await cli(capsys, "gc", str(empty), "--namespace", "default", "--older-than", "60d")
    assert_one_line_error(gc, "not a casstore store")

    # An empty store a writer set up (it has a manifest) is a store with nothing in it.
    await ensure_policy(LocalBackend(empty), LifecyclePolicy())
    result = await cli(capsys, "verify", str(empty))
    assert result.code == 0, result
    assert "checked 0 objects" in result.out


def test_serve_refuses_a_store_folder_that_does_not_exist(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "typo"
    assert main(["serve", "--store", str(missing), "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("casstore serve: error: store does not exist: ")
    assert str(missing) in err
    assert not missing.exists()  # not created either
    assert main(["serve", "--store", f"file://{missing}", "--port", "0"]) == 2
    assert "does not exist" in capsys.readouterr().err


async def test_a_bare_keyring_value_names_the_forms_it_could_be(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = await a_store(tmp_path / "store")
    result = await cli(capsys, "verify", root, "--keyring", "MY_KEYS")
    assert_one_line_error(result, "'MY_KEYS'", "env:VAR", "file:PATH", "CASSTORE_KEYRING")
    assert main(["serve", "--store", root, "--keyring", "MY_KEYS"]) == 2
    err = capsys.readouterr().err
    assert "env:VAR" in err
    assert "file:PATH" in err


async def test_a_file_url_with_a_host_is_refused_naming_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = await a_store(tmp_path / "store")
    two_slashes = "file://" + root.lstrip("/")  # file://tmp/... : host "tmp"
    fix = "file:///" + root.lstrip("/")
    with pytest.raises(ConfigurationError, match="names a host") as raised:
        open_backend(two_slashes)
    assert fix in str(raised.value)
    for command in ("stats", "verify"):
        assert_one_line_error(await cli(capsys, command, two_slashes), "names a host", fix)
    assert main(["serve", "--store", two_slashes, "--port", "0"]) == 2
    assert fix in capsys.readouterr().err
    assert (await cli(capsys, "verify", fix)).code == 0


# cat's input: bounded, regular files only, any nesting.


async def test_cat_refuses_input_past_its_limit_and_what_is_not_a_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = await a_store(tmp_path / "store")
    big = json.dumps({"events": [{"pad": "x" * 3_000}]})
    result = await cli(capsys, "cat", "--store", root, "--max-input-size", "2000", stdin=big)
    assert_one_line_error(result, "standard input is larger than 2,000 bytes", "--max-input-size")
    history = tmp_path / "history.json"
    history.write_text(big)
    result = await cli(capsys, "cat", "--store", root, str(history), "--max-input-size", "2000")
    assert_one_line_error(result, f"file {history} is larger than 2,000 bytes")
    result = await cli(capsys, "cat", "--store", root, "/dev/zero")
    assert_one_line_error(result, "/dev/zero is a character device, not a regular file")
    result = await cli(capsys, "cat", "--store", root, str(tmp_path))
    assert_one_line_error(result, "is a directory, not a regular file")
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    result = await cli(capsys, "cat", "--store", root, str(fifo))  # never opened: would block
    assert_one_line_error(result, "is a FIFO, not a regular file")


def test_cat_stops_reading_an_endless_standard_input_at_the_limit(tmp_path: Path) -> None:
    root = tmp_path / "store"
    root.mkdir()
    with open("/dev/zero", "rb") as zeros:
        done = subprocess.run(
            [sys.executable, "-m", "casstore", "cat", "--store", str(root)],
            stdin=zeros,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert done.returncode == 2, done
    assert done.stderr.strip() == (
        "casstore cat: error: standard input is larger than 268,435,456 bytes "
        "(--max-input-size); a history or reference is far smaller"
    )


@pytest.mark.parametrize("depth", [100_000, 5_000])
async def test_cat_reports_deeply_nested_input_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], depth: int
) -> None:
    root = await a_store(tmp_path / "store")
    for nested in ("[" * depth + "]" * depth, '{"a":' * depth + "1" + "}" * depth):
        result = await cli(capsys, "cat", "--store", root, stdin=nested)
        assert_one_line_error(result, "standard input is nested too deeply")


# Every entry of a local store is seen: damage is reported, strays are listed.


async def test_links_fifos_and_stray_files_in_a_local_store_are_reported_never_collected(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "store"
    backend = LocalBackend(root, fsync=False)
    await ensure_policy(backend, LifecyclePolicy(timedelta(seconds=1), timedelta(seconds=1)))
    target = StorageDriverWorkflowInfo(namespace="default", id="wf-1", run_id=None, type=None)
    payloads = [Payload(data=f"payload {i}".encode()) for i in range(4)]
    claims = await CasStorageDriver(backend).store(
        StorageDriverStoreContext(target=target), payloads
    )
    good, *damaged = [
        backend.path_for(parse_claim_data(c.claim_data, max_size=1 << 20).key) for c in claims
    ]
    for path in damaged:
        path.unlink()
    damaged[0].symlink_to("/etc/passwd")
    damaged[1].symlink_to("/dev/zero")
    os.mkfifo(damaged[2])
    stray = good.parent / "copy 1"
    stray_bytes = good.read_bytes()
    stray.write_bytes(stray_bytes)
    day_ago = time.time() - 86_400
    for path in (good, *damaged, stray):
        os.utime(path, (day_ago, day_ago), follow_symlinks=False)

    result = await cli(capsys, "verify", "--store", str(root), "--json")
    assert result.code == 1, result
    report = result.json()
    assert (report["checked"], report["good"]) == (4, 1)
    reasons = {bad["key"].rsplit("/", 1)[1]: bad["reason"] for bad in report["bad"]}
    assert set(reasons) == {path.name for path in damaged}
    assert "link or special file" in reasons[damaged[0].name]
    assert "a FIFO" in reasons[damaged[2].name]
    assert report["other_keys"] == ["v1/default/wf-1/copy 1"]
    text = await cli(capsys, "verify", str(root))
    assert "checked 4 objects" in text.out
    assert "1 good, 3 bad" in text.out
    assert "v1/default/wf-1/copy 1" in text.out

    stats = await cli(capsys, "stats", "--store", str(root), "--json")
    assert stats.code == 0, stats
    assert stats.json()["objects"] == 4
    assert stats.json()["other_keys"]["objects"] == 1

    gc = ["gc", "--store", str(root), "--namespace", "default", "--older-than", "3s", "--delete"]
    for _ in range(2):
        result = await cli(capsys, *gc)
        assert result.code == 0, result
    assert stray.read_bytes() == stray_bytes  # never moved or deleted
    assert damaged[0].is_symlink()
    assert damaged[1].is_symlink()
    assert stat.S_ISFIFO(os.lstat(damaged[2]).st_mode)
    assert not good.exists()  # the one real object went to the trash as usual
