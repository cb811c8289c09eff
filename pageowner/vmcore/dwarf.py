"""Small questions asked of a dumped kernel's DWARF: does a global exist, where is a bit field."""

from __future__ import annotations

from typing import Any

__all__ = ["bit_field", "has_constant", "has_global"]


def has_global(prog: Any, name: str) -> bool:
    """Tell whether the kernel has a global of that name."""
    try:
        prog[name]
    except LookupError:
        return False
    return True


def has_constant(prog: Any, name: str) -> bool:
    """Tell whether the kernel has an enumerator of that name."""
    try:
        prog.constant(name)
    except LookupError:
        return False
    return True


def bit_field(ty: Any, name: str) -> tuple[int, int]:
    """Return (bit offset, width) of a bit field, looking into anonymous members."""
    for member in ty.members:
        if member.name == name:
            return member.bit_offset, member.bit_field_size or 8 * member.type.size
        if member.name is None:
            try:
                offset, width = bit_field(member.type, name)
            except LookupError:
                continue
            return member.bit_offset + offset, width
    raise LookupError(name)
