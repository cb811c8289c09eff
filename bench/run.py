"""Run every bench/*_bench.py and print their figures (`make bench`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def main() -> int:
    """Run each benchmark script in turn; return non-zero if any failed."""
    here = Path(__file__).resolve().parent
    failed = 0
    for script in sorted(here.glob("*_bench.py")):
        print(f"== {script.name}", flush=True)
        failed |= subprocess.call([sys.executable, str(script), *sys.argv[1:]]) != 0
        print(flush=True)
    return failed


if __name__ == "__main__":
    sys.exit(main())
