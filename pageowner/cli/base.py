"""The click group, the one place where library errors become messages and exit codes."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import click

from pageowner import __version__
from pageowner.errors import EXIT_RUNTIME, PageOwnerError, SpecError

__all__ = [
    "CONTEXT_SETTINGS",
    "AliasChoice",
    "Decorator",
    "PageOwnerCommand",
    "SpecParam",
    "WarningPrinter",
    "cli",
    "combine_options",
    "main",
    "old_spelling",
    "warn",
]

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


def combine_options(*decorators: Decorator) -> Decorator:
    """Apply several click decorators in reading order."""

    def apply(command: Callable[..., Any]) -> Callable[..., Any]:
        for decorator in reversed(decorators):
            command = decorator(command)
        return command

    return apply


class Failure(click.ClickException):
    """A library error on its way to the user: one line on stderr, its own exit code."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.__dict__["exit_code"] = exit_code

    def show(self, file: Any = None) -> None:
        """Print `pageowner: message` to stderr."""
        click.echo(f"pageowner: {self.format_message()}", err=True)


# Which module defines each command. Modules are imported only when their command runs
# (or help lists it), so `pageowner sort` does not pay for pyelftools, sqlite or rich.
COMMAND_MODULES: dict[str, str] = {
    "sort": "pageowner.cli.sort",
    "demo": "pageowner.cli.sim",
    "boot": "pageowner.cli.sim",
    "run": "pageowner.cli.sim",
    "workloads": "pageowner.cli.sim",
    "dump": "pageowner.cli.sim",
    "grep": "pageowner.cli.grep",
    "top": "pageowner.cli.top",
    "diff": "pageowner.cli.diff",
    "stats": "pageowner.cli.stats",
    "frag": "pageowner.cli.frag",
    "flame": "pageowner.cli.flame",
    "symbolize": "pageowner.cli.symbols",
    "capture": "pageowner.cli.live",
    "filter": "pageowner.cli.live",
    "watch": "pageowner.cli.live",
    "trend": "pageowner.cli.live",
    "fleet": "pageowner.cli.fleet",
}


# One line per command for `pageowner --help` (click would cut each first sentence at the
# terminal's width; these fit 80 columns whole).
SHORT_HELP: dict[str, str] = {
    "boot": "Boot a simulated machine with page_owner",
    "capture": "Copy page_owner from a live machine or a vmcore, with a sidecar",
    "demo": "Boot, run a leaky workload, dump and sort: a tour",
    "diff": "Rank what grew (or shrank) between two dumps",
    "dump": "Print the simulated machine's page_owner files",
    "filter": "Read page_owner through a 7.3 filter, as page_owner_filter",
    "fleet": "Rank, diff and export the captures of many hosts, on Dask",
    "flame": "Draw a flame graph: HTML, folded, speedscope or pprof",
    "frag": "Count mixed pageblocks and the stacks that mixed them",
    "grep": "Keep the records that pass every filter, as a dump",
    "run": "Run a workload on the simulated machine",
    "sort": "Sort a dump byte for byte as page_owner_sort does",
    "stats": "Total a dump by order, GFP flag, zone, node, migratetype",
    "symbolize": "Add file:line to the frames of a dump",
    "top": "Show the stacks (or pids, names...) holding most memory",
    "trend": "Rank the stacks of a watch store by growth",
    "watch": "Snapshot the pages of each stack into a store, repeatedly",
    "workloads": "List the workloads `run` knows, with their options",
}


