"""The server check made on first use: refuse a ``maxmemory-policy`` that may evict objects."""

from __future__ import annotations

import logging
from typing import Any

from redis import exceptions as rx
from redis.asyncio import Redis

from casstore.errors import ConfigurationError

_log = logging.getLogger("casstore.backends.redis")


async def check_eviction_policy(
    client: Redis, *, ttl_ms: int, allow_eviction: bool, where: str
) -> None:
    """Refuse an evicting policy (errors are translated by the caller's operation).

    ``noeviction`` is safe; so is ``volatile-*`` when objects carry no expiry
    (no ``ttl``). A server that will not say (``CONFIG`` renamed or refused, as
    on managed services) gets a warning: the policy is then the operator's to
    check.
    """
    try:
        config = await client.config_get("maxmemory-policy")
    except rx.ResponseError as exc:
        if isinstance(exc, rx.NoPermissionError) or "unknown command" in str(exc):
            _log.warning(
                "cannot read maxmemory-policy (%s); make sure the server never "
                "evicts casstore's keys%s",
                exc,
                where,
            )
            return
        raise
    values: dict[Any, Any] = dict(config)
    raw = values.get(b"maxmemory-policy", values.get("maxmemory-policy", b""))
    policy = raw.decode() if isinstance(raw, bytes) else str(raw)
    safe = policy == "noeviction" or (policy.startswith("volatile-") and not ttl_ms)
    if not safe and not allow_eviction:
        why = (
            "with a ttl, objects carry an expiry, which volatile-* policies evict"
            if policy.startswith("volatile-")
            else "it may evict any key"
        )
        raise ConfigurationError(
            f"Redis maxmemory-policy is {policy!r}: {why}, and an evicted object is a "
            "payload lost while workflow histories still reference it; set "
            "maxmemory-policy noeviction on the server, or pass allow_eviction=true to "
            f"accept that{where}"
        )
