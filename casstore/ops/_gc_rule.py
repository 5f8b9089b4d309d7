"""gc's safety rule as arithmetic: the shortest grace and age a store's manifest allows.

The rule and why it holds are in docs/operations.md ("The safety rule"); the
manifest it reads is :mod:`casstore._format.manifest`.
"""

from __future__ import annotations

from datetime import timedelta

from casstore._format.manifest import LifecyclePolicy
from casstore.errors import ConfigurationError
from casstore.ops._durations import format_duration


def check_collectable(
    policy: LifecyclePolicy, *, grace: timedelta | None = None, older_than: timedelta | None = None
) -> None:
    """Refuse gc settings the safety rule (docs/operations.md) does not cover.

    Raises:
        ConfigurationError: Naming the setting, the minimum and where it comes from.
    """
    fmt = format_duration
    says = (
        f"(the store's lifecycle manifest says refresh_after={fmt(policy.refresh_after)}, "
        f"claim_delay={fmt(policy.claim_delay)})"
    )
    if grace is not None and grace < min_grace(policy):
        raise ConfigurationError(
            f"--grace {fmt(grace)} is too short for this store: it must be at least "
            f"refresh_after + 2 x claim_delay = {fmt(min_grace(policy))} {says}"
        )
    if older_than is not None and older_than < min_older_than(policy):
        raise ConfigurationError(
            f"--older-than {fmt(older_than)} is too short for this store: it must be at least "
            f"max(2 x refresh_after, refresh_after + 2 x claim_delay) = "
            f"{fmt(min_older_than(policy))} {says}"
        )


def min_grace(policy: LifecyclePolicy) -> timedelta:
    """The shortest grace gc accepts with Temporal marking (see docs/operations.md)."""
    return policy.refresh_after + 2 * policy.claim_delay


def min_older_than(policy: LifecyclePolicy) -> timedelta:
    """The shortest age gc accepts in age-only mode (see docs/operations.md)."""
    return max(2 * policy.refresh_after, min_grace(policy))
