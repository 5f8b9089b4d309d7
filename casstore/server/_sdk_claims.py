"""Shape checks for the SDK's S3 and GCS drivers' claims, before they are sent to a driver.

Those drivers index the claim (``claim_data["bucket"]``) and check its hash
only after the download, so a malformed claim would surface as a ``KeyError``,
an S3 parameter error or a hash mismatch: a driver failure (502) for what is
the caller's mistake. Checking the shape first answers 400 naming the field.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from casstore.server._protocol import ProtocolError

_BUCKET = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{1,220}[A-Za-z0-9]")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_MAX_KEY_BYTES = 1024  # S3's and GCS's limit on an object name


def check_sdk_claim(driver_type: str, field: str, claim: Mapping[str, str], where: str) -> None:
    """Refuse (400) a claim of the SDK's S3 or GCS driver that its driver cannot act on.

    ``field`` is the claim's key field: ``key`` (S3) or ``object_name`` (GCS).
    """
    problem = _problem(field, claim)
    if problem is not None:
        shown = {k: v[:80] for k, v in list(claim.items())[:8]}
        raise ProtocolError(
            400, f"{where}: malformed {driver_type} claim: {problem} [claim={shown}]"
        )


def _problem(field: str, claim: Mapping[str, str]) -> str | None:
    for name in ("bucket", field, "hash_algorithm", "hash_value"):
        if not claim.get(name):
            return f"it has no {name!r}"
    if not _BUCKET.fullmatch(claim["bucket"]):
        return f"bucket {claim['bucket'][:80]!r} is not a bucket name"
    if len(claim[field].encode("utf-8", "surrogatepass")) > _MAX_KEY_BYTES:
        return f"{field} is longer than {_MAX_KEY_BYTES} bytes"
    if claim["hash_algorithm"] != "sha256":
        return f"hash_algorithm is {claim['hash_algorithm'][:40]!r}, expected 'sha256'"
    if not _SHA256.fullmatch(claim["hash_value"]):
        return "hash_value is not 64 lower-case hex digits (a SHA-256)"
    return None
