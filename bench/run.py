"""Run every bench/*_bench.py script in turn and print their figures (`make bench`).

Benchmarks print numbers; they never fail a build. Each script is run in its own
process so one's memory does not count against another's.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def main() -> int:
    """Run the benchmark scripts given on the command line, or all of them."""
    here = Path(__file__).resolve().parent
    names = sys.argv[1:]
    scripts = (
        [here / f"{name}_bench.py" for name in names]
        if names
        else sorted(here.glob("*_bench.py"))
    )
    status = 0
    for script in scripts:
        print(f"== {script.stem}", flush=True)
        result = subprocess.run([sys.executable, str(script)], check=False)
        status = status or result.returncode
    return status


if __name__ == "__main__":
    sys.exit(main())
