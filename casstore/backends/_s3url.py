"""``s3://`` URLs: which client builds the store, and one set of option names for both.

An ``s3://`` URL builds an :class:`~casstore.backends.objectstore.ObjectStoreBackend`
(obstore) unless it says ``client=aioboto3``: on small payloads obstore's
requests cost a fraction of botocore's CPU, and small payloads are what
threshold 0 stores (docs/backends.md has the numbers). The options both
clients have take the same name whichever client reads them; the others name
the client they belong to when given to the other one, instead of being
dropped or failing deep inside a library.

This module imports neither client: it picks the backend, and each backend's
URL parser calls :func:`for_client` to read the options in its own spelling.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Literal
from urllib.parse import parse_qsl, urlsplit

from casstore.backends._urlopts import option_choice, option_flag, option_int
from casstore.errors import ConfigurationError

if TYPE_CHECKING:
    from casstore.backends._base import Backend

Client = Literal["obstore", "aioboto3"]
CLIENTS: tuple[Client, ...] = ("obstore", "aioboto3")
DEFAULT_CLIENT: Client = "obstore"
"""What ``s3://`` builds without ``client=``."""

DEFAULT_MAX_ATTEMPTS = 1
"""Attempts per request for a worker's store, whichever client: the driver
retries within each payload's deadline (docs/reliability.md)."""

# Options both clients read: documented name -> each client's own spelling.
_SHARED: dict[str, dict[Client, str]] = {
    "endpoint_url": {"aioboto3": "endpoint_url", "obstore": "endpoint"},
    "region": {"aioboto3": "region", "obstore": "region"},
    "profile": {"aioboto3": "profile", "obstore": "profile"},
    "connect_timeout": {"aioboto3": "connect_timeout", "obstore": "connect_timeout"},
    "read_timeout": {"aioboto3": "read_timeout", "obstore": "read_timeout"},
    "conditional_writes": {"aioboto3": "conditional_writes", "obstore": "conditional_writes"},
    # Translated by value below.
    "max_attempts": {"aioboto3": "max_attempts", "obstore": "max_retries"},
    "addressing_style": {"aioboto3": "addressing_style", "obstore": "virtual_hosted_style"},
}
ALIASES = {"endpoint": "endpoint_url", "max_retries": "max_attempts"}
"""Other spellings of shared options: obstore's names."""
_ALIAS_BY_VALUE = {"virtual_hosted_style": "addressing_style"}
ONLY: dict[str, Client] = {
    **dict.fromkeys(
        (
            "retry_mode",
            "max_pool_connections",
            "multipart_threshold",
            "multipart_part_size",
            "multipart_concurrency",
        ),
        "aioboto3",
    ),
    **dict.fromkeys(
        (
            "allow_http",
            "request_timeout",
            "retry_timeout",
            "touch",
            "metadata_endpoint",
            "config",
            "access_key_id",
            "secret_access_key",
            "session_token",
        ),
        "obstore",
    ),
}
"""Options only one client has."""


def s3_client(url: str, options: Mapping[str, object]) -> Client:
    """The client an ``s3://`` URL asks for: ``client=`` in keywords or query, else obstore."""
    given = options.get("client")
    if given is None:
        given = dict(parse_qsl(urlsplit(url).query)).get("client")
    choice = option_choice(url, {"client": given}, "client", CLIENTS)
    return choice or DEFAULT_CLIENT


def has_attempts(url: str, options: Mapping[str, object]) -> bool:
    """Whether the URL or keywords set the attempts per request (either spelling)."""
    names = {name for name, _ in parse_qsl(urlsplit(url).query)}
    names |= {name for name, value in options.items() if value is not None}
    return bool(names & {"max_attempts", "max_retries"})


def open_s3(url: str, options: dict[str, object]) -> Backend:
    """Open an ``s3://`` URL with the client it names (see the module docstring).

    A worker's store makes one attempt per request, whichever client: the
    driver retries within each payload's deadline.

    Raises:
        ConfigurationError: For an unknown client, an option of the other
            client, an option given under two names, or a bad value.
    """
    client = s3_client(url, options)
    if not has_attempts(url, options):
        options = {**options, "max_attempts": DEFAULT_MAX_ATTEMPTS}
    if client == "aioboto3":
        from casstore.backends.s3 import S3Backend  # optional dependency

        return S3Backend.from_url(url, **options)
    from casstore.backends.objectstore import ObjectStoreBackend  # optional dependency

    return ObjectStoreBackend.from_url(url, **options)


def for_client(url: str, options: Mapping[str, object], client: Client) -> dict[str, object]:
    """Return merged URL options in ``client``'s own spelling, without ``client``.

    Raises:
        ConfigurationError: For ``client=`` naming the other client, an option
            only the other client has, an option under two names, or a bad value.
    """
    asked = option_choice(url, options, "client", CLIENTS)
    if asked not in (None, client):
        raise ConfigurationError(f"client must be {client} for this backend [url={url}]")
    seen: dict[str, str] = {}
    return dict(
        _translate(url, client, name, value, seen)
        for name, value in options.items()
        if name != "client"
    )


ALL_NAMES = {"client", *_SHARED, *ALIASES, *_ALIAS_BY_VALUE, *ONLY}
"""Every option an ``s3://`` URL may carry, whichever client reads it."""


def _translate(
    url: str, client: Client, name: str, value: object, seen: dict[str, str]
) -> tuple[str, object]:
    """Return ``(name, value)`` in ``client``'s spelling."""
    if value is None:  # "not given"
        return name, value
    documented = ALIASES.get(name) or _ALIAS_BY_VALUE.get(name) or name
    if documented in _SHARED:
        earlier = seen.setdefault(documented, name)
        if earlier != name:
            raise ConfigurationError(
                f"options {earlier} and {name} are one option ({documented}); give it once "
                f"[url={url}]"
            )
    owner = ONLY.get(name)
    if owner is not None and owner != client:
        other = "client=aioboto3" if owner == "aioboto3" else "the default client (obstore)"
        raise ConfigurationError(
            f"option {name} applies only to {other}; this URL builds the {client} client "
            f"(add client={owner} or drop {name}) [url={url}]"
        )
    if documented not in _SHARED:
        return name, value
    target = _SHARED[documented][client]
    if documented == "max_attempts":
        return target, _attempts(url, client, name, value)
    if documented == "addressing_style":
        return target, _addressing(url, client, name, value)
    return target, value


def _attempts(url: str, client: Client, name: str, value: object) -> int:
    number = option_int(url, {name: value}, name)
    assert number is not None
    attempts = number + 1 if name == "max_retries" else number
    if attempts < 1:
        raise ConfigurationError(
            f"option {name} must be at least {0 if name == 'max_retries' else 1}, "
            f"got {value!r} [url={url}]"
        )
    return attempts if client == "aioboto3" else attempts - 1


def _addressing(url: str, client: Client, name: str, value: object) -> object:
    if name == "virtual_hosted_style":
        virtual = option_flag(url, {name: value}, name, default=False)
        return virtual if client == "obstore" else ("virtual" if virtual else "path")
    style = option_choice(url, {name: value}, name, ("auto", "path", "virtual"))
    return style == "virtual" if client == "obstore" else style
