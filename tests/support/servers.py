"""The registry of fixtures that start a real server, behind the ``integration`` marker.

Define a fixture that starts (or reaches) a server with :func:`server_fixture`
instead of ``pytest.fixture``: every test that uses it, directly or through
other fixtures, is then marked ``integration`` (tests/conftest.py), so that
``pytest -m "not integration"`` leaves it out without anyone remembering to.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, TypeVar, cast

import pytest

F = TypeVar("F", bound=Callable[..., Any])

SERVER_FIXTURES: set[str] = set()
"""Names of the fixtures defined with :func:`server_fixture`, and of those listed by hand."""


def server_fixture(
    *, scope: Literal["session", "package", "module", "class", "function"] = "session"
) -> Callable[[F], F]:
    """``pytest.fixture(scope=scope)`` that also registers the fixture as a server."""

    def register(func: F) -> F:
        SERVER_FIXTURES.add(func.__name__)
        # pytest wraps the function in a fixture definition; callers see the function.
        return cast(F, pytest.fixture(scope=scope)(func))

    return register
