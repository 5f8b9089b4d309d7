"""The lifecycle manifest: its stored format, how writers agree on it, and gc's checks."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest

from casstore._format.keys import is_object_key
from casstore._format.manifest import MANIFEST_KEY, LifecyclePolicy
from casstore._format.trash import trash_key
from casstore._freshness import ensure_policy, read_policy
from casstore.backends import LocalBackend, MemoryBackend
from casstore.errors import ConfigurationError
from casstore.ops._gc_rule import check_collectable, min_grace, min_older_than

GOLDEN = b'{"format":1,"refresh_after_seconds":86400.0,"claim_delay_seconds":3600.0}'


def test_manifest_format_1_is_pinned() -> None:
    assert LifecyclePolicy().encode() == GOLDEN
    assert LifecyclePolicy.decode(GOLDEN) == LifecyclePolicy(
        refresh_after=timedelta(days=1), claim_delay=timedelta(hours=1)
    )


def test_manifest_ignores_fields_a_later_format_1_writer_adds() -> None:
    data = b'{"format":1,"refresh_after_seconds":60,"claim_delay_seconds":5,"note":"x"}'
    policy = LifecyclePolicy.decode(data)
    assert policy.refresh_after == timedelta(minutes=1)
    assert policy.claim_delay == timedelta(seconds=5)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"not json", "not a JSON object"),
        (b"[1,2]", "not a JSON object"),
        (b'{"format":2,"refresh_after_seconds":1,"claim_delay_seconds":1}', "format 2"),
        (b'{"refresh_after_seconds":1,"claim_delay_seconds":1}', "format None"),
        (b'{"format":1,"claim_delay_seconds":1}', "refresh_after_seconds"),
        (b'{"format":1,"refresh_after_seconds":"1","claim_delay_seconds":1}', "Expected `float`"),
        (b'{"format":1,"refresh_after_seconds":0,"claim_delay_seconds":1}', "must be positive"),
        (b'{"format":1,"refresh_after_seconds":1,"claim_delay_seconds":-1}', "must be positive"),
        (b'{"format":1,"refresh_after_seconds":1e308,"claim_delay_seconds":1}', "invalid"),
        (b" " * 70_000, "above 65536"),
    ],
)
def test_untrustworthy_manifests_are_refused_naming_the_key(data: bytes, expected: str) -> None:
    with pytest.raises(ConfigurationError, match=expected) as caught:
        LifecyclePolicy.decode(data)
    assert MANIFEST_KEY in str(caught.value) or "must be positive" in str(caught.value)


async def test_the_first_writer_records_its_policy_and_later_ones_read_it(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path)
    assert await read_policy(backend) is None
    first = LifecyclePolicy(refresh_after=timedelta(hours=2))
    assert await ensure_policy(backend, first) == first
    assert await ensure_policy(backend, LifecyclePolicy(refresh_after=timedelta(days=9))) == first
    assert (tmp_path / "_casstore" / "li" / "lifecycle.json").read_bytes() == first.encode()


async def test_writers_racing_to_create_the_manifest_all_end_up_with_the_winners() -> None:
    backend = MemoryBackend()
    proposals = [LifecyclePolicy(refresh_after=timedelta(minutes=m)) for m in range(1, 21)]
    results = await asyncio.gather(*(ensure_policy(backend, p) for p in proposals))
    stored = await read_policy(backend)
    assert stored in proposals
    assert set(results) == {stored}


def test_gc_refuses_a_grace_the_rule_does_not_cover() -> None:
    policy = LifecyclePolicy(refresh_after=timedelta(days=1), claim_delay=timedelta(hours=1))
    assert min_grace(policy) == timedelta(hours=26)
    check_collectable(policy, grace=timedelta(hours=26))
    with pytest.raises(
        ConfigurationError, match=r"--grace 1d .* at least .* = 26h .*refresh_after=1d"
    ):
        check_collectable(policy, grace=timedelta(days=1))


def test_age_only_mode_refuses_an_age_not_comfortably_above_refresh_after() -> None:
    policy = LifecyclePolicy(refresh_after=timedelta(days=7), claim_delay=timedelta(hours=1))
    assert min_older_than(policy) == timedelta(days=14)
    check_collectable(policy, older_than=timedelta(days=14))
    with pytest.raises(ConfigurationError, match=r"--older-than 10d .* = 14d"):
        check_collectable(policy, older_than=timedelta(days=10))


def test_manifest_and_trash_keys_are_never_object_keys() -> None:
    key = "v1/default/order-42/" + "ab" * 32
    assert is_object_key(key)
    assert not is_object_key(MANIFEST_KEY)
    assert not is_object_key(trash_key(key))
    assert trash_key(key) == "_casstore/trash/" + key
