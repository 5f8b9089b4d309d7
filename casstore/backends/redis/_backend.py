"""RedisBackend: each object a Redis string under a key prefix, with an optional TTL."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from typing import Any

from redis import exceptions as rx
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from casstore.backends._base import Backend, ObjectStat, describe_backend
from casstore.backends._keys import check_key
from casstore.backends.redis import _scripts
from casstore.backends.redis._errors import Where, translate_errors
from casstore.backends.redis._options import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_PORT,
    DEFAULT_PREFIX,
    DEFAULT_SOCKET_TIMEOUT,
    MAX_STRING_SIZE,
    check_positive,
    check_prefix,
    check_ttl,
    url_arguments,
)
from casstore.errors import (
    BackendError,
    ConfigurationError,
    IntegrityError,
    ObjectNotFoundError,
)

_log = logging.getLogger("casstore.backends.redis")

_SCAN_COUNT = 1000
_DELETE_BATCH = 256
_SCAN_PREFIX_RE = re.compile(r"[A-Za-z0-9._%/-]*")
# Store metadata (the lifecycle manifest) lives under this prefix and never
# expires; trash copies gc keeps there do, like the objects they were.
_METADATA = "_casstore/"
_TRASH = "_casstore/trash/"


class RedisBackend(Backend):
    """Stores each object as a Redis string under a key prefix, optionally expiring.

    The object for key ``k`` is the string at ``{prefix}/{k}``; its
    modification time (server clock, milliseconds) is the string at
    ``{prefix}#modified/{k}``. Every operation is one atomic Lua script or one
    command: a write is ``SET NX`` (a lost create race returns False), a read
    checks ``STRLEN`` against ``max_size`` before ``GET``, a refresh resets
    the expiry (``PEXPIRE``) and the time together, a listing is ``SCAN
    MATCH`` (never ``KEYS``), and a move is ``RENAMENX``, which never
    replaces an existing destination.

    With ``ttl``, every object expires ``ttl`` after it was written or last
    refreshed, so the driver's ``refresh_after`` applies as it does to object
    stores' lifecycle rules: every claim points to an object at least
    ``ttl - refresh_after`` from expiry. Without ``ttl``, nothing expires.

    On first use the backend checks the server's ``maxmemory-policy`` and
    refuses one that may evict casstore's keys (``allkeys-*``, and
    ``volatile-*`` when a ``ttl`` is set), unless ``allow_eviction`` is True:
    an evicted object is a payload lost while histories still reference it.

    The backend builds its own client (one connection pool, closed by
    :meth:`aclose`), or uses a ``redis.asyncio.Redis`` you pass in (created with
    ``decode_responses=False``), which it never closes. Use one backend from
    one event loop: redis-py's asyncio connections are bound to theirs.

    Args:
        host: Server host name or address.
        port: Server port.
        db: Database number.
        prefix: Key prefix, at least one segment (default ``casstore``).
        ttl: Expire objects this long after they were written or refreshed
            (None: never).
        allow_eviction: Accept a ``maxmemory-policy`` that may evict objects.
        client: A ``redis.asyncio.Redis`` to use as is; the connection options
            (``host`` to ``ssl_ca_certs``) must then be left unset.
        username, password: ACL user and password (or ``requirepass``).
        tls: Connect with TLS (``rediss://``).
        ssl_ca_certs: CA bundle to verify the server's certificate with.
        socket_timeout: Seconds to wait for an answer (default 30).
        connect_timeout: Seconds to wait for a connection (default 10).
        max_connections: Size of the connection pool (default 32, the
            driver's default ``max_concurrency``; keep them equal).

    Raises:
        ConfigurationError: For an invalid prefix, ttl or option.
    """

    max_object_size = MAX_STRING_SIZE

    def __init__(
        self,
        host: str | None = None,
        port: int | None = None,
        db: int = 0,
        *,
        prefix: str = DEFAULT_PREFIX,
        ttl: timedelta | None = None,
        allow_eviction: bool = False,
        client: Redis | None = None,
        username: str | None = None,
        password: str | None = None,
        tls: bool = False,
        ssl_ca_certs: str | None = None,
        socket_timeout: float | None = None,
        connect_timeout: float | None = None,
        max_connections: int | None = None,
    ) -> None:
        self._prefix = check_prefix(prefix)
        self._root = self._prefix + "/"
        self._times = self._prefix + "#modified/"
        self._ttl_ms = check_ttl(ttl)
        self._allow_eviction = allow_eviction
        connection = {
            "host": host,
            "port": port,
            "username": username,
            "password": password,
            "ssl_ca_certs": ssl_ca_certs,
            "socket_timeout": socket_timeout,
            "connect_timeout": connect_timeout,
            "max_connections": max_connections,
        }
        if client is not None:
            given = sorted(name for name, value in connection.items() if value is not None)
            if given or tls:
                raise ConfigurationError(
                    f"RedisBackend(client=...) uses the client as configured; leave "
                    f"{', '.join(given) or 'tls'} unset"
                )
            kwargs = client.connection_pool.connection_kwargs
            if kwargs.get("decode_responses"):
                raise ConfigurationError(
                    "RedisBackend needs a client created with decode_responses=False: "
                    "objects are bytes"
                )
            self._host = f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', DEFAULT_PORT)}"
            self._db = int(kwargs.get("db", 0))
        else:
            self._host = f"{host or 'localhost'}:{port or DEFAULT_PORT}"
            self._db = db
        self._own = client is None
        self._client = client
        self._settings: dict[str, Any] = {
            "host": host or "localhost",
            "port": port or DEFAULT_PORT,
            "db": db,
            "username": username,
            "password": password,
            "ssl": tls,
            "ssl_ca_certs": ssl_ca_certs,
            "socket_timeout": check_positive(
                "socket_timeout", socket_timeout, DEFAULT_SOCKET_TIMEOUT
            ),
            "socket_connect_timeout": check_positive(
                "connect_timeout", connect_timeout, DEFAULT_CONNECT_TIMEOUT
            ),
            "max_connections": int(
                check_positive("max_connections", max_connections, DEFAULT_MAX_CONNECTIONS)
            ),
        }
        self._ready: asyncio.Lock | None = None
        self._checked = False
        self._scripts: dict[str, Any] = {}

    @classmethod
    def from_url(cls, url: str, **options: object) -> RedisBackend:
        """Build a backend from ``redis[s]://[user:password@]host[:port][/db][?option=...]``.

        Options: ``prefix``, ``ttl`` (seconds), ``allow_eviction``,
        ``socket_timeout``, ``connect_timeout``, ``max_connections``,
        ``ssl_ca_certs``, in the query or as keyword arguments (which override
        the query; see :func:`casstore.open_backend`).

        Raises:
            ConfigurationError: For a malformed URL or option, naming it.
        """
        return cls(**url_arguments(url, options))

    @property
    def prefix(self) -> str:
        """The key prefix objects live under (no slashes at its ends)."""
        return self._prefix

    @property
    def ttl(self) -> timedelta | None:
        """How long after a write or refresh an object expires (None: never)."""
        return timedelta(milliseconds=self._ttl_ms) if self._ttl_ms else None

    @property
    def expires_after(self) -> timedelta | None:
        """The ttl: the driver refuses a ``refresh_after`` that is not shorter."""
        return self.ttl

    def redis_key(self, key: str) -> str:
        """Return the Redis key that holds ``key`` (the key is checked first)."""
        return self._root + check_key(key)

    # Backend interface.

    async def stat(self, key: str) -> ObjectStat | None:
        """Size (``STRLEN``) and modification time, or None for a missing object."""
        name = self.redis_key(key)
        with self._translate("stat", name):
            found = await self._run("stat", [name, self._times + key])
        if found is None:
            return None
        size, modified = found
        return ObjectStat(size=int(size), modified=_from_ms(modified))

    async def put(self, key: str, data: bytes) -> bool:
        """``SET NX`` the object and its time (with the TTL): False if it existed."""
        name = self.redis_key(key)
        if len(data) > MAX_STRING_SIZE:
            raise BackendError(
                f"object is {len(data)} bytes, above Redis's {MAX_STRING_SIZE}-byte string "
                f"limit{self._where(name)}",
                key=key,
                backend=describe_backend(self),
            )
        with self._translate("put", name):
            created = await self._run("put", [name, self._times + key], [data, self._expiry(key)])
        return bool(created)

    async def get(self, key: str, *, max_size: int | None = None) -> bytes:
        """``STRLEN`` then ``GET``, atomically: an object above ``max_size`` is never read."""
        name = self.redis_key(key)
        with self._translate("get", name):
            found = await self._run("get", [name], [-1 if max_size is None else max_size])
        if found is None:
            raise self._not_found(key, name)
        if isinstance(found, int):
            raise IntegrityError(
                f"object is {found} bytes, above the {max_size}-byte bound for it"
                f"{self._where(name)}",
                key=key,
                backend=describe_backend(self),
            )
        return bytes(found)

    async def get_range(self, key: str, offset: int, length: int) -> bytes:
        """``GETRANGE``: up to ``length`` bytes from ``offset`` (fewer at the end, none past it).

        Raises:
            ObjectNotFoundError: If there is no object at ``key``.
        """
        name = self.redis_key(key)
        if offset < 0 or length < 0:
            raise ValueError(
                f"invalid range: offset {offset}, length {length} (neither may be negative)"
            )
        with self._translate("get_range", name):
            client = await self._redis()
            async with client.pipeline(transaction=True) as pipe:
                pipe.exists(name)
                if length:  # GETRANGE's end is inclusive
                    pipe.getrange(name, offset, offset + length - 1)
                exists, *data = await pipe.execute()
        if not exists:
            raise self._not_found(key, name)
        return bytes(data[0]) if data else b""

    async def touch(self, key: str) -> None:
        """Reset the object's expiry (``PEXPIRE``, or none without a TTL) and its time."""
        name = self.redis_key(key)
        with self._translate("touch", name):
            done = await self._run("touch", [name, self._times + key], [self._expiry(key)])
        if not done:
            raise self._not_found(key, name)

    async def delete(self, key: str) -> None:
        """``DEL`` the object and its time (a missing object is not an error)."""
        await self.delete_many([key])

    async def delete_many(self, keys: Sequence[str]) -> None:
        """``DEL`` objects with their times, 256 objects a command."""
        names = [(self.redis_key(key), self._times + key) for key in keys]
        for start in range(0, len(names), _DELETE_BATCH):
            batch = [name for pair in names[start : start + _DELETE_BATCH] for name in pair]
            with self._translate("delete", batch[0]):
                client = await self._redis()
                await client.delete(*batch)

    async def move(self, src: str, dst: str) -> bool:
        """``RENAMENX`` (or drop the source if ``dst`` exists), with a fresh time and expiry."""
        source, target = self.redis_key(src), self.redis_key(dst)
        with self._translate("move", source):
            moved = await self._run(
                "move",
                [source, self._times + src, target, self._times + dst],
                [self._expiry(dst)],
            )
        return bool(moved)

    async def scan(self, prefix: str = "") -> AsyncIterator[tuple[str, int]]:
        """``SCAN MATCH`` the prefix (strings only), sizes by ``STRLEN``, no duplicates."""
        async for key, size, _ in self._list(prefix, times=False):
            yield key, size

    async def scan_stat(self, prefix: str = "") -> AsyncIterator[tuple[str, ObjectStat]]:
        """As :meth:`scan`, with each object's time (one ``MGET`` per page)."""
        async for key, size, modified in self._list(prefix, times=True):
            yield key, ObjectStat(size=size, modified=modified)

    def describe(self) -> Mapping[str, str]:
        """Return backend, host, db, prefix and ttl (never the password)."""
        facts = {
            "backend": "redis",
            "host": self._host,
            "db": str(self._db),
            "prefix": self._prefix,
        }
        if self._ttl_ms:
            facts["ttl"] = f"{self._ttl_ms / 1000:g}s"
        return facts

    async def open(self) -> None:
        """Connect, and check the server's eviction policy, before the first request."""
        with self._translate("open", "", of_object=False):
            await self._redis()

    async def aclose(self) -> None:
        """Close the connection pool this backend built; a passed-in client stays open."""
        client = self._client
        if self._own and client is not None:
            self._client = None
            self._scripts = {}
            self._checked = False
            await client.aclose()

    # Internals.

    async def _redis(self) -> Redis:
        """Return the client, built (and the server checked) on first use."""
        if self._checked and self._client is not None:
            return self._client
        if self._ready is None:
            self._ready = asyncio.Lock()
        async with self._ready:
            if self._client is None:
                self._client = Redis(
                    **self._settings,
                    decode_responses=False,
                    # The driver retries within its deadlines; redis-py's own
                    # retries would back off blind to them.
                    retry=Retry(NoBackoff(), 0),
                    client_name="casstore",
                )
            if not self._checked:
                await self._check_server(self._client)
                self._checked = True
        return self._client

    async def _check_server(self, client: Redis) -> None:
        """Refuse an evicting policy (errors are translated by the caller's operation)."""
        try:
            config = await client.config_get("maxmemory-policy")
        except rx.ResponseError as exc:  # CONFIG renamed or refused (managed services)
            if isinstance(exc, rx.NoPermissionError) or "unknown command" in str(exc):
                _log.warning(
                    "cannot read maxmemory-policy (%s); make sure the server never "
                    "evicts casstore's keys%s",
                    exc,
                    self._where(""),
                )
                return
            raise
        values: dict[Any, Any] = dict(config)
        raw = values.get(b"maxmemory-policy", values.get("maxmemory-policy", b""))
        policy = raw.decode() if isinstance(raw, bytes) else str(raw)
        safe = policy == "noeviction" or (policy.startswith("volatile-") and not self._ttl_ms)
        if not safe and not self._allow_eviction:
            why = (
                "with a ttl, objects carry an expiry, which volatile-* policies evict"
                if policy.startswith("volatile-")
                else "it may evict any key"
            )
            raise ConfigurationError(
                f"Redis maxmemory-policy is {policy!r}: {why}, and an evicted object is a "
                "payload lost while workflow histories still reference it; set "
                "maxmemory-policy noeviction on the server, or pass allow_eviction=true to "
                f"accept that{self._where('')}"
            )

    async def _run(self, script: str, keys: list[str], args: list[Any] | None = None) -> Any:
        """Run one of the Lua scripts (``EVALSHA``, loaded on first use)."""
        client = await self._redis()
        found = self._scripts.get(script)
        if found is None:
            found = client.register_script(getattr(_scripts, script.upper()))
            self._scripts[script] = found
        return await found(keys=keys, args=args or [])

    async def _list(self, prefix: str, *, times: bool) -> AsyncIterator[tuple[str, int, datetime]]:
        if not isinstance(prefix, str) or not _SCAN_PREFIX_RE.fullmatch(prefix):
            raise ValueError(f"invalid scan prefix {prefix!r}")
        match = self._root + prefix + "*"
        seen: set[str] = set()  # SCAN may return a key more than once
        cursor = 0
        while True:
            with self._translate("scan", self._root + prefix, of_object=False):
                client = await self._redis()
                cursor, names = await client.scan(
                    cursor, match=match, count=_SCAN_COUNT, _type="string"
                )
                keys = [key for key in map(self._key_of, names) if key and key not in seen]
                seen.update(keys)
                rows: list[Any] = []
                if keys:
                    async with client.pipeline(transaction=False) as pipe:
                        for key in keys:
                            pipe.exists(self._root + key)
                            pipe.strlen(self._root + key)
                        if times:
                            pipe.mget([self._times + key for key in keys])
                            pipe.time()
                        rows = await pipe.execute()
            now_ms = 0
            stamps: list[Any] = [None] * len(keys)
            if times and keys:
                seconds, micros = rows[-1]
                now_ms = int(seconds) * 1000 + int(micros) // 1000
                stamps = rows[-2]
            for index, key in enumerate(keys):
                if rows[2 * index]:  # deleted since SCAN saw it: skip
                    stamp = stamps[index]
                    modified = _from_ms(int(stamp) if stamp is not None else now_ms)
                    yield key, int(rows[2 * index + 1]), modified
            if cursor == 0:
                return

    def _key_of(self, name: bytes | str) -> str | None:
        """The casstore key of a Redis key SCAN returned; None for a foreign one."""
        raw = name.decode("utf-8", "replace") if isinstance(name, bytes) else name
        text = raw[len(self._root) :]
        try:
            return check_key(text)
        except ValueError:
            return None

    def _expiry(self, key: str) -> int:
        """The TTL (ms) ``key`` gets: the lifecycle manifest and other metadata never expire."""
        if key.startswith(_METADATA) and not key.startswith(_TRASH):
            return 0
        return self._ttl_ms

    def _not_found(self, key: str, name: str) -> ObjectNotFoundError:
        return ObjectNotFoundError(
            f"object not found in Redis{self._where(name)}", key=key, backend=describe_backend(self)
        )

    def _where(self, name: str) -> str:
        key = f", key={name}" if name else ""
        return f" [host={self._host}, db={self._db}{key}]"

    def _translate(
        self, operation: str, name: str, *, of_object: bool = True
    ) -> AbstractContextManager[None]:
        def about() -> Where:
            key = name[len(self._root) :] if of_object and name else None
            return Where(self._where(name), key, describe_backend(self))

        return translate_errors(operation, about)


def _from_ms(stamp: Any) -> datetime:
    return datetime.fromtimestamp(int(stamp) / 1000, UTC)
