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
from casstore._cache import ByteLRU, KnownObjects, SingleFlight, VerifiedIdentity, VerifiedPayloads
from casstore._chunk_read import ChunkCacheKey, ChunkReader
from casstore._chunk_write import ChunkIndex
from casstore._chunking import ChunkWriter
from casstore._crypto import Ciphers, cipher_for
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
from casstore._format.chunked import is_chunked, max_chunked_object_size
from casstore._format.claims import claim_data_for, parse_claim_data
from casstore._format.digest import content_digest
from casstore._format.encrypted import ObjectCipher
from casstore._format.header import HEADER_SIZE, Codec
from casstore._format.keys import Scope, location_for_target, object_key
from casstore._format.manifest import MANIFEST_KEY
from casstore._format.trash import trash_key
from casstore._freshness import Freshness
from casstore._metrics import DriverMetrics, MetricMeter, reported
from casstore._requests import Requests
from casstore._stats import DriverStats, error_kind
from casstore._verify import check_digest, decode_and_verify, parse_payload
from casstore.backends._base import Backend, ObjectStat, describe_backend, describe_suffix
from casstore.errors import (
    BackendError,
    CasstoreError,
    IntegrityError,
    ObjectNotFoundError,
    PayloadTooLargeError,
)

_T = TypeVar("_T")

