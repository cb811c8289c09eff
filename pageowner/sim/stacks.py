"""The catalogue of kernel call paths, per kernel version, as data.

Three families of stacks were learned from real dumps (tools/learn_sim_profiles.py writes
pageowner/data/sim-<family>.json): 5.10.223, 6.1.192 and 6.12.117. Every other version
starts from the nearest family and applies that era's renames (`REWRITES`), its first
frame (`TOP_FRAME`: 6.x stacks begin at get_page_from_freelist or post_alloc_hook, older
ones at prep_new_page or __alloc_pages_nodemask), its depth (8 frames in page_ext before
the stackdepot, 16 after) and its frame format (`[<address>]` columns until v4.14, never
hashed: kernel.kernels.FRAME_ADDRESS_UNTIL). `CALL_PATHS` are the hand-written paths
workloads use, per family.

Sizes and addresses come from a `SymbolTable` when the machine has one and it has the
function, with the offset of a return address after one of its calls (the call to the
frame above when the code names it). Otherwise they come from the family's learned
symbols (exact for the three real kernels; other versions shift them a little, as a
rebuild would), else from a hash of the name.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pageowner.dump.dumpfile import format_frame
from pageowner.kernel.kernels import KernelVersion, version_key
from pageowner.model import Frame, FrameStyle
from pageowner.symbols.symtab import CallSite, Symbol, SymbolTable

__all__ = [
    "CALL_PATHS",
    "FAMILY_OF",
    "FamilyProfile",
    "REWRITES",
    "StackBuilder",
    "TOP_CALLEES",
    "TOP_FRAME",
    "family_of",
    "load_profile",
    "merge_boot",
    "profile_for",
]

DATA_DIR = Path(__file__).resolve().parents[1] / "data"

# The real kernel each family was learned from, and which family each version starts from.
FAMILY_KERNEL = {"5.10": "5.10", "6.1": "6.1", "6.12": "6.12"}
FAMILY_OF: dict[str, str] = {
    "3.19": "5.10", "4.6": "5.10", "4.19": "5.10", "5.4": "5.10", "5.10": "5.10",
    "5.11": "5.10", "5.14": "6.1", "5.15": "6.1", "5.18": "6.1", "6.1": "6.1",
    "6.6": "6.1", "6.7": "6.1", "6.9": "6.12", "6.12": "6.12", "6.19": "6.12",
    "7.3": "6.12",
}  # fmt: skip

# Where page_owner's saved stack starts, by version: the frames above it were skipped or
# inlined. 3.19-4.7 skipped 3 frames into __alloc_pages_nodemask; 4.8-5.18 show
# prep_new_page (the 5.10.223 dump, Waiman Long's 5.17 example); the 6.1.192 and
# 6.12.117 dumps start at get_page_from_freelist; Documentation/mm/page_owner.rst's 6.9
# example and the 6.19 examples start at post_alloc_hook.
TOP_FRAME: dict[str, str] = {
    "3.19": "__alloc_pages_nodemask", "4.6": "__alloc_pages_nodemask",
    "4.19": "prep_new_page", "5.4": "prep_new_page", "5.10": "prep_new_page",
    "5.11": "prep_new_page", "5.14": "prep_new_page", "5.15": "prep_new_page",
    "5.18": "prep_new_page", "6.1": "get_page_from_freelist",
    "6.6": "get_page_from_freelist", "6.7": "get_page_from_freelist",
    "6.9": "post_alloc_hook", "6.12": "get_page_from_freelist", "6.19": "post_alloc_hook",
    "7.3": "get_page_from_freelist",
}  # fmt: skip
_ALLOC_ENTRY = ("prep_new_page", "get_page_from_freelist")


@dataclass(frozen=True)
class Rewrite:
    """A rename applied to versions in [since, until): a frame run, or a regex on one name."""

    pattern: tuple[str, ...]
    replacement: tuple[str, ...]
    since: str = "0"
    until: str = "99"
    regex: bool = False

    def applies(self, version: str) -> bool:
        """Tell whether the rule holds for a version."""
        return version_key(self.since) <= version_key(version) < version_key(self.until)


def _r(pattern: str, replacement: str, since: str = "0", until: str = "99") -> Rewrite:
    """A one-name regex rule."""
    return Rewrite((pattern,), (replacement,), since, until, regex=True)


def _s(pattern: Sequence[str], replacement: Sequence[str], since: str = "0",
       until: str = "99") -> Rewrite:
    """A frame-run rule."""
    return Rewrite(tuple(pattern), tuple(replacement), since, until)


_PAGE_OWNER_INIT_5_10 = ("init_page_owner", "kernel_init_freeable", "kernel_init")
_PAGE_OWNER_INIT_6_4 = ("init_page_owner", "mm_core_init", "start_kernel")

# Version renames from each family, in application order. Dates are the releases that
# made the change as far as we know; "[uncertain]" ones were not pinned to a release.
REWRITES: dict[str, tuple[Rewrite, ...]] = {
    "5.10": (
        _r(r"^kernel_clone$", "_do_fork", until="5.10"),
        _s(("handle_mm_fault", "exc_page_fault"),
           ("handle_mm_fault", "__do_page_fault", "do_page_fault"), until="5.8"),
        _r(r"^asm_exc_page_fault$", "page_fault", until="5.8"),
        _s(("new_sync_write", "vfs_write"), ("new_sync_write", "__vfs_write", "vfs_write"),
           until="5.8"),
        _s(("new_sync_read", "vfs_read"), ("new_sync_read", "__vfs_read", "vfs_read"),
           until="5.8"),
        _r(r"^asm_common_interrupt$", "ret_from_intr", until="5.8"),
        # v4.17 syscall wrappers (__x64_sys_*, ksys_*); before, SyS_* called vfs_*.
        _r(r"^ksys_\w+$", "", until="4.17"),
        _r(r"^__do_sys_(\w+)$", r"SYSC_\1", until="4.17"),
        _r(r"^__x64_sys_(\w+)$", r"SyS_\1", until="4.17"),
        # v4.15 entry_SYSCALL_64_after_hwframe; the 4.x fast path called sys_* itself.
        _r(r"^do_syscall_64$", "", until="4.15"),
        _r(r"^entry_SYSCALL_64_after_hwframe$", "entry_SYSCALL_64_fastpath", "4.0", "4.15"),
        _r(r"^entry_SYSCALL_64_after_hwframe$", "system_call_fastpath", until="4.0"),
        _r(r"^_do_fork$", "do_fork", until="4.2"),
        _r(r"^(\w+)\.constprop\.0$", r"\1", until="4.8"),
    ),
    "6.1": (
        # folios reached the page cache and shmem in 5.16-6.0 [uncertain per release]
        _s(("__folio_alloc", "vma_alloc_folio"), ("alloc_pages_vma",), until="5.19"),
        _r(r"^shmem_alloc_folio$", "shmem_alloc_page", until="6.0"),
        _r(r"^shmem_alloc_hugefolio$", "shmem_alloc_hugepage", until="6.0"),
        _r(r"^shmem_alloc_and_acct_folio$", "shmem_alloc_and_acct_page", until="6.0"),
        _r(r"^shmem_get_folio_gfp(.*)$", r"shmem_getpage_gfp\1", until="6.0"),
        _r(r"^shmem_write_begin$", "", until="6.0"),
        _s(("generic_file_write_iter", "vfs_write"),
           ("generic_file_write_iter", "new_sync_write", "vfs_write"), until="6.0"),
        _r(r"^__kernel_write_iter$", "__kernel_write", until="5.19"),
        _r(r"^filemap_read_folio$", "do_read_cache_page", until="5.19"),
        _r(r"^kmem_cache_alloc_lru$", "kmem_cache_alloc", until="5.18"),
        _s(("blk_mq_alloc_map_and_rqs",), ("blk_mq_alloc_rqs", "__blk_mq_alloc_map_and_request"),
           until="5.16"),
        _r(r"^vfs_fstatat$", "", until="5.18"),
        # v6.4: page_ext and page_owner set up from mm_core_init() [uncertain]
        _s(_PAGE_OWNER_INIT_5_10, _PAGE_OWNER_INIT_6_4, since="6.4"),
        # v6.6 [uncertain]: x86 ret_from_fork split into a C part and an asm stub
        _s(("kthread", "ret_from_fork"), ("kthread", "ret_from_fork", "ret_from_fork_asm"),
           since="6.6"),
        _s(("kernel_init", "ret_from_fork"),
           ("kernel_init", "ret_from_fork", "ret_from_fork_asm"), since="6.6"),
        _r(r"^shmem_alloc_and_acct_folio$", "shmem_alloc_and_add_folio", since="6.7"),
        # v6.7 mempolicy rework: alloc_pages_mpol() replaced the interleave helpers
        _r(r"^alloc_page_interleave$", "alloc_pages_mpol", since="6.7"),
        _s(("__folio_alloc", "vma_alloc_folio"), ("alloc_pages_mpol", "vma_alloc_folio"),
           since="6.7"),
    ),
    "6.12": (
        # v6.10 memory allocation profiling renamed the allocators with _noprof
        _r(r"^get_free_pages_noprof$", "__get_free_pages", until="6.10"),
        _r(r"^__kmalloc_cache_noprof$", "kmalloc_trace", until="6.10"),
        _r(r"^(\w+)_noprof$", r"\1", until="6.10"),
        # Seen in the real 7.3-rc7 dumps (fixtures/real73): the buddy's entry point is
        # __alloc_frozen_pages_noprof and alloc_pages_mpol lost its suffix. They came
        # between 6.12 and 7.3 [uncertain which release]; applied from 7.3 only.
        _r(r"^__alloc_pages_noprof$", "__alloc_frozen_pages_noprof", since="7.3"),
        _r(r"^alloc_pages_mpol_noprof$", "alloc_pages_mpol", since="7.3"),
        # 7.3 slab: new slabs come straight from the buddy and most refills go through
        # the per-CPU sheaves (refill_objects, __pcs_replace_empty_main), as in the real
        # 7.3 boot dump (951 of its 979 new_slab records)
        _s(("alloc_pages_mpol", "new_slab"), ("new_slab",), since="7.3"),
        _s(("new_slab", "___slab_alloc"),
           ("new_slab", "refill_objects", "__pcs_replace_empty_main"), since="7.3"),
    ),
}

# Before the stackdepot (v4.8) early pages carried the stack of page_owner's own
# init_pages_in_zone() walk, captured by set_page_owner() [inference from 3.19 code].
_EARLY_PRE_DEPOT = ("init_pages_in_zone", "init_zones_in_node", "init_early_allocated_pages",
                    "pageowner_init", "do_one_initcall", "kernel_init_freeable", "kernel_init",
                    "ret_from_fork")

# Hand-written call paths, in each family's own function names. "name [module]" marks a
# module function. Offsets are looked up per (caller, callee) in the learned symbols, so a
# path that matches a real one prints exactly as the real kernel did.
_SYSCALL = ("do_syscall_64", "entry_SYSCALL_64_after_hwframe")
CALL_PATHS: dict[str, dict[str, tuple[str, ...]]] = {
    "anon_fault": {
        "6.12": ("get_page_from_freelist", "__alloc_pages_noprof", "alloc_pages_mpol_noprof",
                 "vma_alloc_folio_noprof", "__handle_mm_fault", "handle_mm_fault",
                 "exc_page_fault", "asm_exc_page_fault"),
        "6.1": ("get_page_from_freelist", "__alloc_pages", "__folio_alloc", "vma_alloc_folio",
                "__handle_mm_fault", "handle_mm_fault", "exc_page_fault", "asm_exc_page_fault"),
        "5.10": ("prep_new_page", "get_page_from_freelist", "__alloc_pages_nodemask",
                 "alloc_pages_vma", "handle_mm_fault", "exc_page_fault", "asm_exc_page_fault"),
    },
    "pte_alloc": {
        "6.12": ("get_page_from_freelist", "__alloc_pages_noprof", "alloc_pages_mpol_noprof",
                 "pte_alloc_one", "__pte_alloc", "__handle_mm_fault", "handle_mm_fault",
                 "exc_page_fault", "asm_exc_page_fault"),
        "6.1": ("get_page_from_freelist", "__alloc_pages", "pte_alloc_one", "__pte_alloc",
                "__handle_mm_fault", "handle_mm_fault", "exc_page_fault", "asm_exc_page_fault"),
        "5.10": ("prep_new_page", "get_page_from_freelist", "__alloc_pages_nodemask",
                 "pte_alloc_one", "__pte_alloc", "handle_mm_fault", "exc_page_fault",
                 "asm_exc_page_fault"),
    },
    "thp_anon": {
        "6.12": ("get_page_from_freelist", "__alloc_pages_noprof", "alloc_pages_mpol_noprof",
                 "folio_alloc_mpol_noprof", "vma_alloc_folio_noprof",
                 "do_huge_pmd_anonymous_page", "__handle_mm_fault", "handle_mm_fault",
                 "exc_page_fault", "asm_exc_page_fault"),
        "6.1": ("get_page_from_freelist", "__alloc_pages", "__folio_alloc", "vma_alloc_folio",
                "do_huge_pmd_anonymous_page", "__handle_mm_fault", "handle_mm_fault",
                "exc_page_fault", "asm_exc_page_fault"),
        "5.10": ("prep_new_page", "get_page_from_freelist", "__alloc_pages_nodemask",
                 "alloc_pages_vma", "do_huge_pmd_anonymous_page", "handle_mm_fault",
                 "exc_page_fault", "asm_exc_page_fault"),
    },
    "pagecache_read": {
        "6.12": ("get_page_from_freelist", "__alloc_pages_noprof", "alloc_pages_mpol_noprof",
                 "folio_alloc_noprof", "page_cache_ra_unbounded", "filemap_get_pages",
                 "filemap_read", "vfs_read", "ksys_read", *_SYSCALL),
        "6.1": ("get_page_from_freelist", "__alloc_pages", "__folio_alloc", "folio_alloc",
                "page_cache_ra_unbounded", "filemap_get_pages", "filemap_read", "vfs_read",
                "ksys_read", *_SYSCALL),
        "5.10": ("prep_new_page", "get_page_from_freelist", "__alloc_pages_nodemask",
                 "alloc_pages_current", "__page_cache_alloc", "page_cache_ra_unbounded",
                 "generic_file_buffered_read", "new_sync_read", "vfs_read", "ksys_read",
                 *_SYSCALL),
    },
    "vmalloc_module": {
        "6.12": ("get_page_from_freelist", "__alloc_pages_noprof", "alloc_pages_bulk_noprof",
                 "alloc_pages_bulk_array_mempolicy_noprof", "__vmalloc_node_range_noprof",
                 "execmem_alloc", "load_module", "init_module_from_file",
                 "idempotent_init_module", "__x64_sys_finit_module", *_SYSCALL),
        "6.1": ("get_page_from_freelist", "__alloc_pages", "__alloc_pages_bulk",
                "alloc_pages_bulk_array_mempolicy", "__vmalloc_node_range", "module_alloc",
                "load_module", "__do_sys_finit_module", *_SYSCALL),
        "5.10": ("prep_new_page", "get_page_from_freelist", "__alloc_pages_nodemask",
                 "alloc_page_interleave", "__vmalloc_node_range", "module_alloc",
                 "load_module", "__do_sys_finit_module", *_SYSCALL),
    },
    "vmalloc_bpf": {
        "6.12": ("get_page_from_freelist", "__alloc_pages_noprof", "alloc_pages_bulk_noprof",
                 "alloc_pages_bulk_array_mempolicy_noprof", "__vmalloc_node_range_noprof",
                 "__vmalloc_node_noprof", "bpf_prog_alloc_no_stats", "bpf_prog_alloc",
                 "bpf_prog_load", "__sys_bpf", "__x64_sys_bpf", *_SYSCALL),
        "6.1": ("get_page_from_freelist", "__alloc_pages", "__alloc_pages_bulk",
                "alloc_pages_bulk_array_mempolicy", "__vmalloc_node_range", "__vmalloc_node",
                "bpf_prog_alloc_no_stats", "bpf_prog_alloc", "bpf_prog_load", "__sys_bpf",
                "__x64_sys_bpf", *_SYSCALL),
        "5.10": ("prep_new_page", "get_page_from_freelist", "__alloc_pages_nodemask",
                 "alloc_page_interleave", "__vmalloc_node_range", "__vmalloc_node",
                 "bpf_prog_alloc_no_stats", "bpf_prog_alloc", "bpf_prog_load", "__do_sys_bpf",
                 *_SYSCALL),
    },
    "net_tx": {
        "6.12": ("get_page_from_freelist", "__alloc_pages_noprof", "alloc_pages_mpol_noprof",
                 "skb_page_frag_refill", "sk_page_frag_refill", "tcp_sendmsg_locked",
                 "tcp_sendmsg", "__sys_sendto", "__x64_sys_sendto", *_SYSCALL),
        "6.1": ("get_page_from_freelist", "__alloc_pages", "alloc_pages", "skb_page_frag_refill",
                "sk_page_frag_refill", "tcp_sendmsg_locked", "tcp_sendmsg", "__sys_sendto",
                "__x64_sys_sendto", *_SYSCALL),
        "5.10": ("prep_new_page", "get_page_from_freelist", "__alloc_pages_nodemask",
                 "alloc_pages_current", "skb_page_frag_refill", "sk_page_frag_refill",
                 "tcp_sendmsg_locked", "tcp_sendmsg", "__sys_sendto", "__x64_sys_sendto",
                 *_SYSCALL),
    },
    "net_rx": {
        "6.12": ("get_page_from_freelist", "__alloc_pages_noprof", "alloc_pages_mpol_noprof",
                 "skb_page_frag_refill", "try_fill_recv", "virtnet_poll", "__napi_poll",
                 "net_rx_action", "handle_softirqs", "__irq_exit_rcu", "common_interrupt",
                 "asm_common_interrupt"),
        "6.1": ("get_page_from_freelist", "__alloc_pages", "alloc_pages", "skb_page_frag_refill",
                "try_fill_recv", "virtnet_poll", "__napi_poll", "net_rx_action",
                "__do_softirq", "__irq_exit_rcu", "common_interrupt", "asm_common_interrupt"),
        "5.10": ("prep_new_page", "get_page_from_freelist", "__alloc_pages_nodemask",
                 "alloc_pages_current", "skb_page_frag_refill", "try_fill_recv",
                 "virtnet_poll", "net_rx_action", "__do_softirq", "asm_call_irq_on_stack",
                 "do_softirq_own_stack", "irq_exit_rcu", "common_interrupt",
                 "asm_common_interrupt"),
    },
    "cma": {
        "6.12": ("post_alloc_hook", "split_free_pages", "alloc_contig_range_noprof",
                 "__cma_alloc", "cma_alloc", "cma_alloc_mem",
                 "cma_alloc_write", "simple_attr_write_xsigned", "debugfs_attr_write",
                 "full_proxy_write", "vfs_write", "ksys_write", *_SYSCALL),
        "6.1": ("post_alloc_hook", "split_map_pages", "isolate_freepages_range",
                "alloc_contig_range", "cma_alloc", "cma_alloc_mem", "cma_alloc_write",
                "simple_attr_write", "debugfs_attr_write", "full_proxy_write", "vfs_write",
                "ksys_write", *_SYSCALL),
        "5.10": ("post_alloc_hook", "split_map_pages", "isolate_freepages_range",
                 "alloc_contig_range", "cma_alloc", "cma_alloc_mem", "cma_alloc_write",
                 "simple_attr_write", "full_proxy_write", "vfs_write", "ksys_write",
                 *_SYSCALL),
    },
    "leak": {
        "6.12": ("get_page_from_freelist", "__alloc_pages_noprof", "alloc_pages_mpol_noprof",
                 "leaky_refill [leaky]", "leaky_work_fn [leaky]", "process_one_work",
                 "worker_thread", "kthread", "ret_from_fork", "ret_from_fork_asm"),
        "6.1": ("get_page_from_freelist", "__alloc_pages", "alloc_pages", "leaky_refill [leaky]",
                "leaky_work_fn [leaky]", "process_one_work", "worker_thread", "kthread",
                "ret_from_fork"),
        "5.10": ("prep_new_page", "get_page_from_freelist", "__alloc_pages_nodemask",
                 "alloc_pages_current", "leaky_refill [leaky]", "leaky_work_fn [leaky]",
                 "process_one_work", "worker_thread", "kthread", "ret_from_fork"),
    },
    "slab_dentry": {
        "6.12": ("get_page_from_freelist", "__alloc_pages_noprof", "alloc_pages_mpol_noprof",
                 "new_slab", "___slab_alloc", "kmem_cache_alloc_lru_noprof", "__d_alloc",
                 "d_alloc_parallel", "path_openat", "do_filp_open", "do_sys_openat2",
                 "__x64_sys_openat", *_SYSCALL),
        "6.1": ("get_page_from_freelist", "__alloc_pages", "allocate_slab", "___slab_alloc",
                "kmem_cache_alloc_lru", "__d_alloc", "d_alloc", "d_alloc_parallel",
                "path_openat", "do_filp_open", "do_sys_openat2", "__x64_sys_openat",
                *_SYSCALL),
        "5.10": ("prep_new_page", "get_page_from_freelist", "__alloc_pages_nodemask",
                 "allocate_slab", "___slab_alloc", "kmem_cache_alloc", "__d_alloc",
                 "d_alloc_parallel", "path_openat", "do_filp_open", "do_sys_openat2",
                 "__x64_sys_openat", *_SYSCALL),
    },
}  # fmt: skip


# Symbols no learned dump shows, from published examples: (size, offset of the call that
# page_owner sees). post_alloc_hook: Documentation/mm/page_owner.rst (6.9).
KNOWN_SYMBOLS: dict[str, tuple[int, int]] = {
    "post_alloc_hook": (0x1A0, 0x177),
    "prep_new_page": (0x90, 0x63),
}

# Calls whose return address no allocation stack holds: the ftrace hook (mcount, or
# __fentry__ with gcc -mfentry) that traced functions call first is a NOP until tracing
# starts, and returns before the function's body runs when it is on.
_UNTRACED_CALLS = frozenset({"__fentry__", "mcount", "_mcount", "__mcount"})

# What the top frame called. save_stack() skips itself and __set_page_owner (6.1 and 6.12
# mm/page_owner.c: stack_trace_save(..., 2)), so the top frame called __set_page_owner;
# 3.19-4.7 skipped more, down to __alloc_pages_nodemask, which had called
# get_page_from_freelist (TOP_FRAME); register_dummy_stack() and the other placeholders
# call stack_trace_save(..., 0) themselves (save_stack_trace() before v5.2).
TOP_CALLEES = frozenset({"__set_page_owner", "get_page_from_freelist", "stack_trace_save",
                          "save_stack_trace"})


def family_of(version: str) -> str:
    """Return the learned family a version's stacks start from.

    >>> family_of("5.15")
    '6.1'
    """
    family = FAMILY_OF.get(version)
    if family is None:
        key = version_key(version)
        family = "5.10" if key < (5, 14) else "6.1" if key < (6, 9) else "6.12"
    return family


@dataclass(frozen=True)
class LearnedFrame:
    """A frame of a learned stack: function, offset, size, module."""

    function: str
    offset: int
    size: int
    module: str | None


class FamilyProfile:
    """One learned family: stacks, symbols, boot and capture profiles (read-only)."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data
        self.family: str = data["family"]
        self.kernel: str = data["kernel"]
        self.frames = [_parse_learned(text) for text in data["frames"]]
        self.stacks: list[tuple[LearnedFrame, ...]] = [
            tuple(self.frames[i] for i in ids) for ids in data["stacks"]]
        self.symbols: dict[str, dict[str, Any]] = data["symbols"]
        self.flags: list[tuple[str, ...]] = [tuple(names) for names in data["flags"]]
        self.lines: list[tuple[str, ...]] = [tuple(lines) for lines in data["lines"]]
        self.sites: dict[str, int] = data["sites"]


