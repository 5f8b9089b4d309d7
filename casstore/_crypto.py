"""Keyed digests and deterministic authenticated encryption for one keyring key.

From each 256-bit keyring key ``K`` two independent keys are derived with
BLAKE3's key derivation mode (a different context string each, so neither
reveals anything about the other or about ``K``):

* the **digest key**: content digests are keyed BLAKE3-256 under it, so a
  digest says nothing to someone without the key, yet equal payloads still get
  equal digests (and keys) within one keyring key -- dedup works unchanged;
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
"""

from __future__ import annotations

import blake3

from casstore._keyring import KeyRing
from casstore.errors import ConfigurationError, IntegrityError, MissingKeyError

__all__ = ["Ciphers", "ObjectCipher", "cipher_for", "plain_digest"]

DIGEST_KEY_CONTEXT = "casstore 2026-11-25 content digest key v1"
ENCRYPTION_KEY_CONTEXT = "casstore 2026-11-25 object encryption key v1"
NONCE_SIZE = 12
TAG_SIZE = 16
MULTITHREAD_HASH_SIZE = 1 << 20
"""Payloads at least this large are hashed with BLAKE3's multi-threaded mode."""


def plain_digest(data: bytes) -> bytes:
    """BLAKE3-256 of ``data``: the content digest of an unencrypted object."""
    return _hasher(None, len(data)).update(data).digest()


def _hasher(key: bytes | None, size: int) -> blake3.blake3:
    threads = blake3.blake3.AUTO if size >= MULTITHREAD_HASH_SIZE else 1
    if key is None:
        return blake3.blake3(max_threads=threads)
    return blake3.blake3(key=key, max_threads=threads)


def _aead_class() -> type:
    try:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCMSIV
    except ImportError as exc:
        raise ConfigurationError(
            "encryption needs the cryptography package: pip install 'casstore[encryption]'"
        ) from exc
    return AESGCMSIV


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
        self._digest_key: bytes = blake3.blake3(key, derive_key_context=DIGEST_KEY_CONTEXT).digest()
        encryption_key = blake3.blake3(key, derive_key_context=ENCRYPTION_KEY_CONTEXT).digest()
        try:
            self._aead = aead_class(encryption_key)
        except Exception as exc:  # cryptography's UnsupportedAlgorithm, by OpenSSL build
            raise ConfigurationError(
                f"this cryptography/OpenSSL build has no AES-GCM-SIV [key_id={key_id}]: {exc}"
            ) from exc

    def __repr__(self) -> str:
        return f"ObjectCipher(key_id={self.key_id!r})"

    def digest(self, data: bytes) -> bytes:
        """Keyed BLAKE3-256 of ``data`` under this key's digest key."""
        return _hasher(self._digest_key, len(data)).update(data).digest()

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


def cipher_for(ciphers: Ciphers | None, key_id: str | None, *, key: str) -> ObjectCipher | None:
    """Return the cipher a claim's key id calls for (None for a plain claim).

    Raises:
        MissingKeyError: The claim names a key id and there is no keyring, or
            the keyring lacks that id.
    """
    if key_id is None:
        return None
    if ciphers is None:
        raise MissingKeyError(
            f"object is encrypted with key {key_id!r} but this driver has no keyring; "
            f"pass keyring= with that key [key_id={key_id}, key={key}]",
            key_id=key_id,
            key=key,
        )
    return ciphers.get(key_id, key=key)


class Ciphers:
    """An :class:`ObjectCipher` per key of a keyring, built once each."""

    __slots__ = ("_by_id", "keyring")

    def __init__(self, keyring: KeyRing) -> None:
        if not isinstance(keyring, KeyRing):
            raise ConfigurationError(
                f"keyring must be a casstore.KeyRing, got {type(keyring).__name__}"
            )
        self.keyring = keyring
        self._by_id = {
            key_id: ObjectCipher(key_id, keyring.key(key_id)) for key_id in keyring.key_ids
        }

    @property
    def active(self) -> ObjectCipher:
        """The cipher of the keyring's active key: what new objects are sealed with."""
        return self._by_id[self.keyring.active_id]

    def get(self, key_id: str, *, key: str) -> ObjectCipher:
        """Return the cipher for ``key_id``.

        Raises:
            MissingKeyError: If the keyring has no key of that id; the message
                names it, the keyring's ids and the object key.
        """
        cipher = self._by_id.get(key_id)
        if cipher is None:
            raise MissingKeyError(
                f"object is encrypted with key {key_id!r}, which this keyring does not hold "
                f"[key_id={key_id}, keyring={list(self.keyring.key_ids)}, key={key}]",
                key_id=key_id,
                key=key,
            )
        return cipher
