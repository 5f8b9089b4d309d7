"""Reading object keys back: which scope an object belongs to, for people.

The key layout (docs/formats.md) escapes ids into key segments; the commands
show them decoded. Hashed segments (ids too long to keep readable) cannot be
decoded and are shown as they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote

from casstore._keys import KEY_LAYOUT_VERSION, NO_TARGET_LOCATION, is_object_key

OBJECT_PREFIX = KEY_LAYOUT_VERSION + "/"
"""Every casstore object key starts with this; other keys are not ours to judge."""
HOUSEKEEPING_PREFIX = "_casstore/"
"""Where casstore keeps what is not a payload object (gc's lifecycle manifest and trash)."""

_ACTIVITY_MARKER = "_a"
_HASHED_MARKER = "_h"


@dataclass(frozen=True)
class ObjectName:
    """What an object key says: its scope and the digest of its content."""

    key: str
    location: str
    digest: bytes
    namespace: str | None
    """Decoded namespace; ``None`` for payloads stored without a target."""
    workflow_id: str | None = None
    """Decoded workflow id, for workflow-scoped objects."""
    activity_id: str | None = None
    """Decoded standalone-activity id, for activity-scoped objects."""

    @property
    def scope(self) -> str:
        """``workflow``, ``activity``, ``namespace`` or ``none`` (no target)."""
        if self.namespace is None:
            return "none"
        if self.workflow_id is not None:
            return "workflow"
        if self.activity_id is not None:
            return "activity"
        return "namespace"


class BadKeyError(ValueError):
    """A key under the object prefix that does not follow the key layout."""


def is_casstore_key(key: str) -> bool:
    """True if ``key`` is in casstore's object namespace (``v1/...``)."""
    return key.startswith(OBJECT_PREFIX)


def parse_object_key(key: str) -> ObjectName:
    """Split an object key into its scope and digest.

    Raises:
        BadKeyError: If the key does not follow key layout v1.
    """
    if not is_object_key(key):
        raise BadKeyError(f"not a valid casstore object key (key layout {KEY_LAYOUT_VERSION})")
    location, _, hex_digest = key[len(OBJECT_PREFIX) :].rpartition("/")
    digest = bytes.fromhex(hex_digest)
    if location == NO_TARGET_LOCATION:
        return ObjectName(key=key, location=location, digest=digest, namespace=None)
    ns, _, rest = location.partition("/")
    namespace = decode_segment(ns)
    if not rest:
        return ObjectName(key=key, location=location, digest=digest, namespace=namespace)
    if rest.startswith(_ACTIVITY_MARKER):
        activity = decode_segment(rest[len(_ACTIVITY_MARKER) :])
        return ObjectName(
            key=key, location=location, digest=digest, namespace=namespace, activity_id=activity
        )
    return ObjectName(
        key=key,
        location=location,
        digest=digest,
        namespace=namespace,
        workflow_id=decode_segment(rest),
    )


def decode_segment(segment: str) -> str:
    """Undo the escaping of one id; a hashed segment is returned as it is."""
    if segment.startswith(_HASHED_MARKER):
        return segment
    return unquote(segment, encoding="utf-8", errors="backslashreplace")
