import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from casstore.backends import Backend, LocalBackend
from casstore.errors import BackendError
from casstore.testing import BackendTests


class TestLocalBackend(BackendTests):
    @pytest.fixture
    async def backend(self, tmp_path: Path) -> AsyncIterator[LocalBackend]:
        async with LocalBackend(tmp_path / "store") as backend:
            yield backend

    async def raw_get(self, backend: Backend, key: str) -> bytes:
        assert isinstance(backend, LocalBackend)
        return backend.path_for(key).read_bytes()

    async def raw_put(self, backend: Backend, key: str, data: bytes) -> None:
        assert isinstance(backend, LocalBackend)
        backend.path_for(key).parent.mkdir(parents=True, exist_ok=True)
        backend.path_for(key).write_bytes(data)

    async def test_objects_are_sharded_and_no_temp_files_remain(self, tmp_path: Path) -> None:
        backend = LocalBackend(tmp_path)
        key = "v1/default/wf/" + "ab" * 32
        await backend.put(key, b"data")
        assert (tmp_path / "v1/default/wf/ab" / ("ab" * 32)).read_bytes() == b"data"
        assert [p.name for p in tmp_path.rglob(".*")] == []

    async def test_no_path_outside_root_is_ever_written(self, tmp_path: Path) -> None:
        backend = LocalBackend(tmp_path / "root")
        for key in ("../x", "v1/../../x", "v1/%2E%2E/x"):
            with contextlib.suppress(ValueError):
                await backend.put(key, b"data")
        outside = [p for p in tmp_path.rglob("*") if not p.is_relative_to(tmp_path / "root")]
        assert outside == []

    async def test_root_that_is_a_file_is_a_backend_error(self, tmp_path: Path) -> None:
        (tmp_path / "file").write_bytes(b"")
        with pytest.raises(BackendError, match="file"):
            LocalBackend(tmp_path / "file")
