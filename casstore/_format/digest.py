"""Content digests: what names a payload in keys and claims.

The digest is BLAKE3-256 over the serialized payload; with a keyring it is
keyed BLAKE3-256 under a digest key derived from the keyring key (so a digest
says nothing to someone without the key, while equal payloads still get equal
digests within one key, which dedup needs). This is the one place a content
digest is computed: the driver, the cipher and ``casstore verify`` all hash
through :func:`content_hasher`. See docs/formats.md ("Digests").
"""

from __future__ import annotations

import blake3

DIGEST_SIZE = 32
"""Bytes in a content digest (BLAKE3-256)."""
DIGEST_KEY_CONTEXT = "casstore 2026-11-25 content digest key v1"
"""BLAKE3 key-derivation context of the digest key; stored format, never change it."""
MULTITHREAD_HASH_SIZE = 1 << 20
"""Payloads at least this large are hashed with BLAKE3's multi-threaded mode."""


def derive_digest_key(key: bytes) -> bytes:
    """Return the digest key derived from the keyring key ``key``."""
    return blake3.blake3(key, derive_key_context=DIGEST_KEY_CONTEXT).digest()


def content_hasher(size: int, digest_key: bytes | None = None) -> blake3.blake3:
    """Return a fresh hasher for ``size`` bytes of content: plain, or keyed under ``digest_key``.

    For callers that feed the content in pieces (decompressing as they go);
    everyone else calls :func:`content_digest`.
    """
    threads = blake3.blake3.AUTO if size >= MULTITHREAD_HASH_SIZE else 1
    if digest_key is None:
        return blake3.blake3(max_threads=threads)
    return blake3.blake3(key=digest_key, max_threads=threads)


def content_digest(data: bytes | memoryview, digest_key: bytes | None = None) -> bytes:
    """Return the digest that names ``data``: BLAKE3-256, keyed when ``digest_key`` is given."""
    return content_hasher(len(data), digest_key).update(data).digest()
