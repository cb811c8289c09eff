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


def test_run_workload_help_shows_that_workload() -> None:
    result = run_cli(["run", "leak", "--help"])
    assert result.exit_code == 0
    assert result.stdout.splitlines()[0] == "Usage: pageowner run leak [OPTIONS]"
    assert "  --pages INT: pages leaked (default 4096)" in result.stdout.splitlines()
    assert "--state" not in result.stdout  # not run's own help
    assert "pageowner run WORKLOAD --help" in run_cli(["run", "--help"]).stdout


def test_the_command_list_has_one_whole_line_each(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    text = run_cli(["--help"]).stdout
    commands = text.split("Commands:\n", 1)[1].splitlines()
    from pageowner.cli.base import COMMAND_MODULES, SHORT_HELP

    assert len(commands) == len(COMMAND_MODULES) == len(SHORT_HELP)
    for line in commands:
        assert len(line) <= 80 and not line.endswith("..."), line
        assert len(line.split(None, 1)) == 2, line


def _boot(tmp_path: Path, *args: str) -> tuple[int, str]:
    result = run_cli(["boot", "--state", str(tmp_path / "m"), "--force", "--kernel", "6.12",
                      *args])
    return result.exit_code, result.stderr


def test_boot_reports_the_memory_mem_leaves(tmp_path: Path) -> None:
    code, err = _boot(tmp_path, "--mem", "256M", "--cmdline", "page_owner=on mem=128M")
    assert code == 0
    assert err.splitlines()[-1].startswith("booted 6.12 with 128 MiB (mem=128M of 256 MiB of RAM; ")


def test_boot_says_when_mem_is_above_the_ram(tmp_path: Path) -> None:
    code, err = _boot(tmp_path, "--mem", "256M", "--cmdline", "page_owner=on mem=4G")
    assert code == 0
    assert ("pageowner: warning: mem=4G is not below the machine's 256 MiB of RAM (--mem): "
            "nothing is removed, the kernel keeps all of it") in err.splitlines()
    assert err.splitlines()[-1].startswith("booted 6.12 with 256 MiB (")


def test_boot_bad_mem_names_the_option_once(tmp_path: Path) -> None:
    result = run_cli(["boot", "--state", str(tmp_path / "m"), "--mem", "0"])
    assert result.exit_code == 2
    assert result.stderr.splitlines()[-1] == ("Error: Invalid value for '--mem': want a size of "
                                              "at least 32M, like 256M or 4G: '0'")


def test_top_on_show_stacks_says_what_each_count_is() -> None:
    import lzma
    import re

    name = fixture("6.12.117-work.show_stacks.txt.xz")
    blocks = lzma.decompress((ROOT / name).read_bytes()).decode().count("nr_base_pages:")
    header = run_cli(["top", name, "--top", "3"]).stdout.splitlines()[0]
    match = re.search(r" in (\d+) show_stacks blocks; top 3 of (\d+) stacks by pages$", header)
    assert match is not None, header
    every = run_cli(["top", name, "--top", "0", "--format", "csv"]).stdout.splitlines()
    assert (int(match[1]), int(match[2])) == (blocks, len(every) - 1)
    assert blocks > len(every) - 1  # blocks differing only in offsets are one stack


@pytest.mark.parametrize("flags", [["-r"], ["-f"], ["-f", "-r"], ["--sort=ft"], ["--cull=f"]])
def test_sort_free_ts_options_warn_once_without_free_ts(flags: list[str], tmp_path: Path) -> None:
    result = run_cli(["sort", *flags, MODERN, str(tmp_path / "out.txt")])
    assert result.exit_code == 0
    assert result.stderr == (
        f"pageowner: warning: {MODERN}: -f, -r, --sort=ft and --cull=f read free_ts, which "
        "only 5.14-6.6 kernels print; this dump's records (shaped as 6.7-7.3 print them) "
        "have none, so each reads as 0\n")


def test_sort_free_ts_options_are_quiet_on_a_dump_with_free_ts(tmp_path: Path) -> None:
    result = run_cli(["sort", "-f", "-r", fixture("era-5.14.txt"), str(tmp_path / "out.txt")])
    assert (result.exit_code, result.stderr) == (0, "")
    plain = run_cli(["sort", MODERN, str(tmp_path / "plain.txt")])
    assert (plain.exit_code, plain.stderr) == (0, "")


@pytest.mark.parametrize("command", [["top", MODERN], ["diff", MODERN, MODERN]])
def test_a_pprof_profile_is_never_written_to_a_terminal(command: list[str]) -> None:
    status, out, err = _on_a_terminal([*command, "--format", "pprof"])
    assert (status, out) == (2, "")
    assert err.splitlines()[-1] == "Error: a pprof profile is binary; use -o FILE"


def test_the_license_is_an_spdx_expression() -> None:
    from importlib.metadata import metadata

    # project.license = "MIT" (PEP 639), not the deprecated { text = "MIT" } table.
    assert 'license = "MIT"' in (ROOT / "pyproject.toml").read_text().splitlines()
    assert metadata("pageowner").get("License-Expression") == "MIT"
