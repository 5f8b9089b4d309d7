"""A local-disk driver that behaves like the example in Temporal's documentation.

Temporal's External Storage guide shows how to write a custom driver with a
local-disk example: each stored payload becomes one new file with a random
(uuid) name, the claim is that file's path, and retrieval reads the file back
and parses it. There is no deduplication, no compression and no check that the
bytes read are the bytes written, and the file I/O is plain blocking calls
inside the async methods. This module rebuilds that behaviour from the
description, as the "what a user would write first" reference point; it also
counts its file operations the way the benchmark counts requests elsewhere.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Sequence
from pathlib import Path

from temporalio.api.common.v1 import Payload
from temporalio.converter import (
    StorageDriver,
    StorageDriverClaim,
    StorageDriverRetrieveContext,
    StorageDriverStoreContext,
)

from benchmarks._s3 import Traffic


class DocLocalDiskDriver(StorageDriver):
    """One uuid-named file per payload; the claim is the file's path.

    Args:
        root: Directory the files are written to (created on first store).
        traffic: Where file operations and bytes are counted; a new counter
            if omitted.
    """

    def __init__(self, root: str | os.PathLike[str], traffic: Traffic | None = None) -> None:
        self._root = Path(root)
        self.traffic = traffic if traffic is not None else Traffic()

    def name(self) -> str:
        """Return ``"local-disk"``."""
        return "local-disk"

    def type(self) -> str:
        """Return ``"local-disk"``."""
        return "local-disk"

    async def store(
        self, context: StorageDriverStoreContext, payloads: Sequence[Payload]
    ) -> list[StorageDriverClaim]:
        """Write each payload to a new uuid-named file and return its path."""
        del context  # the documented example ignores where a payload comes from
        self._root.mkdir(parents=True, exist_ok=True)
        claims = []
        for payload in payloads:
            path = self._root / f"{uuid.uuid4()}.bin"
            data = payload.SerializeToString()
            # Blocking I/O on the event loop, as the documented example does.
            with path.open("wb") as file:
                file.write(data)
            self.traffic.requests["write"] += 1
            self.traffic.bytes_sent += len(data)
            claims.append(StorageDriverClaim(claim_data={"path": str(path)}))
        return claims

    async def retrieve(
        self, context: StorageDriverRetrieveContext, claims: Sequence[StorageDriverClaim]
    ) -> list[Payload]:
        """Read each claimed file back and parse it, unchecked."""
        del context
        payloads = []
        for claim in claims:
            with open(claim.claim_data["path"], "rb") as file:  # noqa: ASYNC230
                data = file.read()
            self.traffic.requests["read"] += 1
            self.traffic.bytes_received += len(data)
            payload = Payload()
            payload.ParseFromString(data)
            payloads.append(payload)
        return payloads
