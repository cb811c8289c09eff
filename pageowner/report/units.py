"""Human-readable sizes and percentages for reports."""

from __future__ import annotations

__all__ = ["format_percent", "format_signed", "human_size"]

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def human_size(size: int) -> str:
    """Render a byte count in binary units, one decimal above bytes.

    >>> human_size(4096)
    '4.0 KiB'
    >>> human_size(102268928)
    '97.5 MiB'
    >>> human_size(-8192)
    '-8.0 KiB'
    """
    sign = "-" if size < 0 else ""
    value = float(abs(size))
    for unit in _UNITS:
        if value < 1024 or unit == _UNITS[-1]:
            if unit == "B":
                return f"{sign}{int(value)} B"
            return f"{sign}{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def format_percent(value: float | None, signed: bool = False) -> str:
    """Render a percentage with one decimal; None (no base to compare with) is 'new'.

    >>> format_percent(72.0998)
    '72.1%'
    >>> format_percent(12.5, signed=True)
    '+12.5%'
    """
    if value is None:
        return "new"
    return f"{value:+.1f}%" if signed else f"{value:.1f}%"


def format_signed(value: int) -> str:
    """Render an integer with its sign.

    >>> format_signed(42)
    '+42'
    """
    return f"{value:+d}"
