"""``python -m erasekit.cli``: the same as the ``erasekit`` command."""

import sys

from erasekit.cli import main

sys.exit(main())
