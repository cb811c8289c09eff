"""Which memory cgroup a dumped page is charged to, as page_owner's memcg lines say it."""

from __future__ import annotations

from typing import Any

from pageowner.vmcore.dwarf import has_constant

__all__ = ["MemcgReader"]


class MemcgReader:
    """Resolve `page->memcg_data` to the line page_owner prints (5.18+)."""

    def __init__(self, prog: Any) -> None:
        """Remember the program; names are looked up once per memcg_data value."""
        self.prog = prog
        self._drgn = __import__("drgn")
        self._memcg_names: dict[int, tuple[str, bool, bool] | None] = {}

    def line(self, data: int) -> tuple[bool, tuple[str, bool, bool] | None]:
        """Return (slab cache page, (memcg name, via objcg, offline)) as the dump prints them."""
        if not data:
            return False, None
        prog = self.prog
        objexts = int(prog.constant("MEMCG_DATA_OBJEXTS")) if has_constant(
            prog, "MEMCG_DATA_OBJEXTS") else int(prog.constant("MEMCG_DATA_OBJCGS"))
        kmem = int(prog.constant("MEMCG_DATA_KMEM"))
        if data & objexts:
            return True, None
        cached = self._memcg_names.get(data, ())
        if cached != ():
            return False, cached  # type: ignore[return-value]
        name = self._memcg_name(data, kmem)
        self._memcg_names[data] = name
        return False, name

    def _memcg_name(self, data: int, kmem: int) -> tuple[str, bool, bool] | None:
        """Resolve page->memcg_data to the cgroup name, through the objcg where it is one."""
        drgn = self._drgn
        prog = self.prog
        pointer = data & ~(int(prog.constant("__NR_MEMCG_DATA_FLAGS")) - 1)
        via_objcg = bool(data & kmem)
        try:
            memcg = None
            if not via_objcg:
                candidate = drgn.Object(prog, "struct mem_cgroup *", pointer)
                if self._is_memcg(candidate):
                    memcg = candidate
            if memcg is None:
                # Kmem pages always, and folios too in 7.3, point at an obj_cgroup.
                memcg = drgn.Object(prog, "struct obj_cgroup *", pointer).memcg
                if not self._is_memcg(memcg):
                    return None
            css = memcg.css
            online = bool(int(css.flags) & int(prog.constant("CSS_ONLINE")))
            from drgn.helpers.linux.cgroup import cgroup_name
            name = cgroup_name(css.cgroup).decode()
        except (drgn.FaultError, LookupError):
            return None
        return name, via_objcg, not online

    def _is_memcg(self, memcg: Any) -> bool:
        """Tell whether a pointer is a mem_cgroup: its css belongs to the memory subsystem."""
        if not int(memcg.value_()):
            return False
        try:
            subsys = int(self.prog["memory_cgrp_subsys"].address_)
            return int(memcg.css.ss.value_()) == subsys
        except (self._drgn.FaultError, LookupError):
            return False
