"""Kernel versions and what each one prints: the registry every era-dependent choice reads.

A `KernelVersion` says which line shapes /sys/kernel/debug/page_owner uses, which flag
tables name the GFP mask and page flags, and which optional lines and files exist. The
dates come from ../shared/reference/kernel.md (sections A and D); the ones it marks
uncertain are noted here too.
"""

from __future__ import annotations

from dataclasses import dataclass

from pageowner.errors import SpecError
from pageowner.kernel.tables import FlagTable, gfp_table_for, pageflag_table_for
from pageowner.model import DumpFormat, FrameStyle, HeaderStyle, PfnStyle

__all__ = [
    "DEFAULT_VERSION",
    "FRAME_ADDRESS_UNTIL",
    "KERNEL_VERSIONS",
    "KernelVersion",
    "dump_format_for",
    "get_kernel",
    "version_key",
]


def version_key(version: str) -> tuple[int, ...]:
    """Turn a version string into a tuple for comparisons.

    >>> version_key("6.12")
    (6, 12)
    """
    try:
        return tuple(int(part) for part in version.split("."))
    except ValueError:
        raise SpecError(f"not a kernel version: {version!r}") from None


def _since(version: str, first: str) -> bool:
    """Tell whether `version` is `first` or newer."""
    return version_key(version) >= version_key(first)


# The first release whose snprint_stack_trace() prints ` %pS` without the `[<%p>]` column.
# Not 5.2 (Gleixner's stack_trace_snprint() rework kept an already address-free format):
# the column is in the Nov 2016 (4.9-rc) kernel/stacktrace.c, gone from the struct
# stack_trace code that preceded 5.2, and absent from real 4.18/4.19 dumps; no release
# printed it hashed. [uncertain: the removing commit was not found; 4.10-4.15, taken as
# 4.15, the release whose %p hashing left the column meaningless]. docs/kernel-facts.md.
FRAME_ADDRESS_UNTIL = "4.15"


def dump_format_for(version: str) -> DumpFormat:
    """Return the page_owner line shapes of a kernel version.

    >>> str(dump_format_for("6.1"))
    'header 5.18, pfn 5.14, frames 4.15'
    """
    header_steps = [
        ("6.7", HeaderStyle.TGID_TS),  # a5b512e10748: free_ts removed from the output
        ("5.18", HeaderStyle.TGID_TS_FREE),  # tgid and comm
        ("5.14", HeaderStyle.PID_TS_FREE),  # 866b48526217: free_ts
        ("5.11", HeaderStyle.PID_TS),  # pid and ts
        ("4.6", HeaderStyle.MASK_NAMES),  # %pGg
        ("0", HeaderStyle.MASK),
    ]
    pfn_steps = [
        ("6.5", PfnStyle.HEX),  # "show pfn in hex format", June 2023 [likely 6.5]
        ("5.14", PfnStyle.DEC),  # %pGp prints value and fields itself [uncertain 5.13/5.14]
        ("4.6", PfnStyle.DEC_RAW_FLAGS),
        ("0", PfnStyle.LETTERS),
    ]
    header = next(style for first, style in header_steps if _since(version, first))
    pfn = next(style for first, style in pfn_steps if _since(version, first))
    frames = FrameStyle.PLAIN if _since(version, FRAME_ADDRESS_UNTIL) else FrameStyle.ADDRESS
    return DumpFormat(header=header, pfn=pfn, frames=frames)


