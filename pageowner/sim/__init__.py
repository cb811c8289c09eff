"""The simulated kernel: a machine with a buddy allocator and page_owner bookkeeping.

`pageowner boot` parses a kernel command line (`cmdline`), builds a `Machine` (zones,
pageblocks, the buddy allocator of `buddy`, the stack depot of `stackdepot`), runs the
boot-time init workload and saves the state (`state`); `pageowner run` drives it with a
workload from the registry in `workloads`; `pageowner dump` prints what
/sys/kernel/debug/page_owner would (`dump`). The simulator uses the model and the dump
writer; it never reads or writes a real debugfs.
"""

from __future__ import annotations

__all__: list[str] = []
