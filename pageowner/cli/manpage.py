"""Write pageowner(1), the man page, from the click commands themselves.

The build runs this (setup.py) and installs the page as share/man/man1/pageowner.1, so
`man pageowner` says what `--help` says: same commands, options, defaults and help texts.
`python -m pageowner.cli.manpage FILE` writes it by hand.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import click

from pageowner import __version__
from pageowner.cli.base import CONTEXT_SETTINGS, cli

__all__ = ["render_manpage", "write_manpage"]

_EXIT_STATUS = (
    ("0", "Done."),
    ("1", "A runtime error: a file that cannot be read or written, a dump that does not "
          "parse, a missing machine state. grep, as grep(1): nothing was selected."),
    ("2", "A usage error: a bad option or argument."),
    ("3", "A --fail-on-... threshold tripped (diff --fail-on-growth, trend --fail-on-slope)."),
)  # fmt: skip
_ENVIRONMENT = (
    ("PAGEOWNER_STATE", "Where the simulated machine is kept (default ./.pageowner); --state "
                        "overrides it."),
    ("PAGEOWNER_DEBUG", "Set to 1 to see the traceback of an internal error."),
    ("_PAGEOWNER_COMPLETE", "Set to bash_source, zsh_source or fish_source to print the shell "
                            "completion script (see SHELL COMPLETION)."),
)  # fmt: skip


def _escape(text: str) -> str:
    """Escape text for roff: backslashes, and a leading dot or quote on any line."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join("\\&" + line if line.startswith((".", "'")) else line
                     for line in text.splitlines())  # fmt: skip


def _paragraphs(text: str) -> list[str]:
    """Split a help text into paragraphs, each on one line."""
    return [" ".join(part.split()) for part in text.split("\n\n") if part.strip()]


def _command_section(name: str, command: click.Command, parent: click.Context) -> list[str]:
    """Describe one command: its usage line, its help and its options."""
    ctx = click.Context(command, info_name=name, parent=parent)
    usage = " ".join(command.collect_usage_pieces(ctx))
    lines = [f".SS {_escape(name)}", f".B pageowner {_escape(name)}", _escape(usage)]
    for paragraph in _paragraphs(command.help or ""):
        lines += [".PP", _escape(paragraph)]
    for param in command.get_params(ctx):
        record = param.get_help_record(ctx)
        if record is None:
            continue
        options, help_text = record
        lines += [".TP", f".B {_escape(options)}", _escape(" ".join(help_text.split()))]
    return lines


def render_manpage(group: click.Group = cli) -> str:
    """Return the man page of the command group, in roff."""
    # The settings `pageowner` runs with (-h too), as click caches each help option once.
    ctx = click.Context(group, info_name="pageowner", **CONTEXT_SETTINGS)  # type: ignore[arg-type]
    summary, _, rest = (group.help or "").partition("\n")
    summary = summary.strip().rstrip(".")
    lines = [
        f'.TH PAGEOWNER 1 "" "pageowner {__version__}" "User Commands"',
        ".ad l",  # ragged right: option lists such as --kernel's cannot be justified
        ".SH NAME",
        f"pageowner \\- {_escape(summary[:1].lower() + summary[1:])}",
        ".SH SYNOPSIS",
        ".B pageowner",
        "COMMAND [OPTIONS] [ARGS]...",
        ".br",
        ".B pageowner",
        "\\-\\-version | \\-\\-help",
        ".SH DESCRIPTION",
    ]
    for paragraph in _paragraphs(rest):
        if not paragraph.startswith("Exit codes"):
            lines += [".PP", _escape(paragraph)]
    lines += [".PP", "Each command has its own \\-h/\\-\\-help; the commands are:", ".SH COMMANDS"]
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        if command is not None and not command.hidden:
            lines += _command_section(name, command, ctx)
    lines.append(".SH EXIT STATUS")
    for code, meaning in _EXIT_STATUS:
        lines += [".TP", f".B {code}", _escape(meaning)]
    lines.append(".SH ENVIRONMENT")
    for name, meaning in _ENVIRONMENT:
        lines += [".TP", f".B {_escape(name)}", _escape(meaning)]
    lines += [
        ".SH SHELL COMPLETION",
        "Add to ~/.bashrc (zsh: zsh_source in ~/.zshrc):",
        ".PP",
        ".nf",
        '.RS 4',
        _escape('eval "$(_PAGEOWNER_COMPLETE=bash_source pageowner)"'),
        ".RE",
        ".fi",
        ".SH SEE ALSO",
        "The README and docs/ of the pageowner sources; the kernel's",
        "Documentation/mm/page_owner.rst.",
    ]
    return "\n".join(lines) + "\n"


def write_manpage(path: str) -> str:
    """Write the man page to `path` and return the path."""
    with open(path, "w", encoding="utf-8") as out:
        out.write(render_manpage())
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """Write the man page to the file named on the command line (or stdout)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args:
        write_manpage(args[0])
    else:
        sys.stdout.write(render_manpage())
    return 0


if __name__ == "__main__":
    sys.exit(main())
