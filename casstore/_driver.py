"""CasStorageDriver: scope -> hash -> codec -> backend, and back with checks."""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, TypeVar, Unpack

from temporalio.api.common.v1 import Payload
from temporalio.converter import (
    StorageDriver,
    StorageDriverClaim,
    StorageDriverRetrieveContext,
    StorageDriverStoreContext,
)

from casstore._batch import gather_bounded
from casstore._cache import ByteLRU, KnownObjects, VerifiedPayloads
from casstore._chunk_read import ChunkCacheKey, ChunkReader
from casstore._chunk_write import ChunkIndex
from casstore._chunking import ChunkWriter
from casstore._crypto import Ciphers
from casstore._deadline import (
    Deadline,
    RetryPolicy,
)
from casstore._driver_options import (
    DriverOptions,
    capped_refresh_after,
    keyword_signature,
    resolve_driver_options,
)
from casstore._driver_read import ReadPath
from casstore._driver_store import StorePath
from casstore._format.header import Codec
from casstore._format.keys import Scope, location_for_target
from casstore._format.manifest import MANIFEST_KEY
from casstore._freshness import Call, Freshness
from casstore._metrics import DriverMetrics, MetricMeter, reported
from casstore._requests import Requests
from casstore._stats import DriverStats, error_kind
from casstore.backends._base import Backend
from casstore.errors import (
    CasstoreError,
)

_T = TypeVar("_T")

DRIVER_TYPE = "casstore"