def _parse_learned(text: str) -> LearnedFrame:
    """Split `fn+0xoff/0xsize [mod]`."""
    symbol, _, rest = text.partition("+0x")
    offset, _, size_mod = rest.partition("/0x")
    size, _, module = size_mod.partition(" [")
    return LearnedFrame(symbol, int(offset, 16), int(size, 16), module[:-1] or None)


@functools.cache
def load_profile(family: str) -> FamilyProfile:
    """Read a learned family profile from pageowner/data."""
    path = DATA_DIR / f"sim-{family}.json"
    with path.open(encoding="utf-8") as handle:
        return FamilyProfile(json.load(handle))


# Versions whose boot was learned from their own real boot dump and is laid over their
# family (tools/learn_sim_profiles.py): their work dumps are kept back, so all else is
# the family's.
BOOT_OVERLAYS = {"7.3": "sim-7.3-boot.json"}


@functools.cache
def profile_for(version: str) -> FamilyProfile:
    """Return the profile a version simulates from: its family's, with its own boot if learned."""
    base = load_profile(family_of(version))
    name = BOOT_OVERLAYS.get(version)
    if name is None:
        return base
    with (DATA_DIR / name).open(encoding="utf-8") as handle:
        return FamilyProfile(merge_boot(base.data, json.load(handle)))


