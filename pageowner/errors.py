"""Errors raised by the pageowner library.

Library code never prints or exits: it raises a `PageOwnerError` subclass, and the CLI turns
each one into a one-line message and an exit code (see `exit_code`).
"""

from __future__ import annotations

__all__ = [
    "EXIT_OK",
    "EXIT_RUNTIME",
    "EXIT_THRESHOLD",
    "EXIT_USAGE",
    "CaptureError",
    "InputError",
    "OutputError",
    "PageOwnerError",
    "ParseError",
    "SpecError",
    "StateError",
    "SymbolError",
    "ThresholdExceeded",
]

EXIT_OK = 0
EXIT_RUNTIME = 1
EXIT_USAGE = 2
EXIT_THRESHOLD = 3

# Longest piece of an offending input line quoted back in an error message.
_QUOTE_MAX = 80


class PageOwnerError(Exception):
    """Base class of every error the library raises on purpose."""

    exit_code = EXIT_RUNTIME


class InputError(PageOwnerError):
    """An input file cannot be opened or read."""


class OutputError(PageOwnerError):
    """An output file cannot be written."""


class ParseError(PageOwnerError):
    """A line of an input file is not what its format allows."""

    def __init__(self, path: str, lineno: int, line: str, reason: str) -> None:
        self.path = path
        self.lineno = lineno
        self.line = line
        self.reason = reason
        super().__init__(str(self))

    def __str__(self) -> str:
        """Render as `path:line: reason: 'text'`, the quoted text trimmed to one short line."""
        quoted = self.line.rstrip("\r\n")
        if len(quoted) > _QUOTE_MAX:
            quoted = quoted[:_QUOTE_MAX] + "..."
        return f"{self.path}:{self.lineno}: {self.reason}: {quoted!r}"


class SpecError(PageOwnerError):
    """A user-supplied option value (sort keys, lists, sizes) is malformed."""

    exit_code = EXIT_USAGE


class StateError(PageOwnerError):
    """The simulator's saved state is missing, locked, corrupt or of another version."""


class SymbolError(PageOwnerError):
    """An ELF, System.map or kallsyms file cannot be used for symbolization."""


class CaptureError(PageOwnerError):
    """A live capture from debugfs failed; the message carries a hint."""


class ThresholdExceeded(PageOwnerError):
    """A `--fail-on-...` threshold tripped."""

    exit_code = EXIT_THRESHOLD
