"""Shared helpers of the analysis-command tests: fixture paths, a CLI runner, goldens.

Goldens live in tests/golden/analyze/. To regenerate them after a deliberate change, run
`make golden` (PAGEOWNER_UPDATE_GOLDEN=1 pytest tests/test_analyze_golden.py) and review
the diff: each file must still be right, not just stable (see tests/golden/analyze/README.md).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from click.testing import CliRunner, Result

from pageowner.cli import cli

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT / "fixtures" / "real"
CASES = ROOT / "fixtures" / "cases"
GOLDEN = Path(__file__).resolve().parent / "golden" / "analyze"

# Every real page_owner dump but the 132 MB benchmark one, which few tests read.
REAL_DUMPS = (
    "5.10.223-boot.page_owner.txt.xz",
    "5.10.223-work.page_owner.txt.xz",
    "6.1.192-boot.page_owner.txt.xz",
    "6.12.117-work.page_owner.txt.xz",
)
BIG_DUMP = "6.1.192-work1g.page_owner.txt.xz"
SHOW_STACKS = ("6.12.117-boot.show_stacks.txt.xz", "6.12.117-work.show_stacks.txt.xz")
CASE_DUMPS = ("era-3.19.txt", "era-5.14.txt", "modern-6.12.txt", "no-final-blank-line.txt")

UPDATE = os.environ.get("PAGEOWNER_UPDATE_GOLDEN") == "1"


def fixture(name: str) -> str:
    """Return the path of a fixture, relative to the repository (goldens name it so)."""
    for folder in (REAL, CASES):
        if (folder / name).exists():
            return str((folder / name).relative_to(ROOT))
    raise FileNotFoundError(name)


def run(args: Sequence[str], stdin: bytes | None = None) -> Result:
    """Run `pageowner ARGS` from the repository root, as a user would."""
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        return CliRunner().invoke(cli, list(args), input=stdin, catch_exceptions=False)
    finally:
        os.chdir(cwd)


def check_golden(name: str, text: str) -> None:
    """Compare text with a golden file whole (or rewrite it when updating)."""
    path = GOLDEN / name
    if UPDATE:
        path.write_text(text, encoding="utf-8")
        return
    assert path.exists(), f"missing golden {path}; run `make golden` and review it"
    expected = path.read_text(encoding="utf-8")
    assert text == expected, f"{name} differs from its golden; see `make golden`"
