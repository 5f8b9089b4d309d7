"""Listing by string prefix over obstore's listing by whole path segments."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import UTC

import obstore
from obstore.store import AzureStore, S3Store

from casstore.backends._base import ObjectStat
from casstore.backends._keys import check_key
from casstore.errors import InvalidKeyError

_LIST_CHUNK = 1000


def object_stat(meta: obstore.ObjectMeta) -> ObjectStat:
    """The size and age a HEAD or a listing reports for one object."""
    return ObjectStat(size=meta["size"], modified=meta["last_modified"].astimezone(UTC))


async def list_objects(
    store: S3Store | AzureStore,
    root: str,
    prefix: str,
    translate: Callable[[str, str], contextlib.AbstractContextManager[None]],
) -> AsyncIterator[tuple[str, obstore.ObjectMeta]]:
    """Yield ``(key, meta)`` for every object under ``root`` whose key starts with ``prefix``.

    obstore lists whole path segments (``a/b`` lists ``a/b/...``, not
    ``a/bc``), so the listing starts at the prefix's last ``/`` and is
    filtered here, which makes ``prefix`` the string prefix the ``Backend``
    contract promises. Objects whose names are not valid keys (put there by
    something else) are skipped; keys are returned without ``root``.

    Raises:
        InvalidKeyError: If ``prefix`` could never start a key (``..``, a space, ...).
    """
    if prefix:
        try:
            check_key(prefix + "x")  # the partial last segment must be keyable too
        except InvalidKeyError:
            raise InvalidKeyError(f"invalid scan prefix [prefix={prefix!r}]", key=prefix) from None
    full = root + prefix
    directory = full.rpartition("/")[0]
    stream = obstore.list(store, directory or None, chunk_size=_LIST_CHUNK)
    while True:
        with translate("scan", full):
            try:
                batch = await anext(stream)
            except StopAsyncIteration:
                return
        for meta in batch:
            name = meta["path"]
            if name.startswith(full):
                with contextlib.suppress(InvalidKeyError):
                    yield check_key(name[len(root) :]), meta
