"""Opening the store an operator command names: refuse what does not exist, probe the rest."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from casstore._format.keys import KEY_LAYOUT_VERSION
from casstore._format.manifest import MANIFEST_KEY
from casstore._url import open_backend
from casstore.backends._base import Backend, describe_suffix
from casstore.backends._s3url import has_attempts
from casstore.errors import BackendPermissionError, BackendUnavailableError, ConfigurationError
from casstore.ops._run import CommandError

OPERATOR_S3_ATTEMPTS = 5
"""Attempts per request for commands on an ``s3://`` store, whichever client
builds it. Workers default to one, because the driver retries within each
payload's deadline; listings, moves and deletes have no such deadline, and one
503 must not end an hour-long gc or stats run. ``max_attempts`` in the URL wins."""


@contextlib.asynccontextmanager
async def open_store(url: str, **options: Any) -> AsyncIterator[Backend]:
    """Open an existing store for an operator command, and close it afterwards.

    Unlike a driver, which creates a local store's folder on first use, a
    command refuses a store that does not exist: a typo must not look like an
    empty store. The store is probed with one listing request, so an
    unreachable endpoint, a missing bucket or refused credentials fail here,
    in one line, before any work.

    Raises:
        CommandError: Naming the URL and what is wrong with it.
    """
    root = require_local_store(url)
    try:
        backend = open_backend(url, **_operator_defaults(url, options))
    except ConfigurationError as exc:
        raise CommandError(f"bad store URL: {exc}") from exc
    try:
        if root is None:  # a local folder that exists is open; listing it all would be slow
            await _probe(backend)
        yield backend
    finally:
        await backend.aclose()


NOT_A_STORE = "this is not a casstore store, or no casstore worker has stored anything in it yet"


async def require_casstore_store(backend: Backend) -> None:
    """Refuse a store with neither a lifecycle manifest nor any key under ``v1/``.

    Checking an empty folder or a wrong S3 prefix would otherwise report "0
    objects, all good": a wrong URL must not pass for a healthy store. An
    empty store that has a manifest (a writer set it up) is a store.

    Raises:
        CommandError: Naming the manifest key and the store.
    """
    if await backend.stat(MANIFEST_KEY) is not None:
        return  # whether it parses is gc's concern; verify checks objects
    listing = backend.scan(KEY_LAYOUT_VERSION + "/")
    try:
        async for _ in listing:
            return
    finally:
        close = getattr(listing, "aclose", None)
        if close is not None:
            await close()
    raise CommandError(
        f"no lifecycle manifest [key={MANIFEST_KEY}{describe_suffix(backend)}] and no keys "
        f"under {KEY_LAYOUT_VERSION}/: {NOT_A_STORE}"
    )


def require_local_store(url: str) -> Path | None:
    """Refuse a local store URL whose folder does not exist; return the folder.

    Returns:
        The folder, or None if ``url`` is not a local store (nothing checked).

    Raises:
        CommandError: Naming the folder and the URL.
    """
    root = _local_root(url)
    if root is not None and not root.is_dir():
        what = "is not a folder" if root.exists() else "does not exist"
        raise CommandError(f"store {what}: {root} [url={url}]")
    return root


def _operator_defaults(url: str, options: dict[str, Any]) -> dict[str, Any]:
    """Add retries for an ``s3://`` store (either client) unless the URL or caller sets them."""
    if urlsplit(url).scheme.lower() != "s3" or has_attempts(url, options):
        return options
    return {**options, "max_attempts": OPERATOR_S3_ATTEMPTS}


async def _probe(backend: Backend) -> None:
    listing = backend.scan()
    try:
        async for _ in listing:
            break
    except (BackendUnavailableError, BackendPermissionError) as exc:
        raise CommandError(f"cannot open store: {exc}") from exc
    finally:
        close = getattr(listing, "aclose", None)
        if close is not None:
            await close()


def _local_root(url: str) -> Path | None:
    """The folder a local store URL names, or None for other schemes."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "" or (len(scheme) == 1 and os.name == "nt"):
        return Path(url).expanduser()
    if scheme == "file" and parts.netloc in ("", "localhost"):
        return Path(unquote(parts.path))  # with a host, open_backend refuses the URL
    return None
