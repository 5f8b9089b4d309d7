"""What a backend error is about, shared by the backends that name buckets, hosts and keys."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

from casstore.errors import CasstoreError, ObjectNotFoundError

_E = TypeVar("_E", bound=CasstoreError)


@dataclass(frozen=True)
class Where:
    """What an error is about: for its message and its attributes."""

    suffix: str
    """``" [bucket=…, key=…, …]"``, the message's last part."""
    key: str | None
    """The casstore key (without the prefix), for ``CasstoreError.key``."""
    backend: str
    """The backend's description, for ``CasstoreError.backend``."""

    def error(self, kind: type[_E], message: str) -> _E:
        """A ``kind`` error: ``message`` with the suffix, carrying the key and backend."""
        return kind(f"{message}{self.suffix}", key=self.key, backend=self.backend)


def not_found(service: str, where: Where) -> ObjectNotFoundError:
    """The error for a missing object: ``object not found in <service> [...]``."""
    return where.error(ObjectNotFoundError, f"object not found in {service}")
