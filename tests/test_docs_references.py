"""What ships speaks of the product: no tracker references, no build history, no machine paths.

The package, the benchmarks and the docs are read by users who have neither
the issue tracker nor the machine a page was written on: a sentence that
cites "issue 13" or a sample output showing a checkout's absolute path tells
them nothing. These tests read every shipped text file and fail on such
references, and check that every relative link in the docs reaches a file.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHIPPED_TREES = ("casstore", "benchmarks", "docs")
SHIPPED_FILES = ("README.md", "CONTRIBUTING.md")
TEXT_SUFFIXES = {".py", ".md", ".txt", ".toml", ".cfg", ".ini", ".json", ".html", ".js", ".css"}

FORBIDDEN = {
    "an issue number": re.compile(r"\bissues?[ -]?#?\d+", re.IGNORECASE),
    # "#12" cited as an issue; not a colour ("#999999" is quoted, "#4c72b0" has letters).
    "a #number": re.compile(r"(?<![\w&#\"'/])#\d+\b(?![-\w])"),
    "the issue as a source": re.compile(
        r"\bthe issue(?:'s| (?:asked|asks|says|said|names|named|wants|wanted|requires))\b",
        re.IGNORECASE,
    ),
    "other engineers": re.compile(r"\b(?:other|another) engineers?\b", re.IGNORECASE),
    "a path of the machine it was written on": re.compile(
        r"(?<![\w.~])/(?:work|root|home/[\w.-]+|tmp/(?:tmp|pytest|casstore|bench))\b/?"
    ),
}


def shipped_text_files() -> list[Path]:
    found = [REPO_ROOT / name for name in SHIPPED_FILES if (REPO_ROOT / name).is_file()]
    for tree in SHIPPED_TREES:
        found += sorted(
            path
            for path in (REPO_ROOT / tree).rglob("*")
            if path.is_file() and path.suffix in TEXT_SUFFIXES and "__pycache__" not in path.parts
        )
    return found


def references_in(text: str) -> list[str]:
    found = []
    for number, line in enumerate(text.splitlines(), start=1):
        for what, pattern in FORBIDDEN.items():
            match = pattern.search(line)
            if match:
                found.append(f"line {number}: {what}: {match.group(0)!r} in {line.strip()!r}")
    return found


def test_every_shipped_tree_is_read() -> None:
    names = {path.relative_to(REPO_ROOT).parts[0] for path in shipped_text_files()}
    assert {"casstore", "benchmarks", "docs", "README.md"} <= names, names


@pytest.mark.parametrize(
    "line",
    [
        "One line per goal of issue #5.",
        "as issue 13 asks",
        "see [obstore](#casstore-on-obstore-issue-13)",
        "fixed in #42, see there",
        "The issue asked for a deliberate choice",
        "the issue's goals with the measured figure",
        "while other engineers ran their own benchmarks",
        "  store      /work/main/casstore-demo-data (LocalBackend)",
        "written to /root/casstore/bench-results",
        "/home/alice/src/casstore/README.md",
    ],
)
def test_the_patterns_catch_references(line: str) -> None:
    assert references_in(line), line


@pytest.mark.parametrize(
    "line",
    [
        'colors = {"store": "#4c72b0", "floor": "#999999"}',
        "#### Fan-out: one 1 MiB JSON input",
        "See [Writing a backend](#writing-a-backend).",
        "An issue with rclone: it ignores If-None-Match.",
        "find /var/lib/casstore -type f -mtime +30 -delete",
        "store      casstore-demo-data (LocalBackend)",
    ],
)
def test_the_patterns_leave_product_text_alone(line: str) -> None:
    assert not references_in(line), references_in(line)


@pytest.mark.parametrize("path", shipped_text_files(), ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_shipped_text_speaks_only_of_the_product(path: Path) -> None:
    found = references_in(path.read_text(encoding="utf-8"))
    assert not found, f"{path.relative_to(REPO_ROOT)}:\n" + "\n".join(found)


LINK = re.compile(r"(?<!\!)\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)|!\[[^\]]*\]\(([^)\s]+)\)")
REPO_URL = "https://github.com/casstore/casstore/blob/main/"


def markdown_pages() -> list[Path]:
    pages = [REPO_ROOT / "README.md", REPO_ROOT / "CONTRIBUTING.md"]
    return [*pages, *sorted((REPO_ROOT / "docs").glob("*.md"))]


def links_in(page: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.DOTALL)
    return [a or b for a, b in LINK.findall(text)]


def anchors_of(page: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens.

    A repeated heading gets ``-1``, ``-2``, ... in the order it appears, as on GitHub.
    """
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.DOTALL)
    anchors = set()
    seen: dict[str, int] = {}
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*$", text, flags=re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(f"{slug}-{count}" if count else slug)
    return anchors


@pytest.mark.parametrize("page", markdown_pages(), ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_every_link_in_the_docs_reaches_a_file(page: Path) -> None:
    broken = []
    for link in links_in(page):
        target = link
        if target.startswith(REPO_URL):
            # Absolute links into this repository (the README's, for the package index).
            target = str(REPO_ROOT / target.removeprefix(REPO_URL))
        elif urlsplit(target).scheme in ("http", "https", "mailto"):
            continue
        path_part, _, anchor = target.partition("#")
        if path_part:
            resolved = Path(path_part) if Path(path_part).is_absolute() else page.parent / path_part
            resolved = Path(unquote(str(resolved)))
        else:
            resolved = page
        if not resolved.exists():
            broken.append(f"{link}: no file {resolved}")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors_of(resolved):
            broken.append(f"{link}: no heading #{anchor} in {resolved.name}")
    assert not broken, f"{page.relative_to(REPO_ROOT)}:\n" + "\n".join(broken)


def test_the_driver_page_documents_every_driver_option() -> None:
    from casstore._driver_options import DriverOptions

    text = (REPO_ROOT / "docs" / "driver.md").read_text(encoding="utf-8")
    table = text[text.index("| `CasStorageDriver` option |") :].split("\n\n", 1)[0]
    documented = set(re.findall(r"^\| `(\w+)` \|", table, flags=re.MULTILINE))
    assert documented == set(DriverOptions.__annotations__), (
        f"undocumented: {sorted(set(DriverOptions.__annotations__) - documented)}, "
        f"not options: {sorted(documented - set(DriverOptions.__annotations__))}"
    )
