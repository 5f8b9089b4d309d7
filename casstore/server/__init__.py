"""A Codec Server for casstore: see stored payloads in the Temporal Web UI and CLI.

::

    from casstore.server import create_app

    app = create_app("s3://temporal-payloads/prod", cors_origins=["http://localhost:8233"])
    # uvicorn module:app, or mount it: fastapi_app.mount("/codec", app)

Or from the command line: ``casstore serve --store URL``. Needs the ``server``
extra (``pip install 'casstore[server]'``); without it this package still
imports (the CLI lists ``serve``), and using any name below raises a
:class:`~casstore.errors.ConfigurationError` that says what to install. See
docs/codec-server.md.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from casstore.server._app import create_app
    from casstore.server._auth import Authorizer, bearer_token_authorizer
    from casstore.server._namespaces import ClaimNamespace

__all__ = ["Authorizer", "ClaimNamespace", "bearer_token_authorizer", "create_app"]

_HOMES = {
    "create_app": "casstore.server._app",
    "Authorizer": "casstore.server._auth",
    "bearer_token_authorizer": "casstore.server._auth",
    "ClaimNamespace": "casstore.server._namespaces",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'casstore.server' has no attribute {name!r}")
    _require_server_extra()
    return getattr(importlib.import_module(home), name)


def _require_server_extra() -> None:
    """Raise a ConfigurationError with the install hint if the web stack is missing."""
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        from casstore.errors import ConfigurationError

        raise ConfigurationError(
            "the casstore codec server needs the 'server' extra: "
            f"pip install 'casstore[server]' [missing module: {exc.name}]"
        ) from exc
