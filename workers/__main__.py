"""``python -m workers``: the command line (``workers.entrypoints.cli``)."""

import sys

from workers.entrypoints.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
