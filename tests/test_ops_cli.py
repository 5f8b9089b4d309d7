"""The operator commands' arguments and input, on local stores: what a user types wrong.

Each command runs as a user runs it, through the CLI entry point; the ones
that read a real standard input (a pipe from ``/dev/zero``) run as a process.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from temporalio.api.common.v1 import Payload
from temporalio.converter import StorageDriverStoreContext, StorageDriverWorkflowInfo

from casstore import CasStorageDriver
from casstore._lifecycle import LifecyclePolicy, ensure_policy
from casstore.backends import LocalBackend

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
        "_args": ("add_store_argument", "open_keyring", "positive_int"),
        "_durations": ("parse_duration",),
        "_store": ("open_store", "require_local_store"),
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
