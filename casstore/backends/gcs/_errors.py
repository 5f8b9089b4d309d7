"""gcloud-aio-storage (aiohttp) errors mapped to casstore's hierarchy, in one place.

See the "Errors" table in docs/backends.md (Google Cloud Storage).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from aiohttp import ClientConnectionError, ClientError, ClientPayloadError, ClientResponseError

from casstore.errors import (
    BackendError,
    BackendPermissionError,
    BackendUnavailableError,
    ObjectNotFoundError,
)

PERMISSIONS = {
    "stat": "storage.objects.get",
    "put": "storage.objects.create",
    "get": "storage.objects.get",
    "get_range": "storage.objects.get",
    "touch": "storage.objects.get, storage.objects.create and storage.objects.delete "
    "(the refresh rewrites the object onto itself, replacing it)",
    "delete": "storage.objects.delete",
    "scan": "storage.objects.list",
    "move": "storage.objects.get, storage.objects.create and storage.objects.delete",
}
"""The IAM permission each operation needs (docs/backends.md)."""


class LostRace(Exception):
    """The conditional create answered 412: another writer created the object first."""


class Missing(Exception):
    """The object (or its bucket) answered 404."""


@dataclass(frozen=True)
class Where:
    """What an error is about: for its message and its attributes."""

    suffix: str
    """``" [bucket=…, key=…, endpoint=…]"``, the message's last part."""
    key: str | None
    """The casstore key (without the prefix), for ``CasstoreError.key``."""
    backend: str
    """The backend's description, for ``CasstoreError.backend``."""


def _reason(exc: ClientResponseError) -> str:
    """``404 Not Found: <GCS's message>``, from the JSON error body when there is one."""
    reason, _, body = str(exc.message).partition(": ")
    try:
        detail = json.loads(body)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        detail = body.strip()[:300]
    return f"HTTP {exc.status} {reason}" + (f": {detail}" if detail else "")


@contextlib.contextmanager
def translate_errors(
    operation: str, bucket: str, where: Callable[[], Where], *, of_object: bool
) -> Iterator[None]:
    """Map aiohttp and gcloud-aio errors raised inside to casstore's hierarchy.

    ``of_object``: the request names an object, so a 404 is that object
    missing (:class:`ObjectNotFoundError`); otherwise it is the bucket.
    """
    try:
        yield
    except (LostRace, Missing):
        raise
    except ClientResponseError as exc:
        about = where()
        attributes = {"key": about.key, "backend": about.backend}
        reason = _reason(exc)
        if exc.status == 404 and of_object and "bucket does not exist" not in reason.lower():
            raise ObjectNotFoundError(
                f"object not found in GCS: {reason}{about.suffix}", **attributes
            ) from exc
        if exc.status == 404:
            raise BackendUnavailableError(
                f"GCS bucket {bucket!r} does not exist (or {operation} found nothing): "
                f"{reason}{about.suffix}",
                **attributes,
            ) from exc
        if exc.status in (401, 403):
            raise BackendPermissionError(
                f"GCS refused {operation}: {reason}; check the credentials and that they "
                f"allow {PERMISSIONS.get(operation, 'storage.objects.get')} on the "
                f"bucket{about.suffix}",
                **attributes,
            ) from exc
        if exc.status in (408, 429) or exc.status >= 500:
            raise BackendUnavailableError(
                f"GCS {operation} failed, the service is unavailable or throttling: "
                f"{reason}{about.suffix}",
                **attributes,
            ) from exc
        raise BackendError(f"GCS {operation} failed: {reason}{about.suffix}", **attributes) from exc
    except (
        ClientConnectionError,
        ClientPayloadError,
        TimeoutError,
        asyncio.IncompleteReadError,
    ) as exc:
        about = where()
        raise BackendUnavailableError(
            f"GCS {operation} could not reach the server or was cut off: "
            f"{type(exc).__name__}: {exc}{about.suffix}",
            key=about.key,
            backend=about.backend,
        ) from exc
    except ClientError as exc:
        about = where()
        raise BackendError(
            f"GCS {operation} failed: {type(exc).__name__}: {exc}{about.suffix}",
            key=about.key,
            backend=about.backend,
        ) from exc


@contextlib.contextmanager
def translate_credentials(operation: str, where: Callable[[], Where]) -> Iterator[None]:
    """Map a failure to get an access token to one clear permission error."""
    try:
        yield
    except Exception as exc:  # gcloud-aio-auth raises anything from file, JSON or HTTP
        about = where()
        raise BackendPermissionError(
            f"no usable Google credentials for GCS {operation} ({type(exc).__name__}: {exc}); "
            "they come from service_file=, GOOGLE_APPLICATION_CREDENTIALS, gcloud's "
            "application default credentials or the metadata server"
            f"{about.suffix}",
            key=about.key,
            backend=about.backend,
        ) from exc
