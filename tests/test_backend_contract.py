"""The backend contract's public pieces: check_key, conditional_writes, wrappers, the suite."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from casstore import open_backend
from casstore.backends import (
    Backend,
    CountingBackend,
    LocalBackend,
    MemoryBackend,
    ObjectStat,
    check_key,
)
from casstore.errors import ConfigurationError, ObjectNotFoundError
from casstore.testing import BackendTests
from tests.support.fresh import run_fresh

KEY = "v1/default/order-42/" + "ab" * 32


def test_check_key_is_public_and_rejects_what_escapes_a_root() -> None:
    assert check_key(KEY) == KEY
    for bad in ("../x", "v1/.hidden", "/abs", "v1//x", "v1/a b", ""):
        with pytest.raises(ValueError, match="invalid object key"):
            check_key(bad)


async def test_counting_backend_counts_requests_and_bytes_by_kind() -> None:
    backend = CountingBackend(MemoryBackend())
    assert await backend.put(KEY, b"12345") is True
    assert await backend.put(KEY, b"12345") is False
    assert await backend.stat(KEY) is not None
    assert await backend.get(KEY) == b"12345"
    await backend.touch(KEY)
    assert [k async for k, _ in backend.scan()] == [KEY]
    await backend.delete(KEY)
    assert backend.calls == {"put": 2, "stat": 1, "get": 1, "touch": 1, "scan": 1, "delete": 1}
    assert (backend.bytes_written, backend.bytes_read) == (10, 5)
    assert backend.describe() == {"backend": "memory"}


def test_counting_backend_needs_no_pytest() -> None:
    code = (
        "from casstore.backends import CountingBackend, MemoryBackend\n"
        "print(CountingBackend(MemoryBackend()).conditional_writes)\n"
    )
    result = run_fresh(code, blocked=["pytest", "_pytest"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "True"


async def test_wrappers_pass_conditional_writes_through() -> None:
    class LastWriterWins(MemoryBackend):
        conditional_writes = False

    assert CountingBackend(LastWriterWins()).conditional_writes is False
    assert CountingBackend(MemoryBackend()).conditional_writes is True


async def test_builtin_backends_put_key_and_backend_on_their_errors(tmp_path: Path) -> None:
    for backend in (MemoryBackend(), LocalBackend(tmp_path)):
        for call in (backend.get, backend.touch):
            with pytest.raises(ObjectNotFoundError) as info:
                await call(KEY)
            assert info.value.key == KEY
            assert info.value.backend == repr(backend)


# The conformance suite has no silent fallback for its raw accessors.


def test_a_suite_without_raw_accessors_fails_when_defined_saying_what_to_define() -> None:
    with pytest.raises(TypeError, match="TestNoRawAccessors must define raw_get and raw_put"):

        class TestNoRawAccessors(BackendTests):
            pass

    with pytest.raises(TypeError, match="TestHalf must define raw_put"):

        class TestHalf(BackendTests):
            async def raw_get(self, backend: Backend, key: str) -> bytes:
                return b""

    class SharedBase(BackendTests):  # not collected: may leave them to its subclasses
        pass

    assert issubclass(SharedBase, BackendTests)


# open_backend's keyword options (s3:// ones are in test_backend_s3.py).


def test_keyword_options_open_local_backends_and_override_the_query(tmp_path: Path) -> None:
    for backend in (
        open_backend(str(tmp_path / "a"), fsync=False),
        open_backend(f"file://{tmp_path}/b?fsync=true", fsync=False),
        open_backend(f"file://{tmp_path}/c?fsync=true", fsync="no"),
    ):
        assert isinstance(backend, LocalBackend)
        assert backend._fsync is False
    kept = open_backend(f"file://{tmp_path}/d?fsync=false", fsync=None)
    assert isinstance(kept, LocalBackend)
    assert kept._fsync is False


def test_memory_urls_take_no_keyword_options() -> None:
    assert isinstance(open_backend("memory://", **{}), MemoryBackend)
    with pytest.raises(ConfigurationError, match="unknown option 'fsync' for backend URL"):
        open_backend("memory://shared", fsync=False)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"compress": True}, r"unknown option 'compress' for backend URL \(expected: fsync\)"),
        ({"fsync": "maybe"}, "fsync must be true or false, got 'maybe'"),
        ({"fsync": 0}, "fsync must be true or false, got 0"),
    ],
)
def test_bad_keyword_options_name_the_option_and_the_url(
    tmp_path: Path, options: dict[str, object], message: str
) -> None:
    url = f"file://{tmp_path}/x"
    with pytest.raises(ConfigurationError, match=message) as info:
        open_backend(url, **options)
    assert f"[url={url}]" in str(info.value)


def test_open_backend_does_not_import_the_s3_backend_until_asked() -> None:
    code = (
        "import sys, casstore\n"
        "casstore.open_backend('memory://')\n"
        "print(any(name.startswith('casstore.backends.s3') for name in sys.modules))\n"
    )
    result = run_fresh(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


# A minimal third-party backend only needs the six methods.


class _Minimal(Backend):
    def __init__(self) -> None:
        self.inner = MemoryBackend()

    async def stat(self, key: str) -> ObjectStat | None:
        return await self.inner.stat(key)

    async def put(self, key: str, data: bytes) -> bool:
        return await self.inner.put(key, data)

    async def get(self, key: str, *, max_size: int | None = None) -> bytes:
        return await self.inner.get(key, max_size=max_size)

    async def touch(self, key: str) -> None:
        await self.inner.touch(key)

    async def delete(self, key: str) -> None:
        await self.inner.delete(key)

    async def scan(self, prefix: str = "") -> AsyncIterator[tuple[str, int]]:
        async for item in self.inner.scan(prefix):
            yield item


async def test_defaults_of_a_minimal_backend() -> None:
    async with _Minimal() as backend:
        assert backend.conditional_writes is True
        assert backend.describe() == {}
        assert repr(backend) == "_Minimal()"
