"""Where help text and error messages send users to read more.

An installed package has no ``docs/`` folder next to it, so user-facing text
names the published page (the project's Documentation URL) rather than a
path relative to a source checkout.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the driver imports this module; only the CLI needs argparse
    import argparse

__all__ = ["DOCS_URL", "docs_url", "link_docs"]

DOCS_URL = "https://github.com/casstore/casstore/blob/main/docs"
"""The published docs folder; ``tests/test_docs_links.py`` ties it to pyproject."""


def docs_url(page: str) -> str:
    """The published address of ``page`` (a file name in docs/, e.g. ``operations.md``)."""
    return f"{DOCS_URL}/{page}"


def link_docs(parser: argparse.ArgumentParser, what: str, page: str) -> None:
    """End ``parser``'s ``--help`` with a line naming the published ``page``.

    Argument help is wrapped to a narrow column, which would cut a URL in two;
    the epilog is as wide as the terminal, so links go there and argument help
    names the page ("backends.md, linked below").
    """
    line = f"{what}: {docs_url(page)}."
    if parser.epilog is None:
        parser.epilog = line
    elif line not in parser.epilog:
        parser.epilog = f"{parser.epilog} {line}"
