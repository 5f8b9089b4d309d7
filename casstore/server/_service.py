"""What /decode, /download and /encode do, independent of the web framework.

The order of operations is the SDK's (and the Go handler's): on the way in,
codec-encoded references are codec-decoded, references are resolved through
the drivers' ``retrieve``, then the payload codec decodes what is not a
reference; on the way out, the codec encodes and the payloads at or above the
threshold are stored through the driver's ``store``. Only public SDK API is
used: ``StorageDriver.store``/``retrieve`` and the reference message.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from temporalio.api.common.v1 import Payload
from temporalio.converter import (
    PayloadCodec,
    StorageDriver,
    StorageDriverClaim,
    StorageDriverRetrieveContext,
    StorageDriverStoreContext,
    StorageDriverWorkflowInfo,
)

from casstore._driver import CasStorageDriver
from casstore._format.claims import parse_claim_data
from casstore.backends._aio import gather_cancel_on_error
from casstore.errors import (
    BackendUnavailableError,
    CasstoreError,
    ClaimError,
    IntegrityError,
    MissingKeyError,
    PayloadTooLargeError,
)
from casstore.server._namespaces import ClaimNamespace, check_namespace
from casstore.server._protocol import ProtocolError
from casstore.server._references import (
    check_reference_to_write,
    is_encoded_reference,
    is_reference,
    make_reference,
    read_reference,
    rewrap_decoded,
    unwrap_for_codec,
)

_NOT_FOUND_CODES = {"NoSuchKey", "NotFound", "404"}


class PayloadService:
    """Resolves and stores payloads for one codec server.

    Args:
        drivers: The storing driver first, then drivers used only to read.
        codec: The workers' payload codec, or ``None``.
        payload_size_threshold: ``/encode`` stores payloads at least this large.
        claim_namespace: Says which namespace other drivers' claims belong to.
        max_response_bytes: Most payload bytes one response may carry.
        inline_max_bytes: Under ``preserveStorageRefs``, references to payloads
            at most this large are resolved anyway, so the Web UI shows small
            values instead of a download button; 0 keeps every reference.
    """

    def __init__(
        self,
        drivers: Sequence[StorageDriver],
        *,
        codec: PayloadCodec | None,
        payload_size_threshold: int,
        claim_namespace: ClaimNamespace | None,
        max_response_bytes: int,
        inline_max_bytes: int = 0,
        max_references: int = 1000,
        max_reads_per_request: int = 8,
    ) -> None:
        self._drivers = {driver.name(): driver for driver in drivers}
        self._store_driver = drivers[0]
        self._codec = codec
        self._threshold = payload_size_threshold
        self._claim_namespace = claim_namespace
        self._max_response_bytes = max_response_bytes
        self._inline_max_bytes = inline_max_bytes
        self._max_references = max_references
        self._max_reads = max_reads_per_request

    def cost(self, payloads: Sequence[Payload], operation: str, *, preserve: bool) -> int:
        """The payload bytes a request will resolve, as its references say (0 if unknown).

        An estimate made before anything is read, for admission; the response
        size is checked again against what was read.
        """
        if operation == "encode" or (preserve and not self._inline_max_bytes):
            return 0
        total = 0
        for payload in payloads:
            if not is_reference(payload) or is_encoded_reference(payload):
                continue
            try:
                reference = read_reference(payload, "")
            except ProtocolError:
                continue  # reported with its position when the request runs
            driver = self._drivers.get(reference.driver_name)
            if driver is None:
                continue
            size = _stored_size(driver, dict(reference.claim_data), payload) or 0
            if not preserve or size <= self._inline_max_bytes:
                total += size
        return total

    async def decode(
        self, payloads: list[Payload], namespace: str, *, preserve_references: bool
    ) -> list[Payload]:
        """Resolve references (unless preserved), then codec-decode the rest."""
        payloads = await self._decode_encoded_references(payloads)
        if not preserve_references:
            payloads = await self._retrieve(payloads, namespace)
        elif self._inline_max_bytes:
            payloads = await self._retrieve(payloads, namespace, up_to=self._inline_max_bytes)
        return await self._codec_decode(payloads)

    async def download(self, payloads: list[Payload], namespace: str) -> list[Payload]:
        """Return the stored payloads every input references, codec-decoded."""
        payloads = await self._decode_encoded_references(payloads)
        for i, payload in enumerate(payloads):
            if not is_reference(payload):
                raise ProtocolError(
                    400,
                    f"payloads[{i}] is not a storage reference; /download takes only "
                    "references (use /decode for other payloads)",
                )
        return await self._codec_decode(await self._retrieve(payloads, namespace))

    async def encode(self, payloads: list[Payload], namespace: str) -> list[Payload]:
        """Codec-encode, then store what is at or above the threshold (the inverse of decode).

        A payload that already is a storage reference is checked and passed through
        as it is: storing it again would hand workers a reference to a reference,
        which they resolve once and then cannot read.
        """
        references = set()
        for i, payload in enumerate(payloads):
            if is_reference(payload):
                check_reference_to_write(payload, f"payloads[{i}]")
                references.add(i)
        originals = payloads
        if self._codec is not None:
            payloads = await self._run_codec(self._codec.encode, payloads, "encode")
        context = StorageDriverStoreContext(target=StorageDriverWorkflowInfo(namespace=namespace))
        driver = self._store_driver
        positions = [
            i
            for i, p in enumerate(payloads)
            if i not in references and p.ByteSize() >= self._threshold
        ]
        sizes = {i: payloads[i].ByteSize() for i in positions}

        async def store(i: int) -> Payload:
            try:
                [claim] = await driver.store(context, [payloads[i]])
            except Exception as exc:
                raise _driver_failure(exc, f"payloads[{i}]", driver, "store") from exc
            return make_reference(driver.name(), claim.claim_data, sizes[i])

        stored = await gather_cancel_on_error([store(i) for i in positions])
        result = list(payloads)
        for i in references:
            result[i] = originals[i]
        for i, reference in zip(positions, stored, strict=True):
            result[i] = reference
        return result

    async def _decode_encoded_references(self, payloads: list[Payload]) -> list[Payload]:
        marked = [i for i, p in enumerate(payloads) if is_encoded_reference(p)]
        if not marked:
            return payloads
        if self._codec is None:
            raise ProtocolError(
                422,
                f"payloads[{marked[0]}] is a codec-encoded storage reference, but this server "
                "has no payload codec; start it with the workers' codec",
            )
        decoded = await self._run_codec(
            self._codec.decode, [unwrap_for_codec(payloads[i]) for i in marked], "decode"
        )
        result = list(payloads)
        for i, reference in zip(marked, decoded, strict=True):
            result[i] = rewrap_decoded(payloads[i], reference, f"payloads[{i}]")
        return result

    async def _retrieve(
        self, payloads: list[Payload], namespace: str, *, up_to: int | None = None
    ) -> list[Payload]:
        """Replace references by the payloads they stand for; read each distinct one once.

        With ``up_to``, only references to payloads at most that large are
        resolved (the size a casstore claim records, else the reference's
        ``externalPayloads`` size); the others stay as they are.
        """
        wanted: dict[tuple[str, tuple[tuple[str, str], ...]], list[int]] = {}
        claimed_bytes = 0
        for i, payload in enumerate(payloads):
            if not is_reference(payload):
                continue
            where = f"payloads[{i}]"
            reference = read_reference(payload, where)
            driver = self._drivers.get(reference.driver_name)
            if driver is None:
                raise ProtocolError(
                    400,
                    f"{where} references driver {reference.driver_name!r}, which this server "
                    f"does not have (it has: {', '.join(self._drivers)})",
                )
            claim_data = dict(reference.claim_data)
            size = _stored_size(driver, claim_data, payload)
            if up_to is not None and (size is None or size > up_to):
                continue
            check_namespace(driver, claim_data, namespace, where, self._claim_namespace)
            claimed_bytes += size or 0
            wanted.setdefault((driver.name(), tuple(sorted(claim_data.items()))), []).append(i)
            if len(wanted) > self._max_references:
                raise ProtocolError(
                    413,
                    f"the request references more than {self._max_references} distinct stored "
                    f"payloads (max_references), from {where} on; ask for fewer at a time",
                )
        if not wanted:
            return payloads
        self._check_response_size(claimed_bytes)

        async def fetch(name: str, claim_items: tuple[tuple[str, str], ...], i: int) -> Payload:
            driver = self._drivers[name]
            claim_data = dict(claim_items)
            try:
                [found] = await driver.retrieve(
                    StorageDriverRetrieveContext(), [StorageDriverClaim(claim_data=claim_data)]
                )
            except Exception as exc:
                raise _driver_failure(
                    exc, f"payloads[{i}]", driver, "retrieve", key=_key_of(driver, claim_data)
                ) from exc
            return found

        # A few reads at a time per request, not one task per reference: a
        # request for thousands of objects then neither floods the driver's
        # queue ahead of other requests nor outlives its first missing object.
        jobs = list(wanted.items())
        found: list[Payload] = [Payload()] * len(jobs)
        pending = iter(range(len(jobs)))

        async def reader() -> None:
            for n in pending:
                (name, items), positions = jobs[n]
                found[n] = await fetch(name, items, positions[0])

        await gather_cancel_on_error([reader() for _ in range(min(self._max_reads, len(jobs)))])
        result = list(payloads)
        total = 0
        for positions, payload in zip(wanted.values(), found, strict=True):
            for i in positions:
                copy = Payload()
                copy.CopyFrom(payload)
                result[i] = copy
                total += payload.ByteSize()
        self._check_response_size(total)
        return result

    def _check_response_size(self, size: int) -> None:
        if size > self._max_response_bytes:
            raise ProtocolError(
                413,
                f"the referenced payloads add up to {size} bytes, above this server's "
                f"max_response_bytes {self._max_response_bytes}; ask for fewer at a time",
            )

    async def _codec_decode(self, payloads: list[Payload]) -> list[Payload]:
        if self._codec is None:
            return payloads
        positions = [i for i, p in enumerate(payloads) if not is_reference(p)]
        if not positions:
            return payloads
        decoded = await self._run_codec(
            self._codec.decode, [payloads[i] for i in positions], "decode"
        )
        result = list(payloads)
        for i, payload in zip(positions, decoded, strict=True):
            result[i] = payload
        return result

    async def _run_codec(
        self,
        step: Callable[[Sequence[Payload]], Awaitable[list[Payload]]],
        payloads: list[Payload],
        verb: str,
    ) -> list[Payload]:
        try:
            out = await step(payloads)
        except Exception as exc:
            raise ProtocolError(
                422, f"the payload codec could not {verb} the payloads: {type(exc).__name__}: {exc}"
            ) from exc
        if len(out) != len(payloads):
            raise ProtocolError(
                500, f"the payload codec returned {len(out)} payloads for {len(payloads)}"
            )
        return list(out)


def _stored_size(
    driver: StorageDriver, claim_data: dict[str, str], reference: Payload
) -> int | None:
    """The stored payload's size: a casstore claim's (verified on read), else the reference's."""
    if isinstance(driver, CasStorageDriver):
        try:
            return parse_claim_data(claim_data, max_size=1 << 62).size
        except ClaimError:
            return None  # check_namespace reports the malformed claim
    if reference.external_payloads:
        return reference.external_payloads[0].size_bytes
    return None


