"""open_backend: build a backend from a URL and keyword options."""

from __future__ import annotations

import os
import threading
from urllib.parse import unquote, urlsplit

from casstore.backends._base import Backend
from casstore.backends._local import LocalBackend
from casstore.backends._memory import MemoryBackend
from casstore.backends._s3url import open_s3
from casstore.backends._urlopts import merge_options, option_flag, redacted
from casstore.errors import ConfigurationError

_AZURE_SCHEMES = ("az", "azure", "abfs", "abfss", "adl")
_named_memory: dict[str, MemoryBackend] = {}
_named_memory_lock = threading.Lock()


def open_backend(url: str, **options: object) -> Backend:
    """Open the backend a URL names, with options from its query and from keywords.

    Supported URLs:

    * ``file:///abs/path`` or a plain path (``/var/lib/casstore``,
      ``./data``): a :class:`~casstore.backends.LocalBackend`; option
      ``fsync=false`` turns off flushing to stable storage.
    * ``memory://``: a new :class:`~casstore.backends.MemoryBackend`;
      ``memory://NAME`` returns the same instance for the same name within
      this process (so a client and worker in one process can share it).
    * ``s3://bucket/prefix?...``: an
      :class:`~casstore.backends.objectstore.ObjectStoreBackend` (obstore,
      needs ``pip install casstore[s3]``); with option ``client=aioboto3``, an
      :class:`~casstore.backends.s3.S3Backend` instead (needs
      ``pip install casstore[aioboto3]``). The same option names work with
      either client (docs/backends.md).
    * ``az://container/prefix?...`` (also ``azure://``, ``abfs://``,
      ``abfss://``, ``adl://``): an
      :class:`~casstore.backends.objectstore.ObjectStoreBackend` on Azure Blob
      Storage (needs ``pip install casstore[objectstore]``).

    * ``gs://bucket/prefix?...``: a :class:`~casstore.backends.gcs.GCSBackend`
      on Google Cloud Storage (needs ``pip install casstore[gcs]``).
    * ``redis://host:port/db?...`` (``rediss://`` for TLS): a
      :class:`~casstore.backends.redis.RedisBackend` (needs
      ``pip install casstore[redis]``).

    See docs/backends.md for each backend's options.

    Options go in the query (``?fsync=false``) or as keyword arguments
    (``fsync=False``), like obstore's ``from_url(url, **config)``; a keyword
    overrides the query option of the same name, and ``None`` means "not
    given". Keyword values are of the option's type or strings as in a query.

    Raises:
        ConfigurationError: For an unknown scheme or option, or a malformed URL
            or value, naming it and the URL.
    """
    if not isinstance(url, str) or not url:
        raise ConfigurationError(f"backend URL must be a non-empty string, got {url!r}")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "" or (len(scheme) == 1 and os.name == "nt"):
        return _local(url, url, "", options)  # a plain path: no query to parse
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            # file://tmp/x names host "tmp" and path /x; dropping the host would
            # silently open another folder. Three slashes start an absolute path.
            meant = "file:///" + (parts.netloc + parts.path).lstrip("/")
            raise ConfigurationError(
                f"file URL names a host ({parts.netloc!r}); file URLs take an absolute path "
                f"after three slashes: {meant} [url={url}]"
            )
        return _local(url, unquote(parts.path), parts.query, options)
    if scheme == "memory":
        merge_options(url, parts.query, options, allowed=set())
        name = parts.netloc + parts.path
        if not name:
            return MemoryBackend()
        with _named_memory_lock:
            return _named_memory.setdefault(name, MemoryBackend())
    if scheme in _AZURE_SCHEMES:
        from casstore.backends.objectstore import ObjectStoreBackend  # optional dependency

        return ObjectStoreBackend.from_url(url, **options)
    if scheme == "s3":
        return open_s3(url, options)
    if scheme == "gs":
        from casstore.backends.gcs import GCSBackend  # optional dependency

        return GCSBackend.from_url(url, **options)
    if scheme in ("redis", "rediss"):
        from casstore.backends.redis import RedisBackend  # optional dependency

        return RedisBackend.from_url(url, **options)
    raise ConfigurationError(
        f"unknown backend URL scheme {parts.scheme!r}; expected file://, memory://, s3://, "
        f"az:// (or azure://, abfs://, abfss://, adl://), gs://, redis:// or rediss:// "
        f"[url={redacted(url)}]"
    )


def _local(url: str, path: str, query: str, keywords: dict[str, object]) -> LocalBackend:
    options = merge_options(url, query, keywords, allowed={"fsync"})
    return LocalBackend(path, fsync=option_flag(url, options, "fsync", default=True))
