"""The store's lifecycle policy: a small versioned manifest drivers and gc both read.

Garbage collection is only safe if it knows how long a writer may vouch for an
object it has not looked at (the known-object cache, bounded by
``refresh_after``), and gc cannot see the writers' settings. So the store
records them: the first driver to store anything writes the manifest
(create-if-absent), every driver adopts the store's value when it is stricter
than its own, and ``casstore gc`` refuses to run without one. Format in
docs/formats.md ("Lifecycle manifest"); the rule it serves in
docs/operations.md.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import msgspec

from casstore.backends._base import Backend, ObjectStat, describe_suffix
from casstore.errors import CasstoreError, ConfigurationError, ObjectNotFoundError

_T = TypeVar("_T")

MANIFEST_KEY = "_casstore/lifecycle.json"
_MAX_MANIFEST_SIZE = 64 * 1024
"""A real manifest is ~200 bytes; anything far larger is refused unread."""
"""Where the manifest lives. ``_``-prefixed, so it never collides with an object
key (every object key starts with the key layout version, ``v1/``)."""
MANIFEST_FORMAT = 1
MAX_MANIFEST_SIZE = 64 * 1024
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


Call = Callable[[str, Callable[[], Awaitable[_T]]], Awaitable[_T]]
"""Runs one backend request ``(kind, attempt)``: e.g. a driver's, under its deadline."""


async def _direct(kind: str, attempt: Callable[[], Awaitable[_T]]) -> _T:
    del kind
    return await attempt()


async def read_policy(backend: Backend, call: Call[Any] = _direct) -> LifecyclePolicy | None:
    """Return the store's lifecycle policy, or ``None`` if it has no manifest.

    Raises:
        ConfigurationError: The manifest exists but cannot be trusted.
        BackendError: The store could not be read.
    """
    try:
        data = await call("get", lambda: backend.get(MANIFEST_KEY, max_size=_MAX_MANIFEST_SIZE))
    except ObjectNotFoundError:
        return None
    return LifecyclePolicy.decode(data, where=describe_suffix(backend))


async def ensure_policy(
    backend: Backend, proposed: LifecyclePolicy, call: Call[Any] = _direct
) -> LifecyclePolicy:
    """Return the store's policy, recording ``proposed`` first if it has none.

    The write is create-if-absent: when writers race to create the manifest,
    one wins and the others read what it wrote.
    """
    found = await read_policy(backend, call)
    if found is not None:
        return found
    if await call("put", lambda: backend.put(MANIFEST_KEY, proposed.encode())):
        return proposed
    found = await read_policy(backend, call)
    if found is None:  # created and deleted between our two requests
        raise CasstoreError(
            f"lifecycle manifest vanished while being created "
            f"[key={MANIFEST_KEY}{describe_suffix(backend)}]"
        )
    return found


def check_collectable(
    policy: LifecyclePolicy, *, grace: timedelta | None = None, older_than: timedelta | None = None
) -> None:
    """Refuse gc settings the safety rule (docs/operations.md) does not cover.

    Raises:
        ConfigurationError: Naming the setting, the minimum and where it comes from.
    """
    fmt = format_duration
    says = (
        f"(the store's lifecycle manifest says refresh_after={fmt(policy.refresh_after)}, "
        f"claim_delay={fmt(policy.claim_delay)})"
    )
    if grace is not None and grace < min_grace(policy):
        raise ConfigurationError(
            f"--grace {fmt(grace)} is too short for this store: it must be at least "
            f"refresh_after + 2 x claim_delay = {fmt(min_grace(policy))} {says}"
        )
    if older_than is not None and older_than < min_older_than(policy):
        raise ConfigurationError(
            f"--older-than {fmt(older_than)} is too short for this store: it must be at least "
            f"max(2 x refresh_after, refresh_after + 2 x claim_delay) = "
            f"{fmt(min_older_than(policy))} {says}"
        )


def min_grace(policy: LifecyclePolicy) -> timedelta:
    """The shortest grace gc accepts with Temporal marking (see docs/operations.md)."""
    return policy.refresh_after + 2 * policy.claim_delay


def min_older_than(policy: LifecyclePolicy) -> timedelta:
    """The shortest age gc accepts in age-only mode (see docs/operations.md)."""
    return max(2 * policy.refresh_after, min_grace(policy))


def format_duration(value: timedelta) -> str:
    """Format a duration the way the CLI takes it (``26h``, ``3d``, ``1.5s``)."""
    seconds = value.total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size:g}{unit}"
    return f"{seconds:g}s"


TRASH_PREFIX = "_casstore/trash/"
"""gc moves an object here (same key after the prefix) before deleting it for good;
readers fall back to it, so a claim handed out while gc decided stays readable."""


def trash_key(key: str) -> str:
    """Return where gc quarantines the object ``key``."""
    return TRASH_PREFIX + key


class Freshness:
    """How long one driver may vouch for an object: its ``refresh_after``, capped by the store's.

    On the driver's first store, :meth:`adopt` reads the store's manifest (one
    request per driver), writing one with this driver's ``refresh_after`` if
    there is none and ``record`` is set; the driver then uses the shorter of
    the two. A driver with ``refresh_after=None`` only follows a manifest, and
    writes none.
    """

    def __init__(
        self, backend: Backend, refresh_after: timedelta | None, call: Call[Any] = _direct
    ) -> None:
        self._backend = backend
        self._call = call
        self._seconds = refresh_after.total_seconds() if refresh_after is not None else None
        self._ready = False
        self._adopting: asyncio.Future[None] | None = None

    @property
    def seconds(self) -> float | None:
        """The vouch bound in seconds, or ``None`` (vouch forever, never refresh)."""
        return self._seconds

    async def adopt(self, *, record: bool = True) -> None:
        """Follow the store's manifest (once; concurrent callers share the request).

        Args:
            record: Write a manifest with this driver's ``refresh_after`` when
                the store has none.
        """
        if self._ready:
            return
        if self._adopting is None or self._adopting.done():  # first call, or the last one failed
            self._adopting = asyncio.ensure_future(self._adopt(record))
        await asyncio.shield(self._adopting)

    async def _adopt(self, record: bool) -> None:
        if self._seconds is None or not record:
            policy = await read_policy(self._backend, self._call)
        else:
            proposed = LifecyclePolicy(refresh_after=timedelta(seconds=self._seconds))
            policy = await ensure_policy(self._backend, proposed, self._call)
        if policy is not None:
            store_seconds = policy.refresh_after.total_seconds()
            self._seconds = min(self._seconds or store_seconds, store_seconds)
        self._ready = True

    def vouch_until(self, modified: float) -> float | None:
        """Until when an object last modified at ``modified`` may be vouched for.

        Returns:
            The time, or ``None`` if the object is too old and needs a refresh first.
        """
        if self._seconds is None:
            return float("inf")
        if time.time() - modified < self._seconds:
            return modified + self._seconds
        return None

    async def keep_alive(
        self, found: ObjectStat, touch: Callable[[], Awaitable[None]]
    ) -> float | None:
        """Refresh a found object too old to vouch for (``touch``); return until when to vouch.

        Returns:
            The time, or ``None`` if the object vanished before it could be refreshed.
        """
        until = self.vouch_until(found.modified.timestamp())
        if until is not None:
            return until
        refreshed_at = time.time()
        try:
            await touch()
        except ObjectNotFoundError:
            return None
        return self.expiry(refreshed_at)

    def expiry(self, fresh_at: float) -> float:
        """Until when an object known to exist at ``fresh_at`` may be vouched for."""
        return float("inf") if self._seconds is None else fresh_at + self._seconds
