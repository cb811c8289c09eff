"""The atheris (libFuzzer) target: fuzz/targets.check_dump, pageowner instrumented.

Run through fuzz/run.py, which writes the seed corpus and dictionary and reads back how
many inputs libFuzzer tried. By hand: python fuzz/atheris_target.py -max_total_time=60 DIR
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

with atheris.instrument_imports(include=["pageowner", "fuzz"]):
    from fuzz.targets import check_dump


def test_one_input(data: bytes) -> None:
    """Check one input; an exception is a crash libFuzzer records."""
    check_dump(data)


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
