"""Every command on every text of fixtures/damaged/ (made by tools/make_damaged.py).

Each file is a real dump, report or show_* file cut to a few hundred records and damaged
one way; MANIFEST.tsv holds what a person counts in it. Every command must read that many
records (or fail with one line naming the file, for texts with nothing in them), and
none may end in a traceback.
"""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.analyze_support import ROOT
from tests.analyze_support import run as run_cli

DAMAGED = ROOT / "fixtures" / "damaged"


@dataclass(frozen=True)
class Entry:
    """One row of MANIFEST.tsv."""

    name: str
    records: int
    pages: int | None
    exit: int
    damage: str


def _entries() -> list[Entry]:
    with (DAMAGED / "MANIFEST.tsv").open() as manifest:
        return [Entry(row["file"], int(row["records"]),
                      None if row["pages"] == "-" else int(row["pages"]),
                      int(row["exit"]), row["damage"])  # fmt: skip
                for row in csv.DictReader(manifest, delimiter="\t")]


ENTRIES = _entries()
READABLE = [e for e in ENTRIES if e.exit == 0]
UNREADABLE = [e for e in ENTRIES if e.exit != 0]
STACKS_FILES = {e.name for e in ENTRIES if e.name.startswith("show_")}


def _path(entry: Entry) -> str:
    return str((DAMAGED / entry.name).relative_to(ROOT))


def _no_traceback(stderr: str) -> None:
    assert "Traceback" not in stderr, stderr


def test_the_corpus_is_what_the_script_makes(tmp_path: Path) -> None:
    # GIVEN tools/make_damaged.py WHEN run into an empty folder THEN it makes the same bytes
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "make_damaged.py"),
                             str(tmp_path)], check=False, capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 0, result.stderr
    made = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert made == {name: (DAMAGED / name).read_bytes() for name in made}
    assert set(made) == {e.name for e in ENTRIES} | {"MANIFEST.tsv"}


def test_manifest_lists_every_file() -> None:
    # GIVEN the corpus WHEN listed THEN each file has its row (and nothing else is there)
    names = {p.name for p in DAMAGED.iterdir()
             if p.is_file() and p.name not in ("MANIFEST.tsv", "README.md")}  # fmt: skip
    assert names == {e.name for e in ENTRIES}
    assert len(ENTRIES) >= 30


@pytest.mark.parametrize("entry", READABLE, ids=lambda e: e.name)
def test_grep_count_and_stats_count_what_a_person_counts(entry: Entry) -> None:
    # WHEN grep -c and stats read the damaged text
    grep = run_cli(["grep", "-c", _path(entry)])
    stats = run_cli(["stats", _path(entry), "--format", "json"])
    # THEN both count the records (a report's times, a log's pages, a show_* file's blocks)
    _no_traceback(grep.stderr + stats.stderr)
    assert grep.exit_code == 0, grep.stderr
    assert int(grep.stdout) == entry.records
    assert stats.exit_code == 0, stats.stderr
    data = json.loads(stats.stdout)
    if entry.name not in STACKS_FILES:
        assert data["records"] == entry.records
    if entry.pages is not None:
        assert data["pages"] == entry.pages


@pytest.mark.parametrize("entry", READABLE, ids=lambda e: e.name)
def test_top_diff_flame_frag_read_it(entry: Entry, tmp_path: Path) -> None:
    # WHEN top, diff (against itself), flame and frag read the damaged text
    top = run_cli(["top", _path(entry), "--format", "json", "--top", "0"])
    diff = run_cli(["diff", _path(entry), _path(entry), "--format", "csv"])
    flame = run_cli(["flame", _path(entry), "--format", "folded"])
    frag = run_cli(["frag", _path(entry), "--format", "json"])
    for result in (top, diff, flame, frag):
        _no_traceback(result.stderr)
    # THEN top ranks all its pages, the diff is empty, the flame graph weighs every page
    assert top.exit_code == 0, top.stderr
    assert diff.exit_code == 0, diff.stderr
    assert diff.stdout.count("\n") <= 1
    assert flame.exit_code == 0, flame.stderr
    folded = sum(int(line.rsplit(" ", 1)[1]) for line in flame.stdout.splitlines())
    ranked = json.loads(top.stdout)
    if entry.pages is not None:
        assert folded == entry.pages
        assert ranked["total_pages"] == entry.pages
    if entry.name not in STACKS_FILES:
        assert ranked["total_times"] == entry.records
    # AND frag reads every dump; a show_* file has no PFNs, which it says in one line
    if entry.name in STACKS_FILES:
        assert frag.exit_code == 1
        assert frag.stderr.strip().splitlines()[-1].endswith("frag needs a page_owner dump")
    else:
        assert frag.exit_code == 0, frag.stderr


@pytest.mark.parametrize("entry", [e for e in READABLE if e.name not in STACKS_FILES],
                         ids=lambda e: e.name)  # fmt: skip
def test_sort_counts_every_record(entry: Entry, tmp_path: Path) -> None:
    # WHEN sort reads the damaged text
    out = tmp_path / "sorted.txt"
    result = run_cli(["sort", _path(entry), str(out)])
    # THEN its groups add up to the records a person counts
    _no_traceback(result.stderr)
    assert result.exit_code == 0, result.stderr
    times = [int(m) for m in re.findall(r"^(\d+) times", out.read_text(), re.MULTILINE)]
    assert sum(times) == entry.records


@pytest.mark.parametrize("entry", UNREADABLE, ids=lambda e: e.name)
@pytest.mark.parametrize("command", ["grep", "top", "stats", "diff", "flame", "frag", "sort"])
def test_nothing_readable_is_one_line_naming_the_file(entry: Entry, command: str,
                                                      tmp_path: Path) -> None:  # fmt: skip
    # WHEN a command reads a text with no page_owner data in it
    args = {"grep": ["grep", "-c"], "diff": ["diff", _path(entry)],
            "sort": ["sort"]}.get(command, [command])  # fmt: skip
    tail = [str(tmp_path / "out.txt")] if command == "sort" else []
    result = run_cli([*args, _path(entry), *tail])
    # THEN it fails (exit 1) with one line that names the file
    _no_traceback(result.stderr)
    assert result.exit_code == entry.exit
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"pageowner: {_path(entry)}")
    assert not (tmp_path / "out.txt").exists()
