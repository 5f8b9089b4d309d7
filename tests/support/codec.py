"""A test encryption codec (AES-GCM, as the Temporal samples' codec), for the codec-server tests.

``casstore serve --codec tests.support.codec:EncryptionCodec`` loads it in a
server process; the tests use it in their converters.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

KEY = bytes(range(32))
KEY_ID = b"test-key-1"
ENCODING = b"binary/encrypted"


class EncryptionCodec(PayloadCodec):
    """Encrypts whole payloads with AES-GCM under a fixed test key."""

    def __init__(self, key: bytes = KEY) -> None:
        self._aes = AESGCM(key)

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        out = []
        for payload in payloads:
            nonce = os.urandom(12)
            sealed = self._aes.encrypt(nonce, payload.SerializeToString(), None)
            out.append(
                Payload(
                    metadata={"encoding": ENCODING, "encryption-key-id": KEY_ID},
                    data=nonce + sealed,
                )
            )
        return out

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        out = []
        for payload in payloads:
            if payload.metadata.get("encoding") != ENCODING:
                out.append(payload)
                continue
            if payload.metadata.get("encryption-key-id") != KEY_ID:
                raise ValueError(f"unknown key id {payload.metadata.get('encryption-key-id')!r}")
            plain = Payload()
            plain.ParseFromString(self._aes.decrypt(payload.data[:12], payload.data[12:], None))
            out.append(plain)
        return out
