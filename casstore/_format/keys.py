"""Key layout v1: where an object lives, derived from its scope and digest, and back.

A *location* names a dedup scope and is what a claim carries; the object key
is derived from it and the content digest, so claims stay short::

    key      = "v1/" location "/" hex(digest)
    location = ns                      namespace scope
             | ns "/" wfid             workflow scope (namespace + workflow id)
             | ns "/_a" actid          standalone-activity scope
             | "_"                     no target (payload stored outside any namespace)
    ns, wfid = escaped id | "_h" 32 hex (hashed fallback for over-long ids)

Escaping percent-encodes every UTF-8 byte outside ``[A-Za-z0-9._-]`` as ``%XX``
(upper-case hex), plus a leading ``.`` or ``_``; so an escaped id is never
``.``/``..``, never contains ``/``, and never starts with ``_``, which leaves
``_``-prefixed segments free for the markers above. An escaped id longer than
:data:`MAX_SEGMENT_LENGTH` is replaced by ``_h`` and the first 16 bytes of
BLAKE3 over a kind byte and the raw id, keeping every key well under S3's
1,024-byte limit and every segment under common file-name limits.

Keys outside ``v1/`` that casstore writes start with :data:`HOUSEKEEPING_PREFIX`
(the lifecycle manifest, gc's trash and locks), so they never collide with an
object key.

The layout is a stored format: changing any of it needs a new version prefix.
See docs/formats.md ("Key layout").
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from typing import Literal
from urllib.parse import unquote

import blake3
from temporalio.converter import StorageDriverActivityInfo, StorageDriverWorkflowInfo

from casstore.errors import ClaimError

KEY_LAYOUT_VERSION = "v1"
OBJECT_PREFIX = KEY_LAYOUT_VERSION + "/"
"""Every casstore object key starts with this; other keys are not ours to judge."""
HOUSEKEEPING_PREFIX = "_casstore/"
"""Where casstore keeps what is not a payload object (lifecycle manifest, gc's trash and locks)."""
MAX_SEGMENT_LENGTH = 200
"""Longest escaped id kept readable; longer ones are hashed."""

NO_TARGET_LOCATION = "_"
ACTIVITY_MARKER = "_a"
"""Marks a standalone-activity id in a location (``ns/_a<id>``)."""
HASHED_MARKER = "_h"
"""Starts a hashed segment: an id too long to keep readable."""

Scope = Literal["workflow", "namespace"]

_SAFE = frozenset((string.ascii_letters + string.digits + "-._").encode())
_SEGMENT = "[A-Za-z0-9%-][A-Za-z0-9._%-]{0," + str(MAX_SEGMENT_LENGTH - 1) + "}"
_HASHED = rf"{HASHED_MARKER}[0-9a-f]{{32}}"
_ID = rf"(?:{_SEGMENT}|{_HASHED})"
_LOCATION_RE = re.compile(rf"(?:{NO_TARGET_LOCATION}|{_ID}(?:/(?:{ACTIVITY_MARKER})?{_ID})?)")
_HEX_DIGEST_RE = re.compile(r"[0-9a-f]{64}")


def escape_id(value: str, *, kind: bytes) -> str:
    """Escape one id (namespace, workflow id, activity id) into a key segment.

    Args:
        value: The raw id; must not be empty.
        kind: A one-byte tag mixed into the hashed fallback so that equal ids of
            different kinds never share a hashed segment.

    Returns:
        A segment matching the location grammar.
    """
    raw = value.encode("utf-8")
    escaped = "".join(
        chr(byte) if byte in _SAFE and not (i == 0 and byte in b"._") else f"%{byte:02X}"
        for i, byte in enumerate(raw)
    )
    if len(escaped) <= MAX_SEGMENT_LENGTH:
        return escaped
    return HASHED_MARKER + blake3.blake3(kind + b"\0" + raw).digest(length=16).hex()


def namespace_segment(namespace: str) -> str:
    """Return the escaped segment that starts every location of ``namespace``."""
    return escape_id(namespace, kind=b"n")


def namespace_prefix(namespace: str) -> str:
    """Return the key prefix of every object stored for ``namespace`` (any scope)."""
    return f"{OBJECT_PREFIX}{namespace_segment(namespace)}/"


def location_for(
    *,
    scope: Scope,
    namespace: str | None,
    workflow_id: str | None = None,
    activity_id: str | None = None,
) -> str:
    """Return the location (dedup scope) for a store context's target.

    Args:
        scope: ``"workflow"`` keys objects by namespace and workflow (or
            standalone activity) id; ``"namespace"`` shares them namespace-wide.
        namespace: The target's namespace; ``None`` or empty means no target.
        workflow_id: The workflow id for a workflow target.
        activity_id: The activity id for a standalone-activity target.

    Returns:
        A location string matching the grammar in this module's docstring.
    """
    if not namespace:
        return NO_TARGET_LOCATION
    ns = namespace_segment(namespace)
    if scope == "namespace":
        return ns
    if workflow_id:
        return f"{ns}/{escape_id(workflow_id, kind=b'w')}"
    if activity_id:
        return f"{ns}/{ACTIVITY_MARKER}{escape_id(activity_id, kind=b'a')}"
    return ns


def location_for_target(target: object, scope: Scope) -> str:
    """Return the location for a store context's target (``context.target``).

    Args:
        target: A ``StorageDriverWorkflowInfo``, a ``StorageDriverActivityInfo``
            or ``None`` (no target).
        scope: The driver's dedup scope.
    """
    if isinstance(target, StorageDriverWorkflowInfo):
        return location_for(scope=scope, namespace=target.namespace, workflow_id=target.id)
    if isinstance(target, StorageDriverActivityInfo):
        return location_for(scope=scope, namespace=target.namespace, activity_id=target.id)
    return NO_TARGET_LOCATION


def validate_location(location: object) -> str:
    """Check that a location taken from a claim matches the grammar.

    Raises:
        ClaimError: If it does not; the message quotes the offending value.
    """
    if not isinstance(location, str) or not _LOCATION_RE.fullmatch(location):
        raise ClaimError(f"claim location is not a valid casstore location [location={location!r}]")
    return location


def object_key(location: str, digest: bytes) -> str:
    """Return the object key for content with ``digest`` stored at ``location``."""
    return f"{OBJECT_PREFIX}{location}/{digest.hex()}"


def is_object_key(key: str) -> bool:
    """Return True if ``key`` is a v1 object key produced by :func:`object_key`."""
    version, _, rest = key.partition("/")
    location, _, digest = rest.rpartition("/")
    return (
        version == KEY_LAYOUT_VERSION
        and bool(_HEX_DIGEST_RE.fullmatch(digest))
        and bool(_LOCATION_RE.fullmatch(location))
    )


def is_casstore_key(key: str) -> bool:
    """True if ``key`` is in casstore's object namespace (``v1/...``)."""
    return key.startswith(OBJECT_PREFIX)


# Reading keys back: which scope an object belongs to, for people. Hashed
# segments (ids too long to keep readable) cannot be decoded and are shown as
# they are.


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
    if rest.startswith(ACTIVITY_MARKER):
        activity = decode_segment(rest[len(ACTIVITY_MARKER) :])
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
    if segment.startswith(HASHED_MARKER):
        return segment
    return unquote(segment, encoding="utf-8", errors="backslashreplace")