class CasStorageDriver(StorageDriver):
    """A content-addressed, deduplicating Temporal storage driver.

    Each payload is serialized, hashed with BLAKE3, compressed with zstd when
    that pays, and written under a key scoped by namespace and workflow --
    unless the object is already there. The claim left in Event History is a
    compact record (location, digest, size, codec) that retrieval checks before
    parsing anything. See docs/formats.md for the stored formats.

    Args:
        backend: Where objects live.
        name: The driver name recorded in every reference; changing it makes
            earlier references unreadable by this driver.
        scope: ``"workflow"`` (default) dedups within a workflow id;
            ``"namespace"`` dedups across a whole namespace, e.g. the same
            input handed to many child workflows.
        compression_level: zstd level used when compression pays; ``None``
            stores everything raw.
        max_payload_size: Largest serialized payload accepted by ``store``, and
            largest size a claim may promise on ``retrieve``.
        max_concurrency: Most backend requests and off-loop CPU jobs this
            driver runs at once.
        known_objects_cache_size: How many object keys known to exist are
            remembered, so storing them again costs no request. 0 disables.
        retrieval_cache_bytes: Budget for verified payload bytes kept in memory
            so that repeated retrievals cost no request. 0 disables.
        refresh_after: An existing object older than this has its age reset
            before it is vouched for, and the known-object cache vouches for no
            object longer than this, which is what makes age-based expiry and
            ``casstore gc`` safe (docs/operations.md). ``None`` never refreshes
            (unless the store's lifecycle manifest is followed and has one).
            Capped at half the backend's
            :attr:`~casstore.backends.Backend.expires_after` when it has one.
        offload_threshold: Payloads at least this large are hashed, compressed
            and decompressed in a worker thread instead of on the event loop.
        lifecycle_manifest: Record this driver's policy as the store's
            lifecycle manifest when the store has none (gc needs one); on for
            stores the plugin and the codec server open from a URL. Every
            driver, whatever this says, reads the manifest on its first store
            and uses the shorter ``refresh_after``, so no writer vouches for an
            object longer than gc assumes (docs/operations.md).
        timeout, attempt_timeout, min_throughput: The deadline of one payload's
            backend requests, retries included, and of one attempt; see
            docs/reliability.md (defaults 5 s, 2 s, plus size / 2 MiB/s).
        keyring: Encrypt objects with its active key (keyed digests, so dedup
            still works within a key) and read objects sealed with any of its
            keys; see docs/encryption.md. ``None`` stores plain objects.
        require_encryption: Refuse plain (unencrypted) claims and objects on
            retrieval with an :class:`~casstore.errors.IntegrityError`, so
            nobody who can write to the bucket can feed this driver plaintext.
            Needs ``keyring``. Off by default, which reads plain objects too
            (as while moving a store to encryption).
        chunking: Store new payloads of at least ``chunking_threshold`` bytes
            as a manifest of content-defined chunks plus only the chunks no
            earlier object of the scope holds (format 3), so a payload that
            grows turn by turn costs its new bytes, not its whole size; see
            docs/formats.md. Readers older than format 3 cannot read such
            objects: upgrade readers first, or pass False until they are.
        chunking_threshold: The smallest serialized payload that is chunked.
    """

    def __init__(self, backend: Backend, **options: Unpack[DriverOptions]) -> None:
        o = resolve_driver_options(backend, options)
        self._retry = RetryPolicy(
            timeout=o["timeout"],
            attempt_timeout=o["attempt_timeout"],
            min_throughput=o["min_throughput"],
        )
        keyring = o["keyring"]
        self._ciphers = None if keyring is None else Ciphers(keyring)
        self._backend = backend
        self._name = o["name"]
        self._scope: Scope = o["scope"]
        self._compression_level = o["compression_level"]
        self._max_payload_size = o["max_payload_size"]
        self._fresh = Freshness(
            backend, capped_refresh_after(backend, o["refresh_after"]), self._manifest_calls
        )
        self._lifecycle_manifest = o["lifecycle_manifest"]
        self._adoption: Deadline | None = None  # the manifest adoption's, once one started
        known: KnownObjects[Codec] = KnownObjects(o["known_objects_cache_size"])
        # Keyed by all a cold read checks, so a warm cache accepts exactly the
        # claims a cold read accepts (docs/encryption.md, "What the caches vouch for").
        verified = VerifiedPayloads(o["retrieval_cache_bytes"])
        self.stats = DriverStats()
        """Counters of what this driver has done; see :class:`~casstore.DriverStats`."""
        self._metrics: DriverMetrics | None = None
        self._run = Requests(backend, self.stats, o["max_concurrency"], o["offload_threshold"])
        index = ChunkIndex()
        chunk_writer = ChunkWriter(
            self._run,
            index,
            known,
            self._vouch,
            self._compression_level,
            threshold=o["chunking_threshold"] if o["chunking"] else None,
        )
        self._store = StorePath(
            backend=backend,
            run=self._run,
            stats=self.stats,
            retry=self._retry,
            fresh=self._fresh,
            known=known,
            verified=verified,
            ciphers=self._ciphers,
            max_payload_size=self._max_payload_size,
            chunk_writer=chunk_writer,
        )
        # Verified chunks get a quarter of the retrieval budget, on top of it.
        chunk_cache: ByteLRU[ChunkCacheKey] = ByteLRU(o["retrieval_cache_bytes"] // 4)
        self._read = ReadPath(
            backend=backend,
            run=self._run,
            stats=self.stats,
            retry=self._retry,
            known=known,
            verified=verified,
            ciphers=self._ciphers,
            require_encryption=o["require_encryption"],
            max_payload_size=self._max_payload_size,
            chunk_reader=ChunkReader(backend, self._run, self.stats, chunk_cache, index.add),
        )

    def name(self) -> str:
        """Return this driver instance's name (recorded in every reference)."""
        return self._name

    def type(self) -> str:
        """Return ``"casstore"``, the stable driver type."""
        return DRIVER_TYPE

    @property
    def backend(self) -> Backend:
        """The backend objects are stored in."""
        return self._backend

    def set_metric_meter(self, meter: MetricMeter | None) -> None:
        """Report :attr:`stats` to a Temporal metric meter, or stop (docs/operations.md)."""
        self._metrics = None if meter is None else DriverMetrics(meter, driver_name=self._name)
        self._run.metrics = self._metrics

    def __repr__(self) -> str:
        return (
            f"CasStorageDriver(name={self._name!r}, scope={self._scope!r}, "
            f"backend={self._backend!r})"
        )

    __init__.__signature__ = keyword_signature(__init__)  # type: ignore[attr-defined]

    # Store path.

    async def store(
        self, context: StorageDriverStoreContext, payloads: Sequence[Payload]
    ) -> list[StorageDriverClaim]:
        """Store payloads, writing only content the backend does not have yet.

        Returns:
            One claim per payload, in order.

        Raises:
            PayloadTooLargeError: A payload is above ``max_payload_size``.
            BackendError: The backend failed; the message names the payload's
                position, the key and the backend.
        """
        location = location_for_target(context.target, self._scope)
        # Every writer follows the store's manifest: gc's safety rests on it.
        started = time.monotonic()
        await self._fresh.adopt(record=self._lifecycle_manifest)
        # Charge the adoption's request time, never more than this call waited:
        # a busy event loop delaying our wake-up is queueing, which no
        # deadline counts (docs/reliability.md).
        adoption = self._adoption
        requests = adoption.elapsed() if adoption is not None else 0.0
        waited = min(time.monotonic() - started, requests)
        return await self._batch(
            [
                self._labelled(
                    functools.partial(self._store.store_one, location, payload, waited),
                    i,
                    len(payloads),
                    "store",
                )
                for i, payload in enumerate(payloads)
            ]
        )

    async def _vouch(self, key: str, deadline: Deadline) -> bool:
        return await self._store.vouch(key, deadline)

    def _manifest_calls(self) -> Call[Any]:
        """One adoption's requests (read, create, read again) share one small payload's deadline."""
        deadline = self._adoption = self._retry.deadline(0)

        async def call(kind: str, attempt: Callable[[], Awaitable[_T]]) -> _T:
            return await self._run.request(kind, MANIFEST_KEY, attempt, deadline)

        return call

    # Retrieve path.

    async def retrieve(
        self, context: StorageDriverRetrieveContext, claims: Sequence[StorageDriverClaim]
    ) -> list[Payload]:
        """Retrieve payloads, checking size and digest before parsing.

        Returns:
            One payload per claim, in order.

        Raises:
            ClaimError: A claim is malformed or untrustworthy.
            ObjectNotFoundError: The claimed object is missing.
            IntegrityError: The stored bytes do not match the claim.
            BackendError: The backend failed.
        """
        del context  # carries nothing; a claim holds everything retrieval needs
        return await self._batch(
            [
                self._labelled(
                    functools.partial(self._read.retrieve_one, claim), i, len(claims), "retrieve"
                )
                for i, claim in enumerate(claims)
            ]
        )

    # Plumbing.

    async def _batch(self, work: list[Coroutine[Any, Any, _T]]) -> list[_T]:
        # Twice the request bound: the next payloads hash while others wait on requests.
        running = gather_bounded(work, 2 * self._run.max_concurrency)
        return await reported(self._metrics, self.stats, running)

    async def _labelled(
        self, work: Callable[[], Awaitable[_T]], index: int, count: int, verb: str
    ) -> _T:
        """Run one payload's work (started only now) and say which payload of a batch failed."""
        try:
            return await work()
        except CasstoreError as exc:
            self.stats.errors[error_kind(exc)] += 1
            if count == 1:
                raise
            # A copy: callers joined by single-flight share one exception object.
            raise exc.in_batch(index, count, verb).with_traceback(
                exc.__traceback__
            ) from exc.__cause__
