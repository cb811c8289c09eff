"""pageowner(1), written from the click commands and installed with the package; completion."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest

from pageowner.cli import cli
from pageowner.cli.manpage import render_manpage

INSTALLED = Path(sys.prefix) / "share" / "man" / "man1" / "pageowner.1"


def _commands() -> list[tuple[str, click.Command]]:
    ctx = click.Context(cli, info_name="pageowner")
    found = [(name, cli.get_command(ctx, name)) for name in cli.list_commands(ctx)]
    return [(name, command) for name, command in found if command is not None]


def test_the_page_has_every_command_and_visible_option() -> None:
    page = render_manpage()
    assert page.startswith(".TH PAGEOWNER 1 ")
    for name, command in _commands():
        assert f".SS {name}\n" in page
        for param in command.params:
            if isinstance(param, click.Option) and not param.hidden:
                assert param.opts[-1].replace("-", "\\-") in page, (name, param.opts)
    for section in ("NAME", "SYNOPSIS", "COMMANDS", "EXIT STATUS", "ENVIRONMENT",
                    "SHELL COMPLETION"):
        assert f".SH {section}\n" in page


def test_the_installed_page_is_the_current_one() -> None:
    if not INSTALLED.exists():
        pytest.skip(f"not installed in {sys.prefix} (pip install -e . writes it)")
    assert INSTALLED.read_text(encoding="utf-8") == render_manpage(), \
        "the installed man page is stale: pip install -e . again"


def test_man_shows_it(tmp_path: Path) -> None:
    man = shutil.which("man")
    if man is None or not INSTALLED.exists():
        pytest.skip("man(1) or the installed page is missing")
    done = subprocess.run([man, "-M", str(INSTALLED.parents[1]), "pageowner"],
                          capture_output=True, text=True, timeout=60, check=False,
                          env=dict(os.environ, MANPAGER="cat", PAGER="cat", MANWIDTH="100"))
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert "pageowner - read, simulate, sort and compare Linux page_owner dumps" in text
    assert "--fail-on-growth PAGES" in text
    assert "EXIT STATUS" in text


def _complete(words: str, cword: int) -> list[str]:
    env = dict(os.environ, COMP_WORDS=words, COMP_CWORD=str(cword),
               _PAGEOWNER_COMPLETE="bash_complete")
    done = subprocess.run([sys.executable, "-m", "pageowner"], capture_output=True, text=True,
                          env=env, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_bash_completion_script_and_answers() -> None:
    env = dict(os.environ, _PAGEOWNER_COMPLETE="bash_source")
    script = subprocess.run([sys.executable, "-m", "pageowner"], capture_output=True, text=True,
                            env=env, timeout=60, check=False).stdout
    assert "complete -o nosort -F _pageowner_completion pageowner" in script
    assert _complete("pageowner to", 1) == ["plain,top"]
    assert _complete("pageowner top --by ca", 3) == ["plain,caller"]
    assert "plain,--format" in _complete("pageowner flame --f", 2)
