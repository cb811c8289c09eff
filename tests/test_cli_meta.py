"""Every command has help, and the entry points are wired."""

from __future__ import annotations

import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from pageowner.cli import COMMAND_MODULES, cli


@pytest.mark.parametrize("name", sorted(COMMAND_MODULES))
def test_every_command_has_help(name: str) -> None:
    command = cli.get_command(click.Context(cli), name)
    assert command is not None, f"{name} is not defined by {COMMAND_MODULES[name]}"
    assert command.help and len(command.help) > 20
    result = CliRunner().invoke(cli, [name, "--help"])
    if name == "filter":  # the drop-in prints page_owner_filter's usage, on stderr as it does
        assert result.exit_code == 0 and result.stderr.startswith("Usage: page_owner_filter")
    else:
        assert result.exit_code == 0 and "Usage: pageowner" in result.stdout
    for param in command.params:
        if isinstance(param, click.Option):
            assert param.help, f"{name} {param.opts} has no help"


def test_python_dash_m_runs() -> None:
    result = subprocess.run([sys.executable, "-m", "pageowner", "--version"],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0 and result.stdout.startswith("pageowner, version ")


def test_unknown_command_is_a_usage_error() -> None:
    result = CliRunner().invoke(cli, ["nosuch"])
    assert result.exit_code == 2 and "No such command 'nosuch'" in result.stderr


@pytest.mark.parametrize(("args", "message"), [
    (["sort", "-a", "-m", "in", "out"], "choose one sort flag, not -a -m"),
    (["boot", "--system-map", "a", "--kallsyms", "b"], "give at most one symbol table"),
])
def test_a_library_usage_error_shows_the_commands_usage(args: list[str], message: str) -> None:
    # GIVEN options that only the library finds at odds WHEN the command runs
    result = CliRunner().invoke(cli, args)
    # THEN it is a usage error whose usage line is the command's, not the group's
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Usage: pageowner {args[0]} [OPTIONS]"), result.stderr
    assert f"Try 'pageowner {args[0]} --help' for help." in result.stderr
    assert result.stderr.rstrip().endswith(f"Error: {message}")


def test_sort_loads_no_heavy_module() -> None:
    # `pageowner sort` should start fast: no elftools, sqlite, rich or analysis code.
    code = (
        "import sys; from pageowner.cli import main; "
        "main(['sort', '--help']); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('elftools', 'sqlite3', 'rich') or m in ('pageowner.analyze.analysis', 'pageowner.symbols.elf')))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip().splitlines()[-1] == "[]"
