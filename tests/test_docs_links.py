"""Help text and error messages point at documentation an installed package can reach."""

from __future__ import annotations

import argparse
import re
import tomllib
from pathlib import Path

import pytest

from casstore import CasStorageDriver
from casstore._cli import _parser
from casstore._docs import DOCS_URL
from casstore.backends import MemoryBackend
from casstore.errors import ConfigurationError

ROOT = Path(__file__).resolve().parents[1]


def _every_help(parser: argparse.ArgumentParser) -> str:
    """The --help output of ``parser`` and of every subcommand below it."""
    texts = [parser.format_help()]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            texts += [_every_help(sub) for sub in action.choices.values()]
    return "\n".join(texts)


def test_docs_url_is_the_projects_documentation_url() -> None:
    urls = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["urls"]
    # pyproject names the folder (tree/), help text names files in it (blob/).
    assert DOCS_URL.replace("/blob/", "/tree/", 1) == urls["Documentation"]


def test_help_links_whole_published_pages_that_exist(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "100")  # a URL must survive wrapping on a common terminal
    text = _every_help(_parser())
    pages = re.findall(re.escape(DOCS_URL) + r"/([\w.-]+\.md)", text)
    assert len(pages) == text.count("https://"), "a link was cut by wrapping"
    assert {"backends.md", "operations.md", "codec-server.md", "encryption.md"} <= set(pages)
    for page in pages:
        assert (ROOT / "docs" / page).is_file(), page
    bare = re.sub(re.escape(DOCS_URL) + r"/[\w.-]+\.md", "", text)
    assert not re.search(r"docs/[\w.-]+\.md", bare), "help names a checkout-relative docs path"


def test_driver_errors_link_the_published_page() -> None:
    with pytest.raises(ConfigurationError) as info:
        CasStorageDriver(MemoryBackend(), require_encryption=True)
    assert f"{DOCS_URL}/encryption.md" in str(info.value)
