"""Key layout v1: where an object lives, derived from its scope and digest.

A *location* names a dedup scope and is what a claim carries; the object key
is derived from it and the content digest, so claims stay short::

    key      = "v1/" location "/" hex(blake3(serialized payload))
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

The layout is a stored format: changing any of it needs a new version prefix.
See docs/formats.md.
"""

from __future__ import annotations

import re
import string
from typing import Literal

import blake3
from temporalio.converter import StorageDriverActivityInfo, StorageDriverWorkflowInfo

from casstore.errors import ClaimError

KEY_LAYOUT_VERSION = "v1"
MAX_SEGMENT_LENGTH = 200
"""Longest escaped id kept readable; longer ones are hashed."""
MAX_KEY_LENGTH = 1024
"""S3's limit on object key length, in UTF-8 bytes; every backend enforces it."""
DIGEST_SIZE = 32

NO_TARGET_LOCATION = "_"
_ACTIVITY_MARKER = "_a"
_HASHED_MARKER = "_h"

Scope = Literal["workflow", "namespace"]

_SAFE = frozenset((string.ascii_letters + string.digits + "-._").encode())
_SEGMENT = "[A-Za-z0-9%-][A-Za-z0-9._%-]{0," + str(MAX_SEGMENT_LENGTH - 1) + "}"
_HASHED = r"_h[0-9a-f]{32}"
_ID = rf"(?:{_SEGMENT}|{_HASHED})"
_LOCATION_RE = re.compile(rf"(?:_|{_ID}(?:/(?:_a)?{_ID})?)")
_KEY_SEGMENT_RE = re.compile(r"[A-Za-z0-9_%-][A-Za-z0-9._%-]*")
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
    return _HASHED_MARKER + blake3.blake3(kind + b"\0" + raw).digest(length=16).hex()


def target_location(scope: Scope, target: object) -> str:
    """Return the location for a store context's target (workflow, activity or none)."""
    if isinstance(target, StorageDriverWorkflowInfo):
        return location_for(scope=scope, namespace=target.namespace, workflow_id=target.id)
    if isinstance(target, StorageDriverActivityInfo):
        return location_for(scope=scope, namespace=target.namespace, activity_id=target.id)
    return NO_TARGET_LOCATION


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
    ns = escape_id(namespace, kind=b"n")
    if scope == "namespace":
        return ns
    if workflow_id:
        return f"{ns}/{escape_id(workflow_id, kind=b'w')}"
    if activity_id:
        return f"{ns}/{_ACTIVITY_MARKER}{escape_id(activity_id, kind=b'a')}"
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
    return f"{KEY_LAYOUT_VERSION}/{location}/{digest.hex()}"


def check_key(key: str) -> str:
    """Check that a key is safe for every backend, or raise ``ValueError``.

    Backends call this on every key they are given, so that no key, whatever
    produced it, can reach outside a backend's root: segments are non-empty,
    made of ``[A-Za-z0-9._%-]``, never start with a dot, and the whole key is at
    most :data:`MAX_KEY_LENGTH` bytes.
    """
    if not isinstance(key, str) or not key or len(key) > MAX_KEY_LENGTH:
        raise ValueError(f"invalid object key (empty, not a string, or too long) [key={key!r}]")
    for segment in key.split("/"):
        if not _KEY_SEGMENT_RE.fullmatch(segment):
            raise ValueError(f"invalid object key segment {segment!r} [key={key!r}]")
    return key


def is_object_key(key: str) -> bool:
    """Return True if ``key`` is a v1 object key produced by :func:`object_key`."""
    version, _, rest = key.partition("/")
    location, _, digest = rest.rpartition("/")
    return (
        version == KEY_LAYOUT_VERSION
        and bool(_HEX_DIGEST_RE.fullmatch(digest))
        and bool(_LOCATION_RE.fullmatch(location))
    )
