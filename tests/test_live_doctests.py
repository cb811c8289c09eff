"""The doctests of the live modules (their examples are part of the documentation)."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "pageowner.dump.era",
    "pageowner.dump.handles",
    "pageowner.live.capture",
    "pageowner.live.clock",
    "pageowner.live.diagnose",
    "pageowner.live.host",
    "pageowner.live.store",
    "pageowner.live.textfile",
    "pageowner.live.trend",
    "pageowner.live.watch",
    "pageowner.report.live",
    "pageowner.report.trend",
]


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    assert result.attempted > 0
