"""The errors casstore raises.

Every error is a :class:`CasstoreError`, so one ``except`` catches them all;
the subclasses say what went wrong, and every message names the key, workflow
or setting involved in ``[brackets]``::

    CasstoreError
    ├── ConfigurationError        a bad option, URL or missing optional dependency
    │   └── MissingKeyError       a claim or object names a key the keyring lacks
    ├── PayloadTooLargeError      a payload above ``max_payload_size``
    ├── ClaimError                a claim that cannot be trusted (untrusted input)
    ├── InvalidKeyError           a key no backend accepts (``check_key``)
    ├── IntegrityError            stored bytes that do not match their claim
    └── BackendError              the storage backend failed
        ├── ObjectNotFoundError   no object at that key (also a FileNotFoundError)
        ├── BackendPermissionError  credentials or permissions were refused
        └── BackendUnavailableError the backend could not be reached, or its
                                    container (bucket, root folder) is missing

Backends translate their own exceptions (``OSError``, botocore's
``ClientError``, ...) into this hierarchy in one place each, and raise ``from``
the original so the cause stays on the traceback.

Besides the message, every error carries what it is about as attributes, for
code that handles errors rather than printing them: :attr:`~CasstoreError.key`
(the object key), :attr:`~CasstoreError.backend` (the backend's description),
and for a payload of a batch, :attr:`~CasstoreError.position` and
:attr:`~CasstoreError.batch_size`. Each is ``None`` where it does not apply.
"""

from __future__ import annotations

import typing

__all__ = [
    "BackendError",
    "BackendPermissionError",
    "BackendUnavailableError",
    "CasstoreError",
    "ClaimError",
    "ConfigurationError",
    "IntegrityError",
    "InvalidKeyError",
    "MissingKeyError",
    "ObjectNotFoundError",
    "PayloadTooLargeError",
]


class CasstoreError(Exception):
    """Base class of every error raised by casstore.

    Args:
        message: What went wrong, with context in ``[brackets]``.
        key: The object key involved, if any.
        backend: The backend involved, as its description (e.g.
            ``"S3Backend(bucket=b, prefix=p)"``), if any.
    """

    key: str | None
    """The object key the error is about, or None."""
    backend: str | None
    """A description of the backend involved, or None."""
    position: int | None
    """0-based index of the failed payload within its batch, or None."""
    batch_size: int | None
    """How many payloads the failed batch held, or None."""

    def __init__(self, message: str, *, key: str | None = None, backend: str | None = None):
        super().__init__(message)
        self.key = key
        self.backend = backend
        self.position = None
        self.batch_size = None

    def in_batch(self, position: int, batch_size: int, verb: str) -> typing.Self:
        """Return a copy of this error that says which payload of a batch failed.

        The copy is made without calling the constructor (so subclasses with
        other constructor arguments keep working) and keeps every attribute;
        this error itself is left as it is, since callers joined on one shared
        operation may all hold it.
        """
        labelled = type(self).__new__(type(self), *self.args)
        labelled.__dict__.update(self.__dict__)
        labelled.position = position
        labelled.batch_size = batch_size
        if self.args and isinstance(self.args[0], str):
            labelled.args = (
                f"{verb} of payload {position + 1} of {batch_size} failed: {self.args[0]}",
                *self.args[1:],
            )
        return labelled


class ConfigurationError(CasstoreError, ValueError):
    """An option, backend URL or installation problem found before any I/O."""


class MissingKeyError(ConfigurationError):
    """An encrypted claim or object names a key id the driver's keyring does not hold.

    Attributes:
        key_id: The missing key's id (None if unknown).
    """

    def __init__(
        self,
        message: str,
        *,
        key_id: str | None = None,
        key: str | None = None,
        backend: str | None = None,
    ) -> None:
        super().__init__(message, key=key, backend=backend)
        self.key_id = key_id


class PayloadTooLargeError(CasstoreError, ValueError):
    """A payload is larger than the driver's ``max_payload_size``."""


class ClaimError(CasstoreError, ValueError):
    """A claim is malformed, of an unknown version, or names a bad location.

    Claims come from Event History and are treated as untrusted input.
    """


class InvalidKeyError(CasstoreError, ValueError):
    """A key that could reach outside a backend's root, or that no store accepts.

    Raised by :func:`casstore.backends.check_key`, which every backend calls on
    every key before any I/O; :attr:`~CasstoreError.key` holds the key (which
    may not be a string).
    """


class IntegrityError(CasstoreError):
    """Stored bytes do not match their claim.

    Wrong size, wrong digest, a corrupted header or an undecodable body; the
    bytes were not parsed.
    """


class BackendError(CasstoreError):
    """The storage backend failed to complete an operation."""


class ObjectNotFoundError(BackendError, FileNotFoundError):
    """No object exists at the requested key."""


class BackendPermissionError(BackendError, PermissionError):
    """The backend refused the credentials or the permissions they carry."""


class BackendUnavailableError(BackendError):
    """The backend could not be reached or its container does not exist."""
