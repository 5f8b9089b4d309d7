"""The driver's store path: hash, dedup, and write an object only when it is new."""

from __future__ import annotations

import functools
import time

from temporalio.api.common.v1 import Payload
from temporalio.converter import StorageDriverClaim

from casstore._cache import KnownObjects, SingleFlight, VerifiedIdentity, VerifiedPayloads
from casstore._chunking import ChunkWriter
from casstore._crypto import Ciphers
from casstore._deadline import Deadline, RetryPolicy
from casstore._format.claims import claim_data_for
from casstore._format.digest import content_digest
from casstore._format.encrypted import ObjectCipher
from casstore._format.header import HEADER_SIZE, Codec
from casstore._format.keys import object_key
from casstore._freshness import Freshness
from casstore._requests import Requests
from casstore._stats import DriverStats
from casstore.backends._base import Backend, ObjectStat, describe_backend, describe_suffix
from casstore.errors import BackendError, PayloadTooLargeError

WRITE_FIRST_MAX_SIZE = 64 * 1024
"""Payloads up to this size are written without an existence check first, when the
backend's create-if-absent reports existing objects (``Backend.conditional_writes``);
the check (for the object's age) follows only when the write finds it there."""
_STORE_ATTEMPTS = 3  # an object gc moves away while we look at it is written anew


class StorePath:
    """Stores one payload at a time for a :class:`~casstore.CasStorageDriver`.

    Holds nothing of its own but the single flight of concurrent stores: the
    caches, counters and runner are the driver's.
    """

    def __init__(
        self,
        *,
        backend: Backend,
        run: Requests,
        stats: DriverStats,
        retry: RetryPolicy,
        fresh: Freshness,
        known: KnownObjects[Codec],
        verified: VerifiedPayloads,
        ciphers: Ciphers | None,
        max_payload_size: int,
        chunk_writer: ChunkWriter,
    ) -> None:
        self._backend = backend
        self._run = run
        self.stats = stats
        self._retry = retry
        self._fresh = fresh
        self._known = known
        self._verified = verified
        self._ciphers = ciphers
        self._max_payload_size = max_payload_size
        self._chunk_writer = chunk_writer
        self._stores: SingleFlight[str, Codec] = SingleFlight()

    async def store_one(
        self, location: str, payload: Payload, waited: float = 0.0
    ) -> StorageDriverClaim:
        """Store one payload; ``waited`` is what its call spent before (see ``Deadline.charge``)."""
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
                self._store_object, verified, digest, data, cipher, location, payload, waited
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
        waited: float,
    ) -> Codec:
        """Make sure the object exists (write or find it); return its codec."""
        key = verified.key
        deadline = self._retry.deadline(len(data))
        deadline.charge(waited, "waiting for the store's lifecycle manifest")
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

    async def vouch(self, key: str, deadline: Deadline) -> bool:
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

    async def _stat(self, key: str, deadline: Deadline) -> ObjectStat | None:
        return await self._run.request("stat", key, lambda: self._backend.stat(key), deadline)

    async def _touch(self, key: str, deadline: Deadline) -> None:
        await self._run.request("touch", key, lambda: self._backend.touch(key), deadline)
        self.stats.objects_refreshed += 1
