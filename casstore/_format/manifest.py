"""The lifecycle manifest (format 1): what every writer of a store promises.

Garbage collection is only safe if it knows how long a writer may vouch for an
object it has not looked at (the known-object cache, bounded by
``refresh_after``), and gc cannot see the writers' settings. So the store
records them in one small JSON object at :data:`MANIFEST_KEY`. This module is
its bytes; reading and recording it is :mod:`casstore._freshness`, and the
rule gc derives from it is :mod:`casstore.ops._gc_rule`. Format in
docs/formats.md ("Lifecycle manifest"); the rule it serves in
docs/operations.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta

import msgspec

from casstore._format.keys import HOUSEKEEPING_PREFIX
from casstore.errors import ConfigurationError

MANIFEST_KEY = HOUSEKEEPING_PREFIX + "lifecycle.json"
"""Where the manifest lives. Under the housekeeping prefix, so it never collides
with an object key (every object key starts with the key layout version, ``v1/``)."""
MANIFEST_FORMAT = 1
MAX_MANIFEST_SIZE = 64 * 1024
"""A real manifest is ~100 bytes; anything far larger is refused unread."""
DEFAULT_REFRESH_AFTER = timedelta(days=1)
DEFAULT_CLAIM_DELAY = timedelta(hours=1)


class _ManifestV1(msgspec.Struct, forbid_unknown_fields=False):
    # Field names are the stored format; see docs/formats.md.
    format: int
    refresh_after_seconds: float
    claim_delay_seconds: float


@dataclass(frozen=True)
class LifecyclePolicy:
    """What every writer of a store promises, as recorded in its manifest.

    Attributes:
        refresh_after: The longest a writer vouches for an object it has not
            seen written, found or refreshed (its known-object cache bound);
            an existing object at least this old is refreshed before reuse.
        claim_delay: The longest between a writer handing out a claim and the
            claim being visible in a listed workflow history (task timeouts,
            client retries, visibility lag all included).
    """

    refresh_after: timedelta = DEFAULT_REFRESH_AFTER
    claim_delay: timedelta = DEFAULT_CLAIM_DELAY

    def __post_init__(self) -> None:
        for name, value in (
            ("refresh_after", self.refresh_after),
            ("claim_delay", self.claim_delay),
        ):
            seconds = value.total_seconds()
            if not math.isfinite(seconds) or seconds <= 0:
                raise ConfigurationError(f"lifecycle {name} must be positive, got {value}")

    def encode(self) -> bytes:
        """Return the manifest's bytes (format 1)."""
        return msgspec.json.encode(
            _ManifestV1(
                format=MANIFEST_FORMAT,
                refresh_after_seconds=self.refresh_after.total_seconds(),
                claim_delay_seconds=self.claim_delay.total_seconds(),
            )
        )

    @classmethod
    def decode(cls, data: bytes, *, where: str = "") -> LifecyclePolicy:
        """Parse a manifest, rejecting anything this version cannot vouch for.

        Raises:
            ConfigurationError: Malformed, an unknown format, or bad values.
        """
        if len(data) > MAX_MANIFEST_SIZE:
            raise ConfigurationError(
                f"lifecycle manifest is {len(data)} bytes, above {MAX_MANIFEST_SIZE} "
                f"[key={MANIFEST_KEY}{where}]"
            )
        try:
            version = msgspec.json.decode(data, type=dict[str, object]).get("format")
        except msgspec.DecodeError as exc:
            raise ConfigurationError(
                f"lifecycle manifest is not a JSON object [key={MANIFEST_KEY}{where}]: {exc}"
            ) from exc
        if version != MANIFEST_FORMAT:
            raise ConfigurationError(
                f"lifecycle manifest has format {version!r}, this casstore reads format "
                f"{MANIFEST_FORMAT}; upgrade casstore [key={MANIFEST_KEY}{where}]"
            )
        try:
            raw = msgspec.json.decode(data, type=_ManifestV1)
        except msgspec.ValidationError as exc:
            raise ConfigurationError(
                f"lifecycle manifest is invalid [key={MANIFEST_KEY}{where}]: {exc}"
            ) from exc
        try:
            return cls(
                refresh_after=timedelta(seconds=raw.refresh_after_seconds),
                claim_delay=timedelta(seconds=raw.claim_delay_seconds),
            )
        except (ConfigurationError, OverflowError) as exc:
            raise ConfigurationError(
                f"lifecycle manifest is invalid [key={MANIFEST_KEY}{where}]: {exc}"
            ) from exc
