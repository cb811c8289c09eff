"""pageowner: read, simulate, sort and compare Linux page_owner dumps."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
