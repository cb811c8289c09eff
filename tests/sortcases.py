"""The reference tool's cases from fixtures/*/expected/index.tsv, and our known deviations."""

from __future__ import annotations

import csv
import functools
import lzma
import shlex
from dataclasses import dataclass
from pathlib import Path

from pageowner.sort.options import SHORT_SORT_FLAGS

ROOT = Path(__file__).resolve().parents[1]
INDEXES = sorted((ROOT / "fixtures").glob("*/expected/index.tsv"))


@dataclass(frozen=True)
class Case:
    """One row of an index.tsv: run the tool with `args` on `input`, expect `expected`."""

    suite: str  # "real" or "cases"
    input: str
    label: str
    args: tuple[str, ...]
    expected: str
    tool: str
    rc: int

    @property
    def id(self) -> str:
        """Name the case for pytest."""
        return f"{self.suite}/{self.input.split('.page_owner')[0]}:{self.label}"

    @property
    def input_path(self) -> str:
        """Return the input path relative to fixtures/."""
        return f"{self.suite}/{self.input}"

    @property
    def expected_path(self) -> str:
        """Return the expected output path relative to fixtures/."""
        return f"{self.suite}/expected/{self.expected}"

    @property
    def short_flags(self) -> list[str]:
        """Return the short sort flags among the arguments."""
        flags = []
        for arg in self.args:
            if arg.startswith("-") and not arg.startswith("--"):
                flags += [letter for letter in arg[1:] if letter in SHORT_SORT_FLAGS]
        return flags

    @property
    def sort_ignored_by_tool(self) -> bool:
        """Tell whether the 6.12 or 7.3 tool ignored this row's --sort (docs/compat.md, 1).

        tools/mm/page_owner_sort of 6.12 and 7.3 resets the sort order to "times" after
        parsing when no short sort flag was given, so its --sort does nothing.
        """
        return (
            self.tool in ("page_owner_sort-6.12", "page_owner_sort-7.3")
            and any(arg.startswith("--sort") for arg in self.args)
            and not self.short_flags
        )

    @property
    def drops_last_record(self) -> bool:
        """Tell whether the input lacks the final blank line the tool needs (compat 2)."""
        return _ends_without_blank_line(self.input_path)


@functools.cache
def _ends_without_blank_line(relative: str) -> bool:
    """Tell whether a fixture's text lacks the blank line after its last record."""
    data = (ROOT / "fixtures" / relative).read_bytes()
    if relative.endswith(".xz"):
        data = lzma.decompress(data)
    return data[-2:] != b"\n\n"


def load_cases() -> list[Case]:
    """Read every index.tsv row."""
    cases = []
    for index in INDEXES:
        with index.open(newline="") as handle:
            for row in csv.DictReader(handle, delimiter="\t"):
                cases.append(
                    Case(
                        suite=index.parent.parent.name,
                        input=row["input"],
                        label=row["label"],
                        args=tuple(shlex.split(row["args"])),
                        expected=row["expected"],
                        tool=row["tool"],
                        rc=int(row["rc"]),
                    )
                )
    return cases


def without_sort(args: tuple[str, ...]) -> list[str]:
    """Drop --sort (and its value) from an argument list."""
    out: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
            continue
        if arg == "--sort":
            skip = True
            continue
        if arg.startswith("--sort="):
            continue
        out.append(arg)
    return out
