"""``python -m nirguard`` runs the command line."""

import sys

from nirguard.cli import main

sys.exit(main())
