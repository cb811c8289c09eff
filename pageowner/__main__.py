"""Run the command line: `python -m pageowner`."""

from __future__ import annotations

import sys

from pageowner.cli import main

if __name__ == "__main__":
    sys.exit(main())
