"""Running code in a fresh interpreter, optionally with some packages unimportable.

Import-time behaviour (lazy imports, install hints for a missing extra, what a
module drags in) can only be seen in a process that has imported nothing yet.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

_BLOCKER = """\
import sys as _sys

class _Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ImportError(f"No module named {{name!r}}")

_sys.meta_path.insert(0, _Block())
"""


def run_fresh(code: str, *, blocked: Sequence[str] = ()) -> subprocess.CompletedProcess[str]:
    """Run ``code`` (dedented) in a new interpreter at the repository root.

    Top-level packages named in ``blocked`` raise ``ImportError`` as if not
    installed. The caller checks the exit status and output.
    """
    prelude = _BLOCKER.format(blocked=tuple(blocked)) if blocked else ""
    return subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
