"""Which namespace a reference belongs to, so one namespace cannot read another's.

The server reads objects with its own credentials, so a claim pasted into a
request for namespace B must not fetch namespace A's payloads. Each claim is
checked against the request's namespace before anything is read:

* casstore claims: the location's first segment is the escaped namespace
  (see ``casstore/_format/keys.py``); ``_`` means the payload was stored with no
  namespace (no target), which is readable from every namespace.
* the SDK's S3 and GCS drivers (types ``aws.s3driver``, ``gcp.gcsdriver``):
  their keys read ``v0/ns/<percent-encoded namespace>/...``, or ``v0/d/...``
  with no namespace.
* any other driver: the ``claim_namespace`` callback given to the app says;
  without one, its references are refused, since the server cannot tell.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from urllib.parse import unquote

from temporalio.converter import StorageDriver

from casstore._driver import CasStorageDriver
from casstore._format.claims import parse_claim_data
from casstore._format.keys import (
    HASHED_MARKER,
    NO_TARGET_LOCATION,
    decode_segment,
    namespace_segment,
)
from casstore.errors import ClaimError
from casstore.server._protocol import ProtocolError
from casstore.server._sdk_claims import check_sdk_claim

ClaimNamespace = Callable[[str, Mapping[str, str]], str | None]
"""``(driver name, claim data) -> namespace`` of a claim, or ``None`` if it has none."""

_SDK_KEY_TYPES = {"aws.s3driver": "key", "gcp.gcsdriver": "object_name"}
_UNBOUNDED = 1 << 62


def check_namespace(
    driver: StorageDriver,
    claim_data: Mapping[str, str],
    namespace: str,
    where: str,
    claim_namespace: ClaimNamespace | None,
) -> None:
    """Refuse (403) a claim that belongs to a namespace other than ``namespace``.

    Raises:
        ProtocolError: 403 naming both namespaces; 400 for a malformed casstore claim.
    """
    field = None if isinstance(driver, CasStorageDriver) else _SDK_KEY_TYPES.get(driver.type())
    if field is not None:
        check_sdk_claim(driver.type(), field, claim_data, where)
    if claim_namespace is not None and not isinstance(driver, CasStorageDriver):
        try:
            owner = claim_namespace(driver.name(), claim_data)
        except (KeyError, ValueError, TypeError) as exc:  # it could not parse the claim
            raise ProtocolError(
                400,
                f"{where}: the claim of driver {driver.name()!r} cannot be read "
                f"(claim_namespace raised {type(exc).__name__}: {exc})",
            ) from exc
        if owner is not None and owner != namespace:
            raise _refused(where, repr(owner), namespace, driver)
        return
    if isinstance(driver, CasStorageDriver):
        _check_casstore(driver, claim_data, namespace, where)
        return
    if field is None:
        raise ProtocolError(
            403,
            f"{where}: cannot tell which namespace a reference of driver {driver.name()!r} "
            f"(type {driver.type()!r}) belongs to, so it is refused; give the server a "
            "claim_namespace callback for this driver",
        )
    key = claim_data[field]
    segments = key.split("/")
    if len(segments) < 3 or segments[0] != "v0":
        raise ProtocolError(
            400, f"{where}: {driver.type()} claim has no v0 {field} [{field}={key[:200]!r}]"
        )
    if segments[1] != "ns":
        return  # stored with no target: bound to no namespace
    owner = unquote(segments[2])
    if owner != namespace:
        raise _refused(where, repr(owner), namespace, driver, key=key)


def _check_casstore(
    driver: CasStorageDriver, claim_data: Mapping[str, str], namespace: str, where: str
) -> None:
    try:
        claim = parse_claim_data(claim_data, max_size=_UNBOUNDED)
    except ClaimError as exc:
        raise ProtocolError(400, f"{where}: {exc}") from exc
    segment = claim.location.split("/", 1)[0]
    if segment == NO_TARGET_LOCATION or segment == namespace_segment(namespace):
        return
    hashed = segment.startswith(HASHED_MARKER)
    owner = f"hashed segment {segment!r}" if hashed else repr(decode_segment(segment))
    raise _refused(where, owner, namespace, driver)


def _refused(
    where: str, owner: str, namespace: str, driver: StorageDriver, *, key: str | None = None
) -> ProtocolError:
    return ProtocolError(
        403,
        f"{where}: the reference belongs to namespace {owner}, not to namespace "
        f"{namespace!r} of this request; refused [driver={driver.name()}]",
        key=key,
    )
