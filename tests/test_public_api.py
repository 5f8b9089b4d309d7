"""The public surface: names, URLs and the error hierarchy users program against."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import pytest

import casstore
import casstore.backends
import casstore.errors
from casstore import open_backend
from casstore.backends import LocalBackend, MemoryBackend
from casstore.errors import CasstoreError, ConfigurationError
from tests.support.fresh import run_fresh


def test_package_exports_exactly_its_public_names() -> None:
    for module in (casstore, casstore.backends, casstore.errors):
        names = {name for name in vars(module) if not name.startswith("_")} - {"annotations"}
        objects = {name for name in names if not isinstance(getattr(module, name), ModuleType)}
        if hasattr(module, "__version__"):
            objects.add("__version__")
        exported_modules = {n for n in module.__all__ if isinstance(getattr(module, n), ModuleType)}
        # Names the module resolves on first use (``__getattr__``) are exported too.
        objects |= {n for n in module.__all__ if n not in vars(module) and hasattr(module, n)}
        assert set(module.__all__) - exported_modules == objects, module.__name__


def test_the_plugin_is_exported_but_imported_only_when_used() -> None:
    code = (
        "import sys\n"
        "import casstore\n"
        "print('casstore.plugin' in sys.modules, 'temporalio.worker' in sys.modules)\n"
        "from casstore import CasStorePlugin\n"
        "import casstore.plugin\n"
        "print(CasStorePlugin is casstore.plugin.CasStorePlugin)\n"
        "print('CasStorePlugin' in casstore.__all__)\n"
    )
    assert _python(code).split() == ["False", "False", "True", "True"]
    with pytest.raises(AttributeError, match="no attribute 'CasStorePlugins'"):
        _ = casstore.CasStorePlugins


def _python(code: str, *, blocked: Sequence[str] = ()) -> str:
    """Run ``code`` in a fresh interpreter (nothing imported yet); return what it printed."""
    result = run_fresh(code, blocked=blocked)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_every_error_is_a_casstore_error() -> None:
    for name in casstore.errors.__all__:
        assert issubclass(getattr(casstore.errors, name), CasstoreError)
    assert issubclass(casstore.errors.ObjectNotFoundError, FileNotFoundError)


def test_import_needs_no_aws_libraries() -> None:
    code = (
        "import casstore, casstore.backends, casstore.testing\n"
        "print(casstore.CasStorageDriver.__name__)\n"
    )
    aws = ["aioboto3", "aiobotocore", "botocore", "boto3"]
    assert _python(code, blocked=aws).strip() == "CasStorageDriver"


def test_file_urls_and_plain_paths_open_a_local_backend(tmp_path: Path) -> None:
    for url in (f"file://{tmp_path}/a", str(tmp_path / "b"), f"file://{tmp_path}/c?fsync=false"):
        backend = open_backend(url)
        assert isinstance(backend, LocalBackend)
        assert backend.root.is_dir()
        assert str(backend.root).startswith(str(tmp_path))


def test_memory_urls_are_fresh_unless_named() -> None:
    assert open_backend("memory://") is not open_backend("memory://")
    shared = open_backend("memory://worker-and-client")
    assert isinstance(shared, MemoryBackend)
    assert open_backend("memory://worker-and-client") is shared


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://host/x", "unknown backend URL scheme 'ftp'"),
        ("file://relative/path", "absolute path"),
        ("file:///tmp/x?compress=yes", "unknown option 'compress'"),
        ("file:///tmp/x?fsync=maybe", "fsync must be true or false"),
        ("memory://?x=1", "unknown option 'x'"),
        ("", "non-empty string"),
    ],
)
def test_bad_urls_are_configuration_errors_naming_the_problem(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        open_backend(url)