@dataclass(frozen=True)
class KernelVersion:
    """What one kernel version's page_owner prints and accepts."""

    version: str

    @property
    def fmt(self) -> DumpFormat:
        """Return the dump's line shapes."""
        return dump_format_for(self.version)

    @property
    def gfp_table(self) -> FlagTable | None:
        """Return the %pGg table, or None where the mask is printed bare (3.19-4.5)."""
        return gfp_table_for(self.version) if _since(self.version, "4.6") else None

    @property
    def pageflag_table(self) -> FlagTable:
        """Return the %pGp table."""
        return pageflag_table_for(self.version)

    @property
    def page_owner_kstrtobool(self) -> bool:
        """Tell whether `page_owner=` takes y/n/1/0/true/false (5.14) or only `on`."""
        return _since(self.version, "5.14")

    @property
    def kstrtobool_enable_disable(self) -> bool:
        """Tell whether kstrtobool() also takes e/E and d/D (in 7.3's lib/kstrtox.c).

        [uncertain: the release that added them; 7.3 is the first one checked.]
        """
        return _since(self.version, "7.3")

    @property
    def page_owner_mode(self) -> int:
        """Return the mode debugfs gives page_owner: 0400, 0600 from 7.3 (it takes writes).

        Under lockdown debugfs refuses files with a write bit (LOCKDOWN_DEBUGFS), so 7.3's
        page_owner cannot be opened there at all (EPERM), where 0400 ones still could.
        """
        return 0o600 if _since(self.version, "7.3") else 0o400

    @property
    def read_clamped_to_page(self) -> bool:
        """Tell whether read_page_owner() allocates min(count, PAGE_SIZE) for a record.

        Miles Chen's "mm/page_owner: clamp read count to PAGE_SIZE" (posted Nov 2018, in
        5.0; offered to 4.4-4.20 stable by AUTOSEL in Jan 2019). Before it the kernel
        kmalloc()s the whole read size for every record.
        """
        return _since(self.version, "5.0")

    @property
    def per_subpage(self) -> bool:
        """Tell whether tail pages carry owner data too (5.4, 7e2f2a0cd17c)."""
        return _since(self.version, "5.4")

    @property
    def migrate_line(self) -> bool:
        """Tell whether the last migrate reason is printed (4.6)."""
        return _since(self.version, "4.6")

    @property
    def memcg_lines(self) -> bool:
        """Tell whether `Slab cache page` / `Charged ...` lines are printed (5.18)."""
        return _since(self.version, "5.18")

    @property
    def memcg_reparents(self) -> bool:
        """Tell whether root-memcg and reparented pages print `Charged to memcg /` (7.3).

        Measured on fixtures/real73: `Charged to offline memcg` never appears there.
        """
        return _since(self.version, "7.3")

    @property
    def stackdepot(self) -> bool:
        """Tell whether stacks live in stackdepot (4.8 [likely]) or in page_ext (8 frames)."""
        return _since(self.version, "4.8")

    @property
    def has_show_stacks(self) -> bool:
        """Tell whether page_owner_stacks/show_stacks exists (6.9)."""
        return _since(self.version, "6.9")

    @property
    def has_handles(self) -> bool:
        """Tell whether show_handles and show_stacks_handles exist (6.19)."""
        return _since(self.version, "6.19")

    @property
    def has_print_modes(self) -> bool:
        """Tell whether page_owner takes `mode=` and `nid=` writes per descriptor (7.3)."""
        return _since(self.version, "7.3")

    @property
    def count_threshold_newline(self) -> bool:
        """Tell whether count_threshold reads `N\\n` (7.3) or a bare `N` (6.9-6.19).

        6.9 made it a DEFINE_SIMPLE_ATTRIBUTE with format "%llu" (no newline; still so in
        the mm tree of October 2025, where 6.19's handle files landed); 7.3 prints "%llu\\n"
        [uncertain: the release between 6.19 and 7.3 that added the newline].
        """
        return _since(self.version, "7.3")

    @property
    def steal_whole_buddy(self) -> bool:
        """Tell whether the buddy falls back with steal_suitable_fallback (before 6.12.y).

        6.15's try_to_claim_block/__rmqueue_steal reached 6.12 through the 6.12.y stable
        backport; the simulated 6.12 is the learned 6.12.117, so it uses the new rule.
        """
        return not _since(self.version, "6.12")

    @property
    def noprof(self) -> bool:
        """Tell whether allocator symbols carry the `_noprof` suffix (6.10)."""
        return _since(self.version, "6.10")

    @property
    def max_stack_depth(self) -> int:
        """Return how many frames a record keeps: 8 in page_ext, 16 in stackdepot."""
        return 16 if self.stackdepot else 8

    @property
    def hex_pfn(self) -> bool:
        """Tell whether the PFN is printed in hex."""
        return self.fmt.pfn is PfnStyle.HEX


# The versions the simulator boots and the tests cover; any other x.y parses too.
KERNEL_VERSIONS: tuple[str, ...] = (
    "3.19", "4.6", "4.19", "5.4", "5.10", "5.11", "5.14", "5.15", "5.18",
    "6.1", "6.6", "6.7", "6.9", "6.12", "6.19", "7.3",
)  # fmt: skip
# The newest version is supported, but the default stays the newest one learned from
# dumps of a workload (6.19's stacks are 6.12's, renamed).
DEFAULT_VERSION = "6.19"


def get_kernel(version: str) -> KernelVersion:
    """Return the registry entry of a supported version, or raise SpecError."""
    if version not in KERNEL_VERSIONS:
        raise SpecError(
            f"unsupported kernel version {version!r}; choose one of {', '.join(KERNEL_VERSIONS)}"
        )
    return KernelVersion(version)
