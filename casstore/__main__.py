"""``python -m casstore``: the same command line as the ``casstore`` script."""

import sys

from casstore._cli import main

sys.exit(main())
