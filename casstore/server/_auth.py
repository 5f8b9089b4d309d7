"""Authorization hooks: who may decode which namespace's payloads."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Mapping

from casstore.errors import ConfigurationError

Authorizer = Callable[[Mapping[str, str], str], bool | Awaitable[bool]]
"""``(request headers, namespace) -> allowed``; may be async. Header names are lower-case.

Plug JWT/JWKS checks in here: the Web UI sends ``Authorization: Bearer <access
token>`` and ``Authorization-Extras: <id token>`` when "pass access token" is on,
and ``X-Namespace``, which the server has already turned into ``namespace``.
"""


def bearer_token_authorizer(token: str) -> Authorizer:
    """An authorizer that allows requests carrying ``Authorization: Bearer <token>``.

    The scheme is case-insensitive (RFC 7235: ``bearer``, ``BEARER``), separated
    from the token by one or more spaces; the token is compared in constant
    time. Every namespace is allowed to a holder of the token.

    Raises:
        ConfigurationError: For an empty token.
    """
    if not token:
        raise ConfigurationError("the bearer token must not be empty")
    expected = token.encode()

    def authorize(headers: Mapping[str, str], namespace: str) -> bool:
        del namespace  # one token for every namespace
        scheme, _, credentials = headers.get("authorization", "").strip().partition(" ")
        if scheme.lower() != "bearer":
            return False
        given = credentials.lstrip(" ").encode("utf-8", "surrogateescape")
        return hmac.compare_digest(given, expected)

    return authorize
