"""KeyRing: named 256-bit keys, one active for writing, all usable for reading.

A keyring's text form (environment variable or file) is a list of entries
``key-id:base64-key`` separated by commas or newlines; blank lines and lines
starting with ``#`` are ignored. The **first entry is the active key**, so a
rotation prepends the new key and keeps the old ones for reading::

    CASSTORE_KEYRING="k2026b:q0m1...=,k2026a:Zx8F...="

A key is 32 random bytes in base64 (standard or URL-safe alphabet, padding
optional), e.g. from ``openssl rand -base64 32``. Key ids are stored in every
encrypted object and claim, so they are short and plain:
``[A-Za-z0-9][A-Za-z0-9._-]{0,31}``.

Key material is never printed: ``repr`` shows the key ids only, and error
messages about a malformed key name its id or line, never its value.
"""

from __future__ import annotations

import base64
import binascii
import os
import stat
from collections.abc import Iterable, Mapping

from casstore._format.header import KEY_ID_RE, MAX_KEY_ID_LENGTH, validate_key_id
from casstore.errors import ConfigurationError

__all__ = ["DEFAULT_KEYRING_ENV", "KEY_SIZE", "KeyRing"]

KEY_SIZE = 32
"""Every key is 256 bits."""
DEFAULT_KEYRING_ENV = "CASSTORE_KEYRING"
"""The environment variable :meth:`KeyRing.from_env` reads by default."""

_MAX_KEYRING_TEXT = 64 * 1024


class KeyRing:
    """Named 256-bit keys: one active key encrypts new objects, every key decrypts.

    Args:
        keys: Key id to 32 bytes of key material. Ids must be valid key ids.
        active: The id of the key that encrypts new objects; defaults to the
            first id in ``keys`` (mappings keep insertion order).

    Raises:
        ConfigurationError: For no keys, an invalid id, key material that is not
            exactly 32 bytes, or an ``active`` id not in ``keys``.
    """

    __slots__ = ("_active", "_keys")

    def __init__(self, keys: Mapping[str, bytes], *, active: str | None = None) -> None:
        if not isinstance(keys, Mapping) or not keys:
            raise ConfigurationError("a keyring needs at least one key")
        material: dict[str, bytes] = {}
        for key_id, key in keys.items():
            validate_key_id(key_id)
            if not isinstance(key, bytes | bytearray | memoryview):
                raise ConfigurationError(
                    f"key material must be bytes, got {type(key).__name__} [key_id={key_id}]"
                )
            if len(key) != KEY_SIZE:
                raise ConfigurationError(
                    f"key must be {KEY_SIZE} bytes (256 bits), got {len(key)} [key_id={key_id}]"
                )
            material[key_id] = bytes(key)
        if active is None:
            active = next(iter(material))
        if active not in material:
            raise ConfigurationError(
                f"active key {active!r} is not in the keyring [key_ids={list(material)}]"
            )
        self._keys = material
        self._active = active

    @classmethod
    def from_bytes(cls, key: bytes, *, key_id: str) -> KeyRing:
        """Build a keyring holding one key, which is active.

        Args:
            key: 32 bytes of key material.
            key_id: The key's id, stored in every object and claim it encrypts.
        """
        return cls({key_id: key})

    @classmethod
    def from_text(cls, text: str, *, source: str = "keyring text") -> KeyRing:
        """Parse the text form (see the module docs); the first entry is active.

        Args:
            text: ``id:base64`` entries separated by commas or newlines.
            source: Where the text came from, for error messages (never the text).

        Raises:
            ConfigurationError: Naming the source and the entry (by position and
                id) that is malformed, duplicated or not 32 bytes.
        """
        if not isinstance(text, str):
            raise ConfigurationError(f"keyring text must be a string [source={source}]")
        if len(text) > _MAX_KEYRING_TEXT:
            raise ConfigurationError(
                f"keyring text is {len(text)} characters, above {_MAX_KEYRING_TEXT} "
                f"[source={source}]"
            )
        keys: dict[str, bytes] = {}
        for position, entry in enumerate(_entries(text), start=1):
            key_id, sep, encoded = entry.partition(":")
            key_id = key_id.strip()
            where = f"source={source}, entry={position}"
            if not sep:
                # The entry may be a bare key: say where, never what.
                raise ConfigurationError(f"keyring entry is not 'key-id:base64-key' [{where}]")
            if not KEY_ID_RE.fullmatch(key_id):
                # Not quoted: a mangled entry may have key material where the id goes.
                raise ConfigurationError(
                    f"key id must be 1-{MAX_KEY_ID_LENGTH} characters of [A-Za-z0-9._-] "
                    f"starting with a letter or digit [{where}]"
                )
            if key_id in keys:
                raise ConfigurationError(f"key id {key_id!r} appears twice [{where}]")
            keys[key_id] = _decode_key(encoded.strip(), f"{where}, key_id={key_id}")
        if not keys:
            raise ConfigurationError(f"keyring has no keys [source={source}]")
        return cls(keys)

    @classmethod
    def from_env(cls, var: str = DEFAULT_KEYRING_ENV) -> KeyRing:
        """Read a keyring in text form from the environment variable ``var``.

        Raises:
            ConfigurationError: If the variable is unset or empty, or malformed.
        """
        text = os.environ.get(var)
        if not text:
            raise ConfigurationError(f"environment variable {var} holds no keyring")
        return cls.from_text(text, source=f"${var}")

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> KeyRing:
        """Read a keyring in text form from a file.

        Only a regular file (or a symlink to one, as mounted secrets are) of
        at most 64 KiB is read: a device, pipe or socket could be read without
        end (``/dev/zero``) or block forever (a FIFO with no writer).

        Raises:
            ConfigurationError: If the file is not a regular file, is larger
                than 64 KiB, cannot be read or is malformed.
        """
        return cls.from_text(_read_keyring_file(path), source=os.fspath(path))

    @classmethod
    def open(cls, spec: str) -> KeyRing:
        """Open a keyring named by a command-line or URL style spec.

        ``env:VAR`` reads the variable ``VAR``; ``env:`` alone reads
        ``CASSTORE_KEYRING``; ``file:PATH`` (or any other text, as a path)
        reads a file. This is how the CLI's ``--keyring`` option and other
        entry points that take strings open a keyring.
        """
        if not isinstance(spec, str) or not spec:
            raise ConfigurationError(f"keyring spec must be env:VAR or file:PATH, got {spec!r}")
        if spec.startswith("env:"):
            return cls.from_env(spec[4:] or DEFAULT_KEYRING_ENV)
        return cls.from_file(spec.removeprefix("file:"))

    @property
    def active_id(self) -> str:
        """The id of the key that encrypts new objects."""
        return self._active

    @property
    def key_ids(self) -> tuple[str, ...]:
        """Every key id, the active one first."""
        return (self._active, *(k for k in self._keys if k != self._active))

    def __contains__(self, key_id: object) -> bool:
        return key_id in self._keys

    def key(self, key_id: str) -> bytes:
        """Return the key material for ``key_id``.

        Raises:
            KeyError: If the keyring does not hold that id.
        """
        return self._keys[key_id]

    def with_active(self, key_id: str) -> KeyRing:
        """Return a copy of this keyring whose active key is ``key_id``."""
        return KeyRing(self._keys, active=key_id)

    def __repr__(self) -> str:
        return f"KeyRing(active={self._active!r}, key_ids={list(self.key_ids)!r})"

    __str__ = __repr__

    def __reduce__(self) -> tuple[object, ...]:
        # Pickling would write key material wherever the pickle goes (logs, caches).
        raise TypeError("KeyRing cannot be pickled; build it from its source in each process")


