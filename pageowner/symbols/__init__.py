"""Symbols of a kernel image: ELF symbol tables, DWARF lines and inlines, symbolizing dumps."""
