"""The examples in the simulator's docstrings run and print what they say."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "pageowner.sim.cmdline",
    "pageowner.sim.gfp",
    "pageowner.sim.stackdepot",
    "pageowner.sim.stacks",
    "pageowner.sim.replay",
    "pageowner.sim.api",
    "pageowner.sim.dump",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted > 0, f"{name} has no examples"
    assert result.failed == 0