_FILE_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISFIFO, "a pipe (FIFO)"),
    (stat.S_ISSOCK, "a socket"),
)


def _read_keyring_file(path: str | os.PathLike[str]) -> str:
    """Read a keyring file: a regular file of at most ``_MAX_KEYRING_TEXT`` bytes."""
    where = f"[path={os.fspath(path)}]"
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer before we can refuse it.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise ConfigurationError(
            f"cannot read keyring file {where}: {exc.strerror or exc}"
        ) from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            kind = next((name for test, name in _FILE_KINDS if test(info.st_mode)), "not a file")
            raise ConfigurationError(
                f"keyring file must be a regular file, but it is {kind} {where}"
            )
        # Read up to one byte past the limit: a file that grew since fstat is caught too.
        raw = b""
        while len(raw) <= _MAX_KEYRING_TEXT and (chunk := os.read(fd, 1 + _MAX_KEYRING_TEXT)):
            raw += chunk
    except OSError as exc:
        raise ConfigurationError(
            f"cannot read keyring file {where}: {exc.strerror or exc}"
        ) from exc
    finally:
        os.close(fd)
    if len(raw) > _MAX_KEYRING_TEXT or info.st_size > _MAX_KEYRING_TEXT:
        raise ConfigurationError(
            f"keyring file is {max(info.st_size, len(raw))} bytes, above the "
            f"{_MAX_KEYRING_TEXT}-byte limit (a keyring is a few lines of text) {where}"
        )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigurationError(
            f"keyring file is not UTF-8 text (byte {exc.start}) {where}"
        ) from exc


def _entries(text: str) -> Iterable[str]:
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        for entry in line.split(","):
            if entry.strip():
                yield entry


def _decode_key(encoded: str, where: str) -> bytes:
    padded = encoded + "=" * (-len(encoded) % 4)
    alphabet = (b"-_") if ("-" in encoded or "_" in encoded) else None
    try:
        key = base64.b64decode(padded, altchars=alphabet, validate=True)
    except (binascii.Error, ValueError) as exc:  # their messages never quote the input
        raise ConfigurationError(f"key is not valid base64 [{where}]: {exc}") from exc
    if len(key) != KEY_SIZE:
        raise ConfigurationError(
            f"key must be {KEY_SIZE} bytes (256 bits), got {len(key)} [{where}]"
        )
    return key
