"""The driver's retrieve path: read an object, check it against its claim, parse it."""

from __future__ import annotations

from temporalio.api.common.v1 import Payload
from temporalio.converter import StorageDriverClaim

from casstore._cache import KnownObjects, SingleFlight, VerifiedIdentity, VerifiedPayloads
from casstore._chunk_read import ChunkReader
from casstore._crypto import Ciphers, cipher_for
from casstore._deadline import Deadline, RetryPolicy
from casstore._format.chunked import is_chunked, max_chunked_object_size
from casstore._format.claims import parse_claim_data
from casstore._format.encrypted import ObjectCipher
from casstore._format.header import Codec
from casstore._format.trash import trash_key
from casstore._requests import Requests
from casstore._stats import DriverStats
from casstore._verify import check_digest, decode_and_verify, parse_payload
from casstore.backends._base import Backend
from casstore.errors import IntegrityError, ObjectNotFoundError


class ReadPath:
    """Retrieves one claim at a time for a :class:`~casstore.CasStorageDriver`.

    Holds nothing of its own but the single flight of concurrent reads: the
    caches, counters and runner are the driver's.
    """

    def __init__(
        self,
        *,
        backend: Backend,
        run: Requests,
        stats: DriverStats,
        retry: RetryPolicy,
        known: KnownObjects[Codec],
        verified: VerifiedPayloads,
        ciphers: Ciphers | None,
        require_encryption: bool,
        max_payload_size: int,
        chunk_reader: ChunkReader,
    ) -> None:
        self._backend = backend
        self._run = run
        self.stats = stats
        self._retry = retry
        self._known = known
        self._verified = verified
        self._ciphers = ciphers
        self._require_encryption = require_encryption
        self._max_payload_size = max_payload_size
        self._chunk_reader = chunk_reader
        # Keyed by all that changes the outcome (identity and size): no claim can
        # fail another, nor get bytes another claim's checks vouched for.
        self._reads: SingleFlight[tuple[VerifiedIdentity, int], bytes] = SingleFlight()

    async def retrieve_one(self, claim: StorageDriverClaim) -> Payload:
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
