"""gc's keys outside the object namespace: the trash (quarantine) and the run locks.

``casstore gc`` moves an object it is about to delete to :func:`trash_key`
(the same key after :data:`TRASH_PREFIX`, bytes unchanged) and deletes it for
good only on a later run; readers fall back to the trash copy, so a claim
handed out while gc decided stays readable. A run holds :func:`lock_key` of
its namespace while it acts, and journals each batch of moves under
:func:`journal_prefix` until the batch's copies are dated. All live under
the housekeeping prefix, so tools that scan ``v1/`` never see them. See docs/formats.md ("Trash").
"""

from __future__ import annotations

from casstore._format.keys import HOUSEKEEPING_PREFIX, namespace_segment

TRASH_PREFIX = HOUSEKEEPING_PREFIX + "trash/"
LOCK_PREFIX = HOUSEKEEPING_PREFIX + "gc/"


def trash_key(key: str) -> str:
    """Return where gc quarantines the object ``key``."""
    return TRASH_PREFIX + key


def journal_prefix(namespace: str) -> str:
    """Return where a gc run of ``namespace`` journals its batches of moves."""
    return f"{LOCK_PREFIX}{namespace_segment(namespace)}.moving/"


def lock_key(namespace: str) -> str:
    """Return the key of the lock a gc run of ``namespace`` holds."""
    return f"{LOCK_PREFIX}{namespace_segment(namespace)}.lock"