DRIVER_TYPE = "casstore"
WRITE_FIRST_MAX_SIZE = 64 * 1024
"""Payloads up to this size are written without an existence check first, when the
backend's create-if-absent reports existing objects (``Backend.conditional_writes``);
the check (for the object's age) follows only when the write finds it there."""
_STORE_ATTEMPTS = 3  # an object gc moves away while we look at it is written anew


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
        self._require_encryption = o["require_encryption"]
        self._ciphers = None if keyring is None else Ciphers(keyring)
        self._backend = backend
        self._name = o["name"]
        self._scope: Scope = o["scope"]
        self._compression_level = o["compression_level"]
        self._max_payload_size = o["max_payload_size"]
        # The manifest's requests get the deadline and retries of a small payload's.
        self._fresh = Freshness(
            backend, capped_refresh_after(backend, o["refresh_after"]), self._manifest_request
        )
        self._lifecycle_manifest = o["lifecycle_manifest"]
        self._known: KnownObjects[Codec] = KnownObjects(o["known_objects_cache_size"])
        # Keyed by all a cold read checks, so a warm cache accepts exactly the
        # claims a cold read accepts (docs/encryption.md, "What the caches vouch for").
        self._verified = VerifiedPayloads(o["retrieval_cache_bytes"])
        self._stores: SingleFlight[str, Codec] = SingleFlight()
        # Keyed by all that changes the outcome (identity and size): no claim can
        # fail another, nor get bytes another claim's checks vouched for.
        self._reads: SingleFlight[tuple[VerifiedIdentity, int], bytes] = SingleFlight()
        self.stats = DriverStats()
        """Counters of what this driver has done; see :class:`~casstore.DriverStats`."""
        self._metrics: DriverMetrics | None = None
        self._run = Requests(backend, self.stats, o["max_concurrency"], o["offload_threshold"])
        index = ChunkIndex()
        self._chunk_writer = ChunkWriter(
            self._run,
            index,
            self._known,
            self._vouch,
            self._compression_level,
            threshold=o["chunking_threshold"] if o["chunking"] else None,
        )
        # Verified chunks get a quarter of the retrieval budget, on top of it.
        chunk_cache: ByteLRU[ChunkCacheKey] = ByteLRU(o["retrieval_cache_bytes"] // 4)
        self._chunk_reader = ChunkReader(backend, self._run, self.stats, chunk_cache, index.add)

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
        await self._fresh.adopt(record=self._lifecycle_manifest)
        return await self._batch(
            [
                self._labelled(
                    functools.partial(self._store_one, location, payload), i, len(payloads), "store"
                )
                for i, payload in enumerate(payloads)
            ]
        )

    async def _store_one(self, location: str, payload: Payload) -> StorageDriverClaim:
        # Serializing is one memory copy, and upb's ByteSize() serializes anyway
        # (into fresh memory each call), so the copy is made once, here, and the
        # hashing of large payloads goes to a worker thread.
        data = payload.SerializeToString(deterministic=True)
        if len(data) > self._max_payload_size:
            raise PayloadTooLargeError(
                f"payload is {len(data)} bytes, above max_payload_size "
                f"{self._max_payload_size} [location={location}]"
            )
        cipher = None if self._ciphers is None else self._ciphers.active
        digest_key = None if cipher is None else cipher.digest_key
        digest = await self._run.cpu(len(data), content_digest, data, digest_key)
        key = object_key(location, digest)
        verified = VerifiedIdentity(key, None if cipher is None else cipher.key_id)
        self.stats.payloads_stored += 1
        self.stats.logical_bytes_stored += len(data)

        size = len(data)
        codec = self._known.get(key)
        if codec is not None:
            self.stats.dedup_cache_hits += 1
        else:
            store = functools.partial(
                self._store_object, verified, digest, data, cipher, location, payload
            )
            # Only the leader of a single flight needs the bytes; a fan-out's
            # joiners must not keep a copy each alive while they wait.
            del data
            codec, joined = await self._stores.run(key, store)
            if joined:
                self.stats.dedup_inflight_hits += 1
        key_id = None if cipher is None else cipher.key_id
        return StorageDriverClaim(claim_data=claim_data_for(location, digest, size, codec, key_id))

    async def _store_object(
        self,
        verified: VerifiedIdentity,
        digest: bytes,
        data: bytes,
        cipher: ObjectCipher | None,
        location: str,
        payload: Payload,
    ) -> Codec:
        """Make sure the object exists (write or find it); return its codec."""
        key = verified.key
        deadline = self._retry.deadline(len(data))
        # For small objects on a backend whose create-if-absent reports existence,
        # the write doubles as the existence check: one request instead of two.
        # Large objects are checked first, so a hit does not upload them again.
        check_first = not (self._backend.conditional_writes and len(data) <= WRITE_FIRST_MAX_SIZE)
        for _ in range(_STORE_ATTEMPTS):
            found = await self._stat(key, deadline) if check_first else None
            if found is not None:
                # A raw object is exactly header + payload; our zstd objects are smaller.
                codec = Codec.RAW if found.size == HEADER_SIZE + len(data) else Codec.ZSTD
                if not await self._found_existing(key, found, codec, deadline):
                    continue  # gone while we refreshed it (gc moved it): write it anew
                self._verified.put(verified, data)
                return codec

            codec, obj, learned = await self._chunk_writer.encode_new(
                location=location,
                key=key,
                digest=digest,
                data=data,
                payload=payload,
                cipher=cipher,
                deadline=deadline,
            )
            written_at = time.time()
            # A put retried after a lost answer finds its own object: a success too.
            put = functools.partial(self._backend.put, key, obj)
            if await self._run.request("put", key, put, deadline):
                self.stats.objects_written += 1
                self.stats.logical_bytes_written += len(data)
                self.stats.bytes_written += len(obj)
                self._known.add(key, codec, self._fresh.expiry(written_at))
                # Where a store that cannot report a lost race may hold another
                # writer's layout of these bytes, only reads teach chunk locations.
                if learned and self._backend.conditional_writes:
                    key_id = None if cipher is None else cipher.key_id
                    self._chunk_writer.index.add(location, key_id, learned)
                # These bytes hash to the digest by construction: later reads need none.
                self._verified.put(verified, data)
                return codec
            # It exists (another writer, or an earlier store): its age decides
            # whether it needs a refresh before we vouch for it.
            if self._fresh.seconds is None and await self._found_existing(
                key, None, codec, deadline
            ):
                self._verified.put(verified, data)
                return codec
            check_first = True
        where = f"[key={key}{describe_suffix(self._backend)}]"
        message = f"object vanished {_STORE_ATTEMPTS} times while being stored {where}"
        raise BackendError(message, key=key, backend=describe_backend(self._backend))

    async def _vouch(self, key: str, deadline: Deadline) -> bool:
        """Check an object of unknown age before a manifest vouches for it (refresh if old)."""
        found = await self._stat(key, deadline)
        if found is None:
            return False
        touch = functools.partial(self._touch, key, deadline)
        expires_at = await self._fresh.keep_alive(found, touch)
        if expires_at is None:
            return False
        self._known.add(key, Codec.ZSTD, expires_at)
        return True

    async def _found_existing(
        self, key: str, found: ObjectStat | None, codec: Codec, deadline: Deadline
    ) -> bool:
        """Count a backend dedup hit and remember the object; False if it vanished."""
        if found is None:
            expires_at: float | None = self._fresh.expiry(time.time())
        else:
            touch = functools.partial(self._touch, key, deadline)
            expires_at = await self._fresh.keep_alive(found, touch)
        if expires_at is None:
            return False
        self.stats.dedup_backend_hits += 1
        self._known.add(key, codec, expires_at)
        return True

    async def _manifest_request(self, kind: str, attempt: Callable[[], Awaitable[_T]]) -> _T:
        return await self._run.request(kind, MANIFEST_KEY, attempt, self._retry.deadline(0))

    async def _stat(self, key: str, deadline: Deadline) -> ObjectStat | None:
        return await self._run.request("stat", key, lambda: self._backend.stat(key), deadline)

    async def _touch(self, key: str, deadline: Deadline) -> None:
        await self._run.request("touch", key, lambda: self._backend.touch(key), deadline)
        self.stats.objects_refreshed += 1

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
                    functools.partial(self._retrieve_one, claim), i, len(claims), "retrieve"
                )
                for i, claim in enumerate(claims)
            ]
        )

    async def _retrieve_one(self, claim: StorageDriverClaim) -> Payload:
        record = parse_claim_data(claim.claim_data, max_size=self._max_payload_size)
        digest, key = record.digest, record.key
        if record.key_id is None and self._require_encryption:
            raise IntegrityError(
                f"claim is for a plain (unencrypted) object, and this driver requires "
                f"encryption (require_encryption=True): refused unread [key={key}]",
                key=key,
            )
        cipher = cipher_for(self._ciphers, record.key_id, key=key)
        verified = VerifiedIdentity(key, record.key_id)
        data = self._verified.get(verified, record.size)
        if data is not None:
            self.stats.retrieval_cache_hits += 1
        else:
            data, joined = await self._reads.run(
                (verified, record.size),
                lambda: self._read_object(verified, digest, record.size, cipher, record.location),
            )
            if joined:
                self.stats.retrieval_inflight_hits += 1
        self.stats.payloads_retrieved += 1
        # Each caller gets its own Payload (callers may mutate it); parsing a
        # large one is a copy of its bytes, so it runs off the loop too.
        return await self._run.cpu(len(data), parse_payload, data, key)

    async def _read_object(
        self,
        verified: VerifiedIdentity,
        digest: bytes,
        size: int,
        cipher: ObjectCipher | None,
        location: str,
    ) -> bytes:
        key = verified.key
        deadline = self._retry.deadline(size)
        # No valid object for this claim is larger: a hostile one is refused
        # before it is read, not after it has been allocated.
        bound = max_chunked_object_size(size)
        try:
            obj = await self._run.request(
                "get", key, lambda: self._backend.get(key, max_size=bound), deadline
            )
        except ObjectNotFoundError as missing:
            self._known.discard(key)
            obj = await self._from_trash(key, missing, bound, deadline)
        self.stats.objects_read += 1
        self.stats.bytes_read += len(obj)
        if is_chunked(obj):
            data = await self._chunk_reader.read(
                obj,
                key=key,
                location=location,
                digest=digest,
                size=size,
                cipher=cipher,
                deadline=deadline,
            )
            await self._run.cpu(size, check_digest, data, digest, key, cipher)
        else:
            data = await self._run.cpu(size, decode_and_verify, obj, size, digest, key, cipher)
        self._verified.put(verified, data)
        return data

    async def _from_trash(
        self, key: str, missing: ObjectNotFoundError, bound: int, deadline: Deadline
    ) -> bytes:
        """Read the copy gc keeps in the trash (a claim handed out while gc decided)."""
        trashed = trash_key(key)
        try:
            return await self._run.request(
                "get", key, lambda: self._backend.get(trashed, max_size=bound), deadline
            )
        except ObjectNotFoundError:
            raise missing from None

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
