"""redis-py errors mapped to casstore's hierarchy, in one place.

See the "Errors" table in docs/backends.md (Redis).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from redis import exceptions as rx

from casstore.errors import (
    BackendError,
    BackendPermissionError,
    BackendUnavailableError,
)

_COMMANDS = {
    "stat": "EVALSHA (EXISTS, STRLEN, GET)",
    "put": "EVALSHA (SET NX)",
    "get": "EVALSHA (STRLEN, GET)",
    "get_range": "GETRANGE",
    "touch": "EVALSHA (PEXPIRE or PERSIST, SET)",
    "delete": "DEL",
    "scan": "SCAN, STRLEN, MGET",
    "move": "EVALSHA (RENAME, DEL, PEXPIRE or PERSIST, SET)",
    "open": "PING, CONFIG GET",
}
"""What each operation sends, for permission errors (ACLs are per command)."""


@dataclass(frozen=True)
class Where:
    """What an error is about: for its message and its attributes."""

    suffix: str
    """``" [host=…, db=…, key=…]"``, the message's last part."""
    key: str | None
    """The casstore key (without the prefix), for ``CasstoreError.key``."""
    backend: str
    """The backend's description, for ``CasstoreError.backend``."""


@contextlib.contextmanager
def translate_errors(operation: str, where: Callable[[], Where]) -> Iterator[None]:
    """Map redis-py errors raised inside to casstore's hierarchy.

    Args:
        operation: The backend call (``stat``, ``put``, ...), for the message
            and the commands it needs.
        where: Returns what the error is about; called only when there is an
            error to describe.
    """
    try:
        yield
    except (rx.AuthenticationError, rx.AuthenticationWrongNumberOfArgsError) as exc:
        about = where()
        raise BackendPermissionError(
            f"Redis refused the credentials for {operation}: {exc}; give the user and "
            f"password in the URL (redis://user:password@host) or to RedisBackend{about.suffix}",
            key=about.key,
            backend=about.backend,
        ) from exc
    except rx.NoPermissionError as exc:
        about = where()
        raise BackendPermissionError(
            f"Redis refused {operation}: {exc}; the user's ACL must allow "
            f"{_COMMANDS.get(operation, operation)} on the prefix's keys{about.suffix}",
            key=about.key,
            backend=about.backend,
        ) from exc
    except (rx.BusyLoadingError, rx.ReadOnlyError, rx.TryAgainError) as exc:
        about = where()
        raise BackendUnavailableError(
            f"Redis cannot serve {operation} now ({type(exc).__name__}: {exc}){about.suffix}",
            key=about.key,
            backend=about.backend,
        ) from exc
    except (rx.ConnectionError, rx.TimeoutError) as exc:
        about = where()
        raise BackendUnavailableError(
            f"Redis {operation} could not reach the server: {type(exc).__name__}: "
            f"{exc}{about.suffix}",
            key=about.key,
            backend=about.backend,
        ) from exc
    except rx.OutOfMemoryError as exc:
        about = where()
        raise BackendUnavailableError(
            f"Redis is out of memory (maxmemory reached, policy noeviction) and refused "
            f"{operation}: {exc}; raise maxmemory or delete objects (casstore gc){about.suffix}",
            key=about.key,
            backend=about.backend,
        ) from exc
    except (rx.MovedError, rx.ClusterError, rx.ClusterCrossSlotError) as exc:
        about = where()
        raise BackendError(
            f"Redis {operation} was redirected ({exc}): Redis Cluster is not supported; "
            f"point the backend at a standalone server or a primary{about.suffix}",
            key=about.key,
            backend=about.backend,
        ) from exc
    except rx.RedisError as exc:
        about = where()
        raise BackendError(
            f"Redis {operation} failed: {type(exc).__name__}: {exc}{about.suffix}",
            key=about.key,
            backend=about.backend,
        ) from exc
    except OSError as exc:  # below redis-py: a socket failing outside its own handling
        about = where()
        raise BackendUnavailableError(
            f"Redis {operation} could not reach the server: {exc}{about.suffix}",
            key=about.key,
            backend=about.backend,
        ) from exc