def merge_boot(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    """Lay a learned boot over a family: its stacks, flags and lines appended, ids moved."""
    frames_at, stacks_at = len(base["frames"]), len(base["stacks"])
    flags_at, lines_at = len(base["flags"]), len(base["lines"])
    data = dict(base)
    data["frames"] = [*base["frames"], *overlay["frames"]]
    data["stacks"] = [*base["stacks"], *([i + frames_at for i in ids]
                                         for ids in overlay["stacks"])]
    data["flags"] = [*base["flags"], *overlay["flags"]]
    data["lines"] = [*base["lines"], *overlay["lines"]]
    # the overlay's kernel measured these functions; the family's sizes fill the rest
    data["symbols"] = {**base["symbols"], **overlay["symbols"]}
    data["sites"] = {**base["sites"],
                     **{site: stack + stacks_at for site, stack in overlay["sites"].items()}}
    data["boot"] = [[stack + stacks_at, order, gfp, task, count, flags + flags_at,
                     lines + lines_at, t0, t1, scale]
                    for stack, order, gfp, task, count, flags, lines, t0, t1, scale
                    in overlay["boot"]]
    for key in ("tasks", "early", "boot_mem_mb"):
        data[key] = overlay[key]
    data["sources"] = [*base["sources"], *overlay["sources"]]
    return data


def _hash(*parts: object) -> int:
    """Return a stable 64-bit hash of some values."""
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def _split_module(name: str) -> tuple[str, str | None]:
    """Split `fn [module]` into its parts."""
    if name.endswith("]") and " [" in name:
        function, _, module = name.partition(" [")
        return function, module[:-1]
    return name, None


class StackBuilder:
    """Turns learned stacks and call paths into one kernel version's frame lines."""

    TEXT_BASE = 0xFFFFFFFF81000000
    MODULE_BASE = 0xFFFFFFFFC0000000

    def __init__(self, kernel: KernelVersion, seed: int,
                 symbols: SymbolTable | None = None) -> None:
        self.kernel = kernel
        self.version = kernel.version
        self.family = family_of(self.version)
        self.profile = profile_for(self.version)
        # The family's own kernel prints learned values unshifted; its learned stacks are
        # copied verbatim unless a symbol table re-resolves their frames.
        self.exact = self.version == FAMILY_KERNEL[self.family]
        self.verbatim = self.exact and symbols is None
        self.symbols = symbols
        self.seed = seed
        self.depth = kernel.max_stack_depth
        self.frame_style = kernel.fmt.frames
        self.rewrites = tuple(rule for rule in REWRITES[self.family]
                              if rule.applies(self.version))
        self.top = TOP_FRAME.get(self.version, "get_page_from_freelist")
        self._cache: dict[object, tuple[str, ...]] = {}
        self._sites: dict[Symbol, tuple[CallSite, ...]] = {}
        self._tails: dict[Symbol, tuple[str, ...]] = {}
        self._offsets: dict[tuple[Symbol, str, LearnedFrame | None], int] = {}

    # -- names ---------------------------------------------------------------------------

    def rename(self, names: Sequence[str]) -> list[str]:
        """Apply the version's renames to a list of function names."""
        result = list(names)
        for rule in self.rewrites:
            if rule.regex:
                pattern = re.compile(rule.pattern[0])
                result = [pattern.sub(rule.replacement[0], name) for name in result]
                result = [name for name in result if name]
            else:
                result = _replace_run(result, rule.pattern, rule.replacement)
        return result

    def _apply_top(self, names: list[str]) -> list[str]:
        """Start an allocator stack where this version's page_owner starts it."""
        if not names or names[0] not in _ALLOC_ENTRY:
            return names
        while names and names[0] in _ALLOC_ENTRY:
            names = names[1:]
        if self.top == "__alloc_pages_nodemask":
            return names
        if self.top == "prep_new_page":
            return ["prep_new_page", "get_page_from_freelist", *names]
        if self.top == "post_alloc_hook":
            return ["post_alloc_hook", "get_page_from_freelist", *names]
        return ["get_page_from_freelist", *names]

    # -- frames --------------------------------------------------------------------------

    def _resolve(self, function: str, callee: str, module: str | None,
                 learned: LearnedFrame | None) -> Frame:
        """Give a function its offset, size and (in old eras) address."""
        symbol = self.table_symbol(function, module)
        if symbol is None:
            # Not in the machine's symbol table (or no table): the built-in values.
            size, offset = self._learned_symbol(function, callee, learned)
            if size <= offset:
                size = offset + 1
            address_base = self._builtin_address(function, module)
        else:
            # The table's size is the kallsyms span (the gap to the next symbol), which is
            # what %pS prints as /size; ElfSymbolTable gives that rather than st_size.
            size = symbol.size
            address_base = symbol.address
            module = symbol.module or module
            key = (symbol, callee, learned)
            offset = self._offsets.get(key, -1)
            if offset < 0:
                offset = self._offsets[key] = self._table_offset(symbol, function, callee,
                                                                 learned)  # fmt: skip
        address = None
        if self.frame_style is FrameStyle.ADDRESS:
            # Until v4.14 the `[<%p>]` column printed the plain address; it was gone
            # before v4.15's %p hashing could show (kernel.kernels.FRAME_ADDRESS_UNTIL).
            address = address_base + offset
        return Frame(function, offset, size, module, address)

    def table_symbol(self, function: str, module: str | None) -> Symbol | None:
        """Return the symbol table's entry for a catalogue function, or None.

        A function the catalogue puts in a module is not taken from a vmlinux-only
        symbol: our modules (leaky) are not in any real kernel. One the catalogue puts in
        vmlinux but the table in a module (kallsyms of a modular build) takes the module.
        """
        if self.symbols is None:
            return None
        symbol = self.symbols.lookup(function)
        if symbol is None or symbol.size <= 0 or (module is not None and symbol.module is None):
            return None
        return symbol

    def _table_offset(self, symbol: Symbol, function: str, callee: str,
                      learned: LearnedFrame | None) -> int:
        """Pick a return offset inside a table function: after a call where the code shows.

        In order: a call to the frame above (its E8 target or call relocation names it; for
        the top frame, to page_owner's hook); a call to a function that makes that call or
        jumps there (this build did not inline a function the catalogue's kernel did, or
        made it a tail call); the call nearest the real kernel's learned offset, scaled to
        this size (same build: the same call); a call chosen by the seed. Without code
        (System.map, kallsyms) the scaled learned offset, or a mid-function one chosen by
        the seed.
        """
        choice = _hash(self.seed, self.version, function, callee)
        # A call ending the function (to a noreturn one) returns into the next function.
        sites = [site for site in self._call_sites(symbol) if 0 < site.offset < symbol.size]
        wanted = TOP_CALLEES if callee == "<top>" else frozenset((callee,))
        pool = ([site for site in sites if wanted.intersection(site.targets)]
                or [site for site in sites if self._reaches(site, wanted)])  # fmt: skip
        if pool:
            return pool[choice % len(pool)].offset
        recorded = self._recorded_symbol(function, callee, learned)
        if recorded is not None:
            position = recorded[1] * symbol.size // max(recorded[0], 1)
            if sites:
                return min(sites, key=lambda site: (abs(site.offset - position), site.offset)
                           ).offset  # fmt: skip
            return min(max(position, 1), symbol.size - 1)
        if sites:
            return sites[choice % len(sites)].offset
        size = symbol.size
        return max(1, size // 4 + choice % max(1, size // 2)) if size > 1 else 0

    def _reaches(self, site: CallSite, wanted: frozenset[str]) -> bool:
        """Tell whether a call goes to a function that calls, or tail-calls, one of `wanted`."""
        if self.symbols is None:
            return False
        for target in site.targets:
            symbol = self.symbols.lookup(target)
            if symbol is None:
                continue
            if wanted.intersection(self._tail_calls(symbol)) or any(
                    wanted.intersection(inner.targets) for inner in self._call_sites(symbol)):
                return True
        return False

    def _call_sites(self, symbol: Symbol) -> tuple[CallSite, ...]:
        """Return a table function's call sites, decoded once per function."""
        sites = self._sites.get(symbol)
        if sites is None and self.symbols is not None:
            sites = self._sites[symbol] = tuple(
                site for site in self.symbols.call_sites(symbol)
                if not set(site.targets) & _UNTRACED_CALLS)
        return sites or ()

    def _tail_calls(self, symbol: Symbol) -> tuple[str, ...]:
        """Return the functions a table function tail-calls, decoded once per function."""
        tails = self._tails.get(symbol)
        if tails is None and self.symbols is not None:
            tails = self._tails[symbol] = self.symbols.tail_calls(symbol)
        return tails or ()

    def _recorded_symbol(self, function: str, callee: str,
                         learned: LearnedFrame | None) -> tuple[int, int] | None:
        """Return (size, offset) as a real kernel printed it, or None when never seen."""
        info = self.profile.symbols.get(function)
        if learned is not None and learned.function == function:
            return learned.size, learned.offset
        if info is not None:
            return info["size"], info["calls"].get(callee, info["default"])
        return KNOWN_SYMBOLS.get(function)

    def _learned_symbol(self, function: str, callee: str,
                        learned: LearnedFrame | None) -> tuple[int, int]:
        """Return (size, offset) from the family's learned symbols, adjusted per version."""
        recorded = self._recorded_symbol(function, callee, learned)
        if recorded is None:
            # unknown to every real dump: a plausible size, and a call in its middle half
            h = _hash(self.family, "sym", function)
            size = 0x60 + (h % 0x5A0) // 0x10 * 0x10 + (h >> 20) % 0x10
            offset = size // 4 + (h >> 32) % (size // 2)
            return self._shift(function, size, offset)
        size, offset = recorded
        if self.exact:
            return size, offset
        return self._shift(function, size, offset)

    def _shift(self, function: str, size: int, offset: int) -> tuple[int, int]:
        """Move a size and offset a little, as another compiler or release would."""
        if self.exact:
            return size, offset
        percent = (_hash(self.version, "size", function) % 17) - 8
        new_size = max(0x10, size + size * percent // 100)
        new_offset = min(new_size - 1, max(1, offset * new_size // size))
        return new_size, new_offset

    def _builtin_address(self, function: str, module: str | None) -> int:
        """Place a function in a made-up but stable kernel text layout."""
        if module is not None:
            base = self.MODULE_BASE + (_hash(self.version, "mod", module) % 0x3F000) * 0x1000
            return base + (_hash(self.version, "fn", function) % 0x4000) // 0x10 * 0x10
        return self.TEXT_BASE + (_hash(self.version, "fn", function) % 0xE00000) // 0x10 * 0x10

    def _plan(self, names: list[str], learned: list[LearnedFrame | None]
              ) -> list[tuple[str, str | None, LearnedFrame | None]]:
        """Split names into (function, module, learned hint), truncated to the era's depth."""
        plan = []
        for name, hint in zip(names[:self.depth], learned, strict=False):
            function, module = _split_module(name)
            if hint is not None and hint.module is not None:
                module = hint.module
            plan.append((function, module, hint))
        return plan

    def _build(self, names: list[str], learned: list[LearnedFrame | None]) -> tuple[str, ...]:
        """Resolve names into frame lines, truncated to the era's depth."""
        frames: list[str] = []
        callee = "<top>"
        for function, module, hint in self._plan(names, learned):
            frames.append(format_frame(self._resolve(function, callee, module, hint)))
            callee = function
        return tuple(frames)

    def _renamed(self, names: Sequence[str], learned: Sequence[LearnedFrame] = ()
                 ) -> tuple[list[str], list[LearnedFrame | None]]:
        """Rename and re-top a stack; pair each name with the learned frame it keeps."""
        renamed = self._apply_top(self.rename(list(names)))
        hints: list[LearnedFrame | None] = []
        by_name: dict[str, list[LearnedFrame]] = {}
        for frame in learned:
            by_name.setdefault(frame.function, []).append(frame)
        for name in renamed:
            candidates = by_name.get(_split_module(name)[0])
            hints.append(candidates.pop(0) if candidates else None)
        return renamed, hints

    def _from_names(self, names: Sequence[str], learned: Sequence[LearnedFrame] = ()
                    ) -> tuple[str, ...]:
        """Rename, re-top and resolve a stack; keep learned frames that survive unchanged."""
        return self._build(*self._renamed(names, learned))

    def catalogue(self) -> list[tuple[str, str | None]]:
        """Return every (function, module) this version's stacks can print, in order."""
        profile = self.profile
        early = profile.stacks[profile.sites["early"]]
        stacks: list[tuple[list[str], list[LearnedFrame | None]]] = [
            self._renamed([f.function for f in frames], frames) for frames in profile.stacks]
        stacks += [self._renamed(paths[self.family]) for paths in CALL_PATHS.values()]
        if not self.kernel.stackdepot:
            stacks.append((list(_EARLY_PRE_DEPOT), [None] * len(_EARLY_PRE_DEPOT)))
        for kind in ("failure",) if "dummy" in profile.sites else ("dummy", "failure"):
            stacks.append(self._renamed([f"register_{kind}_stack",
                                         *(f.function for f in early[1:])], early[1:]))
        found: dict[tuple[str, str | None], None] = {}
        for names, hints in stacks:
            for function, module, _ in self._plan(names, hints):
                found[function, module] = None
        return list(found)

    def missing_functions(self) -> tuple[list[str], int]:
        """Return the catalogue's functions the symbol table lacks, and the catalogue's size."""
        catalogue = self.catalogue()
        missing = [function if module is None else f"{function} [{module}]"
                   for function, module in catalogue
                   if self.table_symbol(function, module) is None]
        return missing, len(catalogue)

    def learned(self, stack_id: int) -> tuple[str, ...]:
        """Return the frame lines of a learned stack in this version."""
        key = ("learned", stack_id)
        lines = self._cache.get(key)
        if lines is None:
            frames = self.profile.stacks[stack_id]
            if self.verbatim:
                lines = tuple(format_frame(Frame(f.function, f.offset, f.size, f.module))
                              for f in frames)
            else:
                lines = self._from_names([f.function for f in frames], frames)
            self._cache[key] = lines
        return lines

    def path(self, name: str) -> tuple[str, ...]:
        """Return the frame lines of a hand-written call path in this version."""
        key = ("path", name)
        lines = self._cache.get(key)
        if lines is None:
            names = CALL_PATHS[name][self.family]
            lines = self._cache[key] = self._from_names(names)
        return lines

    def placeholder(self, kind: str) -> tuple[str, ...]:
        """Return the early, dummy or failure stack page_owner registers at init."""
        key = ("placeholder", kind)
        lines = self._cache.get(key)
        if lines is not None:
            return lines
        early = self.profile.stacks[self.profile.sites["early"]]
        if not self.kernel.stackdepot and kind == "early":
            lines = self._build(list(_EARLY_PRE_DEPOT), [None] * len(_EARLY_PRE_DEPOT))
        elif kind == "early" or "dummy" not in self.profile.sites and kind == "dummy":
            if kind == "early":
                lines = self.learned(self.profile.sites["early"])
            else:
                names = ["register_dummy_stack", *(f.function for f in early[1:])]
                lines = self._from_names(names, early[1:])
        elif kind == "dummy":
            lines = self.learned(self.profile.sites["dummy"])
        else:
            names = [f"register_{kind}_stack", *(f.function for f in early[1:])]
            lines = self._from_names(names, early[1:])
        self._cache[key] = lines
        return lines


def _replace_run(names: list[str], pattern: tuple[str, ...],
                 replacement: tuple[str, ...]) -> list[str]:
    """Replace every occurrence of a run of names."""
    if not pattern:
        return names
    out: list[str] = []
    index = 0
    size = len(pattern)
    while index < len(names):
        if tuple(names[index:index + size]) == pattern:
            out.extend(replacement)
            index += size
        else:
            out.append(names[index])
            index += 1
    return out
