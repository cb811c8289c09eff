"""Every analysis command runs on every fixture it applies to (the goldens check content)."""

from __future__ import annotations

import json

import pytest

from tests.analyze_support import BIG_DUMP, CASE_DUMPS, REAL_DUMPS, SHOW_STACKS, fixture
from tests.analyze_support import run as run_cli

_ALL = [*REAL_DUMPS, *CASE_DUMPS, *SHOW_STACKS]


@pytest.mark.parametrize("name", [*_ALL, BIG_DUMP])
def test_flame_and_grep_run_on_every_fixture(name: str) -> None:
    path = fixture(name)
    html = run_cli(["flame", path])
    assert html.exit_code == 0, html.stderr
    assert html.stdout.startswith("<!DOCTYPE html>") and "</html>" in html.stdout
    count = run_cli(["grep", "-c", "-e", "_", path])
    assert count.exit_code == 0, count.stderr
    assert int(count.stdout) > 0


@pytest.mark.parametrize("name", _ALL)
@pytest.mark.parametrize(
    "args",
    [
        ["top", "--format", "json"],
        ["stats", "--format", "json"],
        ["flame", "--format", "speedscope"],
        ["diff", "--format", "json", "--by", "caller"],
    ],
    ids=lambda args: args[0],
)
def test_json_commands_run_on_every_fixture(name: str, args: list[str]) -> None:
    path = fixture(name)
    argv = [args[0], path, *args[1:]]
    if args[0] == "diff":
        argv.insert(1, fixture(SHOW_STACKS[0]))
    result = run_cli(argv)
    assert result.exit_code == 0, result.stderr
    assert isinstance(json.loads(result.stdout), dict)


@pytest.mark.parametrize("name", [*REAL_DUMPS, *CASE_DUMPS])
def test_frag_runs_on_every_dump(name: str) -> None:
    result = run_cli(["frag", fixture(name), "--format", "json"])
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["records"] > 0