def _key_of(driver: StorageDriver, claim_data: dict[str, str]) -> str | None:
    """The object key a claim points at, to name it in errors."""
    if isinstance(driver, CasStorageDriver):
        try:
            return parse_claim_data(claim_data, max_size=1 << 62).key
        except ClaimError:
            return None
    return claim_data.get("key") or claim_data.get("object_name")


def _driver_failure(
    exc: Exception, where: str, driver: StorageDriver, verb: str, *, key: str | None = None
) -> ProtocolError:
    """Translate a driver's exception into the response a client should get."""
    label = f"{where}: {verb} through driver {driver.name()!r} failed: {exc}"
    if isinstance(exc, ProtocolError):
        return exc
    if isinstance(exc, ClaimError):
        return ProtocolError(400, label, key=key)
    if isinstance(exc, KeyError):  # how drivers index a claim: a field the claim lacks
        return ProtocolError(
            400, f"{where}: the claim lacks field {exc} that driver {driver.name()!r} needs"
        )
    if isinstance(exc, MissingKeyError):
        return ProtocolError(
            500, f"{label}; start the server with the workers' keyring (--keyring)", key=key
        )
    if isinstance(exc, PayloadTooLargeError):
        return ProtocolError(413, label, key=key)
    if _is_not_found(exc):
        return ProtocolError(404, label, key=key)
    if isinstance(exc, IntegrityError):
        return ProtocolError(502, label, key=key)
    if isinstance(exc, BackendUnavailableError):
        return ProtocolError(503, label, key=key)
    if isinstance(exc, CasstoreError):
        return ProtocolError(502, label, key=key)
    causes: list[str] = []
    cause: BaseException | None = exc.__cause__
    while cause is not None and len(causes) < 3:
        causes.append(f"{type(cause).__name__}: {cause}")
        cause = cause.__cause__
    detail = f" (caused by {'; '.join(causes)})" if causes else ""
    return ProtocolError(502, f"{label}{detail}", key=key)


def _is_not_found(exc: BaseException | None) -> bool:
    while exc is not None:
        if isinstance(exc, FileNotFoundError):
            return True
        response = getattr(exc, "response", None)
        if isinstance(response, dict):
            code = response.get("Error", {}).get("Code")
            if code in _NOT_FOUND_CODES:
                return True
        exc = exc.__cause__
    return False
