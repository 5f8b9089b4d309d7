"""open_backend: build a backend from a URL."""

from __future__ import annotations

import os
import threading
from urllib.parse import parse_qs, unquote, urlsplit

from casstore.backends._base import Backend
from casstore.backends._local import LocalBackend
from casstore.backends._memory import MemoryBackend
from casstore.errors import ConfigurationError

_named_memory: dict[str, MemoryBackend] = {}
_named_memory_lock = threading.Lock()

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def open_backend(url: str) -> Backend:
    """Open the backend a URL names.

    Supported URLs:

    * ``file:///abs/path`` or a plain path (``/var/lib/casstore``,
      ``./data``): a :class:`~casstore.backends.LocalBackend`; query option
      ``fsync=false`` turns off flushing to stable storage.
    * ``memory://``: a new :class:`~casstore.backends.MemoryBackend`;
      ``memory://NAME`` returns the same instance for the same name within
      this process (so a client and worker in one process can share it).
    * ``s3://bucket/prefix?...``: an :class:`~casstore.backends.s3.S3Backend`
      (needs ``pip install casstore[s3]``); see docs/backends.md for options.

    Raises:
        ConfigurationError: For an unknown scheme or a malformed URL, naming it.
    """
    if not isinstance(url, str) or not url:
        raise ConfigurationError(f"backend URL must be a non-empty string, got {url!r}")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "" or (len(scheme) == 1 and os.name == "nt"):
        return LocalBackend(url)
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise ConfigurationError(
                f"file URLs need an absolute path, like file:///var/lib/casstore [url={url}]"
            )
        options = url_options(url, parts.query, allowed={"fsync"})
        return LocalBackend(
            unquote(parts.path), fsync=url_flag(url, options, "fsync", default=True)
        )
    if scheme == "memory":
        url_options(url, parts.query, allowed=set())
        name = parts.netloc + parts.path
        if not name:
            return MemoryBackend()
        with _named_memory_lock:
            return _named_memory.setdefault(name, MemoryBackend())
    if scheme == "s3":
        from casstore.backends.s3 import S3Backend  # optional dependency

        return S3Backend.from_url(url)
    raise ConfigurationError(
        f"unknown backend URL scheme {parts.scheme!r}; expected file://, memory:// or s3:// "
        f"[url={url}]"
    )


def url_options(url: str, query: str, *, allowed: set[str]) -> dict[str, str]:
    """Parse a URL query, rejecting options not in ``allowed`` with a ConfigurationError."""
    options: dict[str, str] = {}
    for name, values in parse_qs(query, keep_blank_values=True, strict_parsing=False).items():
        if name not in allowed:
            expected = ", ".join(sorted(allowed)) or "none"
            raise ConfigurationError(
                f"unknown option {name!r} in backend URL (expected: {expected}) [url={url}]"
            )
        options[name] = values[-1]
    return options


def url_flag(url: str, options: dict[str, str], name: str, *, default: bool) -> bool:
    """Read a boolean query option (true/false, yes/no, on/off, 1/0)."""
    value = options.get(name)
    if value is None:
        return default
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise ConfigurationError(f"option {name} must be true or false, got {value!r} [url={url}]")
