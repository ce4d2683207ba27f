"""``python -m symgrad`` runs the ``symgrad`` command (see :mod:`symgrad.cli`)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
