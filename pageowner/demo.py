"""The end-to-end demo: boot a simulated machine, run a workload mix, dump it, sort it.

It sits above both the simulator (pageowner.sim) and the page_owner_sort engine
(pageowner.sort.engine), which do not know about each other; `pageowner demo` calls `demo`.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from pageowner.errors import SpecError
from pageowner.kernel.kernels import DEFAULT_VERSION
from pageowner.sim.api import DEFAULT_MEM, DEFAULT_SEED, boot, dump, run
from pageowner.sort.engine import sort_dump
from pageowner.sort.options import build_options, parse_cull_spec

__all__ = ["DEMO_WORKLOADS", "DemoResult", "demo"]

# The demo's workload mix: what a busy little server does, plus a leaking driver.
DEMO_WORKLOADS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("capture", ("--mb", "128")),
    ("pagecache", ("--mb", "96", "--file", "/var/lib/db/table.ibd")),
    ("fork", ("--count", "20", "--comm", "nginx")),
    ("net", ("--mb", "16")),
    ("memcg", ("--name", "db.slice", "--mb", "64", "--comm", "postgres")),
    ("leak", ("--pages", "30000", "--seconds", "600")),
)


@dataclass
class DemoResult:
    """What the demo did and the head of the report."""

    steps: list[str] = field(default_factory=list)
    records: int = 0
    groups: int = 0
    report_head: list[str] = field(default_factory=list)
    folder: str = ""  # where the machine, page_owner.txt and sorted.txt are left
    report_lines: int = 0  # of sorted.txt, of which report_head is the first ones


def _demo_folder(folder: str | None) -> Path:
    """Return the folder to work in: a new one, or the given one if it is new or empty."""
    if folder is None:
        return Path(tempfile.mkdtemp(prefix="pageowner-demo-"))
    path = Path(folder)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise SpecError(f"{folder}: the demo wants a new or empty folder")
    path.mkdir(parents=True, exist_ok=True)
    return path


def demo(version: str = DEFAULT_VERSION, lines: int = 40, folder: str | None = None) -> DemoResult:
    """Boot a machine with page_owner=on, run a workload mix, dump and sort it.

    Everything is left in `folder` (a new temporary folder by default) for the reader to
    try more commands on: the machine in state/, page_owner.txt and sorted.txt.
    """
    result = DemoResult()
    tmp = _demo_folder(folder)  # kept: what the demo printed can be looked at again
    result.folder = os.fspath(tmp)
    directory = Path(tmp) / "state"
    booted = boot(directory, version, DEFAULT_MEM, "page_owner=on", DEFAULT_SEED)
    result.steps.append(f"pageowner boot --kernel {version} --mem 1G "
                        f"--cmdline page_owner=on  # {booted.summary.split(';')[0]}")
    for name, args in DEMO_WORKLOADS:
        account = run(directory, name, list(args))
        result.steps.append(f"pageowner run {name} {' '.join(args)}  # "
                            f"{account.split(';')[0]}")
    dump_path = str(Path(tmp) / "page_owner.txt")
    result.records = dump(directory, output=dump_path)
    result.steps.append(f"pageowner dump -o page_owner.txt  # {result.records} records")
    report = Path(tmp) / "sorted.txt"
    engine = sort_dump(dump_path, str(report),
                       build_options(["m"], cull=parse_cull_spec("st")))
    result.groups = len(engine.groups)
    result.steps.append("pageowner sort -m --cull=st page_owner.txt sorted.txt  "
                        f"# {result.groups} distinct stacks")
    with report.open("rb") as text:
        for line in text:
            if result.report_lines < lines:
                result.report_head.append(line.decode("utf-8", "replace").rstrip("\n"))
            result.report_lines += 1
    return result
