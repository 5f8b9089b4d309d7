"""Entry point: ``python -m benchmarks``."""

from benchmarks._cli import main

raise SystemExit(main())
