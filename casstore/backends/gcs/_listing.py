"""Listing a GCS prefix: ``objects.list`` pages, with sizes and creation times."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from casstore.backends._base import ObjectStat
from casstore.backends._keys import check_key

PAGE_SIZE = 1000

Page = Callable[[dict[str, str]], Awaitable[Mapping[str, Any]]]
"""Fetches one ``objects.list`` page for the query parameters given."""


def stat_of(meta: Mapping[str, Any]) -> ObjectStat:
    """Size and creation time (what lifecycle ``age`` counts from) of an object resource."""
    created = str(meta.get("timeCreated") or meta.get("updated"))
    modified = datetime.fromisoformat(created.replace("Z", "+00:00")).astimezone(UTC)
    return ObjectStat(size=int(meta.get("size", 0)), modified=modified)


async def list_objects(page: Page, root: str, prefix: str) -> AsyncIterator[tuple[str, ObjectStat]]:
    """Yield the casstore keys under ``root + prefix`` (``root`` stripped), page by page."""
    params = {"prefix": root + prefix, "maxResults": str(PAGE_SIZE)}
    while True:
        found = await page(dict(params))
        for item in found.get("items", ()):
            key = str(item.get("name", ""))[len(root) :]
            # Skip foreign objects someone else put under our prefix.
            with contextlib.suppress(ValueError):
                yield check_key(key), stat_of(item)
        token = found.get("nextPageToken")
        if not token:
            return
        params["pageToken"] = token
