"""gc's move journal: which trash copies a crash may have left dated too early.

Rule G3 (docs/operations.md) needs a trash copy's date to be no earlier than
its original's removal minus ``claim_delay``. A move copies first and removes
the original after, and a slow batch gets its copies re-stamped; but a run
killed between a batch's removals and that re-stamp (or, on a local store,
between a rename and the time set after it) leaves copies dated too early,
and the next run would delete them for good too soon.

So each batch of moves is journaled: before its first change, gc writes
``_casstore/gc/<namespace>.moving/<token>`` listing the batch's trash keys,
and deletes it once every copy's date is right. A journal found at the start
of a run is what a crashed run left: its copies are kept out of this run's
deletions and re-stamped (dated now, later than any removal the crashed run
made), then the journal is deleted.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

from casstore._format.trash import journal_prefix
from casstore.backends._base import Backend, describe_suffix
from casstore.errors import CasstoreError, ObjectNotFoundError

JOURNAL_VERSION = 1
_MAX_JOURNAL_SIZE = 4 * 1024 * 1024  # 1,000 trash keys of at most 1,024 bytes, and more


class JournalError(CasstoreError):
    """A leftover move journal gc cannot read: it cannot tell which copies to keep."""


@dataclass(frozen=True)
class Leftovers:
    """What crashed runs left: their journals and the trash copies they name."""

    journals: list[str]
    trash_keys: set[str]


async def read_leftovers(backend: Backend, namespace: str) -> Leftovers:
    """Read every move journal of ``namespace`` (changes nothing).

    Raises:
        JournalError: A journal is not one this casstore wrote; gc stops
            rather than guess which copies it protects.
    """
    journals: list[str] = []
    trash_keys: set[str] = set()
    async for key, _ in backend.scan(journal_prefix(namespace)):
        try:
            data = await backend.get(key, max_size=_MAX_JOURNAL_SIZE)
        except ObjectNotFoundError:
            continue  # another run finished it meanwhile
        journals.append(key)
        trash_keys.update(_decode(data, key, backend))
    return Leftovers(journals, trash_keys)


async def restamp_leftovers(backend: Backend, leftovers: Leftovers) -> int:
    """Date every copy a leftover journal names now, then delete the journals.

    Returns:
        How many copies were re-stamped (copies that no longer exist, or
        never got made, are skipped).
    """
    restamped = 0
    for key in sorted(leftovers.trash_keys):
        try:
            await backend.touch(key)
            restamped += 1
        except ObjectNotFoundError:
            pass  # the crash came before its copy, or it was restored or dropped since
    if leftovers.journals:
        await backend.delete_many(leftovers.journals)
    return restamped


@asynccontextmanager
async def journaled(
    backend: Backend, namespace: str, trash_keys: Sequence[str]
) -> AsyncIterator[None]:
    """Journal one batch of moves while it runs.

    The journal is written before the batch's first change and deleted only
    when the block ends without an error: an error or a crash leaves it for
    the next run to recover.
    """
    key = f"{journal_prefix(namespace)}{int(time.time() * 1000)}-{secrets.token_hex(8)}"
    record = {
        "version": JOURNAL_VERSION,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "started": time.time(),
        "trash_keys": list(trash_keys),
    }
    await backend.put(key, json.dumps(record).encode())
    yield
    await backend.delete(key)


def _decode(data: bytes, key: str, backend: Backend) -> list[str]:
    where = f"[key={key}{describe_suffix(backend)}]"
    try:
        record = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise JournalError(f"gc move journal is not JSON {where}: {exc}") from exc
    if not isinstance(record, dict) or record.get("version") != JOURNAL_VERSION:
        version = record.get("version") if isinstance(record, dict) else None
        raise JournalError(
            f"gc move journal has version {version!r}, this casstore reads {JOURNAL_VERSION} "
            f"{where}: run gc with the casstore that wrote it"
        )
    keys = record.get("trash_keys")
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise JournalError(f"gc move journal has no list of trash keys {where}")
    return keys
