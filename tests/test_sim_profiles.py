"""The learned simulator profiles are exactly what tools/learn_sim_profiles.py derives."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]


def learner() -> ModuleType:
    """Import the development tool from its path."""
    spec = importlib.util.spec_from_file_location("learn_sim_profiles",
                                                  ROOT / "tools" / "learn_sim_profiles.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(("family", "kernel", "boot", "work", "mem", "work_mem", "mb"), [
    ("5.10", "5.10.223", "5.10.223-boot.page_owner.txt.xz",
     "5.10.223-work.page_owner.txt.xz", 256, 256, 64),
    pytest.param("6.1", "6.1.192", "6.1.192-boot.page_owner.txt.xz",
                 "6.1.192-work1g.page_owner.txt.xz", 256, 1024, 640,
                 marks=pytest.mark.slow),  # the 132 MB work1g dump
    ("6.12", "6.12.117", None, "6.12.117-work.page_owner.txt.xz", 256, 256, 64),
])
def test_committed_profile_is_reproducible(family: str, kernel: str, boot: str | None,
                                           work: str, mem: int, work_mem: int,
                                           mb: int) -> None:
    learned = learner().learn(family, kernel, boot, work, mem, work_mem, mb)
    committed = json.loads((ROOT / "pageowner" / "data" / f"sim-{family}.json").read_text())
    assert json.loads(json.dumps(learned)) == committed


def test_committed_7_3_boot_overlay_is_reproducible() -> None:
    # the real 7.3 boot only: its work dumps are kept back (fixtures/real73/README.md)
    learned = learner().learn_boot_overlay("7.3", "7.3.0-rc7", "7.3-boot.page_owner.txt.xz",
                                           1024, "6.12")
    committed = json.loads((ROOT / "pageowner" / "data" / "sim-7.3-boot.json").read_text())
    assert json.loads(json.dumps(learned)) == committed
    assert committed["sources"] == ["7.3-boot.page_owner.txt.xz"]