class PageOwnerCommand(click.Command):
    """A command whose SpecError is a usage error showing the command's own usage line."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SpecError as exc:
            raise click.UsageError(str(exc), ctx) from None


class PageOwnerGroup(click.Group):
    """A group that loads commands lazily and turns PageOwnerError into Failure."""

    command_class = PageOwnerCommand

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(COMMAND_MODULES) | set(self.commands))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module = COMMAND_MODULES.get(cmd_name)
        if module is not None and cmd_name not in self.commands:
            importlib.import_module(module)  # its decorators register the commands
        command = self.commands.get(cmd_name)
        if command is not None and command.short_help is None:
            command.short_help = SHORT_HELP.get(cmd_name)
        return command

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SpecError as exc:
            raise click.UsageError(str(exc), ctx) from None
        except PageOwnerError as exc:
            raise Failure(str(exc), exc.exit_code) from None
        except BrokenPipeError:
            # click would turn this into exit 1; `main` makes it the success it is.
            raise StdoutClosed() from None


class StdoutClosed(Exception):
    """The reader of standard output went away (`pageowner dump | head`)."""


if TYPE_CHECKING:
    _ParamType = click.ParamType[Any]
else:
    _ParamType = click.ParamType


class SpecParam(_ParamType):
    """An option value parsed by a library function; its SpecError is a usage error."""

    def __init__(self, name: str, parse: Callable[[str], Any]) -> None:
        self.name = name
        self._parse = parse

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, str):
            return value
        try:
            return self._parse(value)
        except SpecError as exc:
            self.fail(str(exc), param, ctx)


class AliasChoice(click.Choice):  # type: ignore[type-arg]
    """A choice that also takes old names, saying once on stderr which new name to use.

    Help and completion list only the current names.
    """

    def __init__(self, choices: Sequence[str], aliases: dict[str, str]) -> None:
        super().__init__(list(choices))
        self.aliases = aliases

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str) and value in self.aliases:
            new = self.aliases[value]
            option = param.opts[-1] if param is not None and param.opts else "the option"
            warn(f"{option} {value} is deprecated; use {option} {new}")
            value = new
        return super().convert(value, param, ctx)


def old_spelling(old: str, new: str, dest: str, **attrs: Any) -> Callable[[Any], Any]:
    """Keep an option's old name working, hidden from help, with a warning naming the new one."""

    def said(ctx: click.Context, param: click.Parameter, value: Any) -> None:
        if value:
            warn(f"{old} is now {new}; the old name will go away")
            ctx.params[dest] = value
            # So that the new option's default, processed later, does not replace it.
            ctx.set_parameter_source(dest, click.core.ParameterSource.COMMANDLINE)

    # A name of its own (not exposed): the new option's value stands unless this was given.
    return click.option(old, f"{dest}_old_spelling", hidden=True, callback=said,
                        expose_value=False, help=f"The old name of {new}.", **attrs)


def warn(message: str) -> None:
    """Print a warning on stderr."""
    click.echo(f"pageowner: warning: {message}", err=True)


class WarningPrinter:
    """Print the first warnings as they come and count the rest."""

    LIMIT = 10

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, message: str) -> None:
        self.count += 1
        if self.count <= self.LIMIT:
            warn(message)

    def summary(self) -> None:
        """Say how many warnings were not shown."""
        if self.count > self.LIMIT:
            warn(f"{self.count - self.LIMIT} more warnings not shown")


@click.group(name="pageowner", cls=PageOwnerGroup, context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, prog_name="pageowner")
def cli() -> None:
    """Read, simulate, sort and compare Linux page_owner dumps.

    Exit codes: 0 done, 1 runtime error (file, parse, state), 2 usage error,
    3 a --fail-on-... threshold tripped; grep, as grep(1), exits 1 when it selected
    nothing.
    """
    # Each command starts from the default; the analysis commands' --free sets it.
    from pageowner.dump.repair import set_free_stacks  # noqa: PLC0415 - commands load lazily

    set_free_stacks(False)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return its exit code."""
    return _finish_stdout(_run(argv))


def _run(argv: Sequence[str] | None) -> int:
    """Run the command line; every failure becomes a one-line message and an exit code."""
    try:
        result = cli.main(args=list(argv) if argv is not None else None,
                          prog_name="pageowner", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo("pageowner: interrupted", err=True)
        return 130
    except (BrokenPipeError, StdoutClosed):
        # The reader went away (`pageowner dump | head`): not an error of ours.
        _silence_stdout()
        return 0
    except OSError as exc:
        # Library code names its files in InputError/OutputError; this is the last resort
        # for a system error nobody expected (never a traceback).
        where = f"{exc.filename}: " if exc.filename else ""
        click.echo(f"pageowner: {where}{exc.strerror or exc}", err=True)
        return EXIT_RUNTIME
    except MemoryError:
        click.echo("pageowner: out of memory", err=True)
        return EXIT_RUNTIME
    except Exception as exc:  # noqa: BLE001 - a bug: say so in one line, not a traceback
        if os.environ.get("PAGEOWNER_DEBUG"):
            raise
        click.echo(f"pageowner: internal error: {type(exc).__name__}: {exc}; please report "
                   "it (PAGEOWNER_DEBUG=1 shows the traceback)", err=True)
        return EXIT_RUNTIME
    return result if isinstance(result, int) else 0


def _finish_stdout(code: int) -> int:
    """Flush stdout now, so a failed write (a full disk, /dev/full) is an error we report."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _silence_stdout()
    except (OSError, ValueError) as exc:
        _silence_stdout()
        if code == 0:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            click.echo(f"pageowner: <stdout>: write failed: {reason}", err=True)
            return EXIT_RUNTIME
    return code


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that the interpreter's last flush cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass
