"""Running ``casstore`` commands from tests as a user runs them, and S3 stores they can open."""

from __future__ import annotations

import asyncio
import io
import json
import sys
from dataclasses import dataclass
from typing import Any

import pytest

from casstore._cli import main as cli_main
from tests.support.s3 import S3Place


def s3_url(place: S3Place, *, endpoint_url: str | None = None, client: str | None = None) -> str:
    """The URL a user would give for the place (credentials come from the environment).

    Without ``client`` the URL names none, so it builds the default client
    (obstore); ``client="aioboto3"`` asks for the other one.
    """
    target = place.target
    url = (
        f"s3://{place.bucket}/{place.prefix}?endpoint_url={endpoint_url or target.endpoint_url}"
        f"&region={target.region}&conditional_writes={str(target.conditional_writes).lower()}"
    )
    return url + (f"&client={client}" if client else "")


@dataclass
class Result:
    """A finished command: exit status, stdout, stderr."""

    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


async def cli(capsys: pytest.CaptureFixture[str], *argv: str, stdin: str | None = None) -> Result:
    """Run ``casstore ARGV`` as a user would, in a thread with its own event loop."""
    out = io.StringIO()
    capsys.readouterr()

    def run() -> int:

        saved = sys.stdin
        if stdin is not None:
            sys.stdin = io.StringIO(stdin)
        try:
            return cli_main(list(argv), out=out)
        except SystemExit as exc:  # argparse
            return int(exc.code or 0)
        finally:
            sys.stdin = saved

    code = await asyncio.to_thread(run)
    captured = capsys.readouterr()  # argparse writes --help and usage to sys.stdout/stderr
    return Result(code, out.getvalue() + captured.out, captured.err)


def assert_one_line_error(result: Result, *words: str) -> None:
    """Exit 2, one line on stderr naming ``words``, no traceback."""
    assert result.code == 2, result
    assert "Traceback" not in result.err
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    for word in words:
        assert word in lines[0], lines[0]
