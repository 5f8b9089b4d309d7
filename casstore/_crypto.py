"""The ciphers of a keyring: one :class:`~casstore._format.encrypted.ObjectCipher` per key.

The format they read and write (keyed digests, AES-256-GCM-SIV sealing) is
:mod:`casstore._format.encrypted`; this module only picks the cipher a claim
or a writer calls for.
"""

from __future__ import annotations

from casstore._format.encrypted import ObjectCipher
from casstore._keyring import KeyRing
from casstore.errors import ConfigurationError, MissingKeyError

__all__ = ["Ciphers", "cipher_for"]


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
