"""The rough edges a new user hit (issue 13), each pinned: terminals, exit codes, wording."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

from tests.analyze_support import ROOT, fixture
from tests.analyze_support import run as run_cli

MODERN = fixture("modern-6.12.txt")


def _on_a_terminal(args: list[str], cwd: Path = ROOT) -> tuple[int, str, str]:
    """Run `pageowner ARGS` with stdout on a pseudo-terminal; return status, stdout, stderr."""
    leader, follower = pty.openpty()
    try:
        done = subprocess.run([sys.executable, "-m", "pageowner", *args], stdout=follower,
                              stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, cwd=cwd,
                              timeout=120, check=False, env=dict(os.environ, COLUMNS="100"))
        os.close(follower)
        follower = -1
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the terminal's other side is closed and drained
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        if follower >= 0:
            os.close(follower)
        os.close(leader)
    return done.returncode, b"".join(chunks).decode(errors="replace"), done.stderr.decode()


@pytest.mark.parametrize("fmt", ["html", "speedscope", "pprof"])
def test_flame_refuses_a_document_on_a_terminal(fmt: str) -> None:
    status, out, err = _on_a_terminal(["flame", MODERN, "--format", fmt])
    assert status == 2
    assert out == ""
    assert err.splitlines()[-1] == (f"Error: --format {fmt} writes a document for a file "
                                    "or a program; use -o FILE (or --format folded)")


def test_flame_folded_still_goes_to_a_terminal() -> None:
    status, out, _ = _on_a_terminal(["flame", MODERN, "--format", "folded"])
    assert status == 0
    assert out.replace("\r\n", "\n") == run_cli(["flame", MODERN, "--format", "folded"]).stdout


def test_grep_follows_grep_exit_status() -> None:
    # Something selected: 0; nothing: 1, with -c printing 0 all the same.
    assert run_cli(["grep", "-c", "--name", "dd", MODERN]).exit_code == 0
    none = run_cli(["grep", "-c", "--name", "no-such-task", MODERN])
    assert (none.exit_code, none.stdout) == (1, "0\n")
    empty = run_cli(["grep", "--name", "no-such-task", MODERN])
    assert (empty.exit_code, empty.stdout) == (1, "")
    assert "exit status 0 when a record was selected, 1 when none was" in " ".join(
        run_cli(["grep", "--help"]).stdout.split())


@pytest.mark.parametrize(("command", "old", "new"), [
    (["top", MODERN, "--top", "2"], "--stacks", "--full-stacks"),
    (["diff", fixture("6.12.117-boot.show_stacks.txt.xz"), fixture("6.12.117-work.show_stacks.txt.xz"),
      "--top", "2"], "--stacks", "--full-stacks"),
])
def test_full_stacks_is_the_one_name_and_stacks_still_works(command: list[str], old: str,
                                                            new: str) -> None:
    current = run_cli([*command, new])
    former = run_cli([*command, old])
    assert current.exit_code == former.exit_code == 0
    assert current.stdout == former.stdout
    assert current.stdout != run_cli(command).stdout  # the stacks are printed
    assert former.stderr == f"pageowner: warning: {old} is now {new}; the old name will go away\n"
    helped = run_cli([command[0], "--help"]).stdout
    assert new in helped and f"{old} " not in helped


def test_each_stacks_option_names_one_thing() -> None:
    # top/diff print whole stacks, dump reads show_stacks, capture copies page_owner_stacks.
    spelled = {name: run_cli([name, "--help"]).stdout for name in ("top", "dump", "capture")}
    assert "--full-stacks" in spelled["top"]
    assert "--show-stacks" in spelled["dump"]
    assert "--page-owner-stacks" in spelled["capture"]
    assert all(" --stacks " not in text for text in spelled.values())
