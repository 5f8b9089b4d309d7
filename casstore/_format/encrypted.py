"""Object format 2: the body of format 1, sealed with one keyring key.

From each 256-bit keyring key ``K`` two independent keys are derived with
BLAKE3's key derivation mode (a different context string each, so neither
reveals anything about the other or about ``K``):

* the **digest key** (:mod:`casstore._format.digest`): content digests are
  keyed BLAKE3-256 under it;
* the **encryption key**: object bodies are sealed with AES-256-GCM-SIV
  (RFC 8452), nonce = the first 12 bytes of the keyed digest, associated data
  = the object header followed by the object key.

GCM-SIV is deterministic for a given (nonce, plaintext, associated data) --
equal payloads give equal objects, which dedup needs -- and stays safe when a
nonce repeats with a different plaintext (it then only reveals whether the two
plaintexts are equal), which can happen here when two writers compress the same
payload differently. Binding the object key and header as associated data makes
an object fail authentication anywhere but under its own key, so two objects'
contents cannot be swapped, and a header cannot be altered.

This module also holds the entry points that pick format 1 or 2
(:func:`encode_stored`, :func:`decode_object`). See docs/formats.md
("Object format 2").
"""

from __future__ import annotations

import blake3

from casstore._format.compression import compress, decode_body, encode_object
from casstore._format.digest import content_digest, derive_digest_key
from casstore._format.header import Codec, encrypted_header, read_header
from casstore.errors import ConfigurationError, IntegrityError

ENCRYPTION_KEY_CONTEXT = "casstore 2026-11-25 object encryption key v1"
"""BLAKE3 key-derivation context of the encryption key; stored format, never change it."""
NONCE_SIZE = 12
TAG_SIZE = 16


def _aead_class() -> type:
    try:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCMSIV
    except ImportError as exc:
        raise ConfigurationError(
            "encryption needs the cryptography package: pip install 'casstore[encryption]'"
        ) from exc
    return AESGCMSIV


def associated_data(header: bytes | memoryview, key: str) -> bytes:
    """What a sealed body is bound to: its object's header, then its object key."""
    return bytes(header) + key.encode("utf-8")


class ObjectCipher:
    """The derived keys of one keyring key: keyed digests, sealing and opening.

    Args:
        key_id: The keyring key's id (named in errors; stored by the caller).
        key: The keyring key, 32 bytes.

    Raises:
        ConfigurationError: If ``cryptography`` is missing or its OpenSSL lacks
            AES-GCM-SIV (OpenSSL 3.2 or later is needed; the wheels bundle it).
    """

    __slots__ = ("_aead", "_digest_key", "key_id")

    def __init__(self, key_id: str, key: bytes) -> None:
        aead_class = _aead_class()
        self.key_id = key_id
        self._digest_key = derive_digest_key(key)
        encryption_key = blake3.blake3(key, derive_key_context=ENCRYPTION_KEY_CONTEXT).digest()
        try:
            self._aead = aead_class(encryption_key)
        except Exception as exc:  # cryptography's UnsupportedAlgorithm, by OpenSSL build
            raise ConfigurationError(
                f"this cryptography/OpenSSL build has no AES-GCM-SIV [key_id={key_id}]: {exc}"
            ) from exc

    def __repr__(self) -> str:
        return f"ObjectCipher(key_id={self.key_id!r})"

    @property
    def digest_key(self) -> bytes:
        """The key content digests are keyed with (never stored)."""
        return self._digest_key

    def digest(self, data: bytes | memoryview) -> bytes:
        """Keyed BLAKE3-256 of ``data`` under this key's digest key."""
        return content_digest(data, self._digest_key)

    def seal(self, body: bytes | memoryview, *, digest: bytes, associated: bytes) -> bytes:
        """Encrypt and authenticate ``body``; returns ciphertext and 16-byte tag."""
        return self._aead.encrypt(digest[:NONCE_SIZE], body, associated)  # type: ignore[no-any-return]

    def open(
        self, sealed: bytes | memoryview, *, digest: bytes, associated: bytes, key: str
    ) -> bytes:
        """Check and decrypt what :meth:`seal` produced.

        Raises:
            IntegrityError: If authentication fails: the object was altered,
                belongs under another key, or was sealed with a different key
                of the same id.
        """
        from cryptography.exceptions import InvalidTag

        try:
            return self._aead.decrypt(digest[:NONCE_SIZE], sealed, associated)  # type: ignore[no-any-return]
        except InvalidTag:
            raise IntegrityError(
                f"encrypted object failed authentication: it was altered, moved from another "
                f"key, or sealed with a different key named {self.key_id!r} [key={key}]",
                key=key,
            ) from None


def encode_encrypted_object(
    data: bytes,
    compression_level: int | None,
    cipher: ObjectCipher,
    *,
    digest: bytes,
    key: str,
) -> tuple[Codec, bytes]:
    """Encode a serialized payload as an encrypted (format 2) object: compress, then seal.

    Args:
        data: The serialized payload.
        compression_level: zstd level, or ``None`` to always store raw.
        cipher: The active key's cipher.
        digest: ``cipher.digest(data)``, which the nonce is taken from.
        key: The object key, bound in as associated data.

    Returns:
        The codec chosen and the object bytes (header included).
    """
    codec, body = compress(data, compression_level)
    header = encrypted_header(codec, cipher.key_id)
    sealed = cipher.seal(body, digest=digest, associated=associated_data(header, key))
    return codec, header + sealed


def encode_stored(
    data: bytes, compression_level: int | None, cipher: ObjectCipher | None, digest: bytes, key: str
) -> tuple[Codec, bytes]:
    """Encode ``data`` as a plain object, or an encrypted one when ``cipher`` is given."""
    if cipher is None:
        return encode_object(data, compression_level)
    return encode_encrypted_object(data, compression_level, cipher, digest=digest, key=key)


def decode_object(
    obj: bytes,
    *,
    size: int,
    key: str,
    cipher: ObjectCipher | None = None,
    digest: bytes = b"",
) -> bytes:
    """Decode a stored object (authenticating and decrypting it if encrypted).

    Args:
        obj: The object as read from the backend.
        size: The serialized payload size the claim promises.
        key: The object's key, for error messages and as associated data.
        cipher: The cipher of the key the claim names, or None for a plain claim.
        digest: The claimed (keyed) digest, whose prefix is the nonce; needed
            with ``cipher``.

    Returns:
        The serialized payload, exactly ``size`` bytes long. Its digest is not
        checked here.

    Raises:
        IntegrityError: If the header is bad, the object is encrypted when the
            claim is not (or the reverse, or with another key id), fails
            authentication, is not valid for its codec, or does not decode to
            exactly ``size`` bytes.
    """
    header = read_header(obj, key=key)
    body: bytes | memoryview = memoryview(obj)[header.size :]
    if cipher is None:
        if header.key_id is not None:
            raise IntegrityError(
                f"stored object is encrypted with key {header.key_id!r} but its claim is "
                f"not encrypted [key={key}]",
                key=key,
            )
    else:
        if header.key_id != cipher.key_id:
            found = "not encrypted" if header.key_id is None else f"key {header.key_id!r}"
            raise IntegrityError(
                f"claim says the object is encrypted with key {cipher.key_id!r}, the stored "
                f"object says {found} [key={key}]",
                key=key,
            )
        associated = associated_data(memoryview(obj)[: header.size], key)
        body = cipher.open(body, digest=digest, associated=associated, key=key)
    return decode_body(header.codec, body, size=size, key=key)
