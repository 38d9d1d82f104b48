"""``python -m server`` is the ``ruang`` command."""

import sys

from server.cli import main

sys.exit(main())
