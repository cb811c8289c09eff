"""How the simulator picks a frame's offset inside a symbol table's function.

A hand-made table (the SymbolTable protocol, with call sites) stands for a kernel build
other than the one the catalogue was learned from; no compiler needed.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from pageowner.dump.dumpfile import parse_frame
from pageowner.kernel.kernels import get_kernel
from pageowner.sim.stacks import StackBuilder, load_profile
from pageowner.symbols.symtab import CallSite, Symbol


class HandMadeTable:
    """Functions laid out one after another, each with the calls given."""

    def __init__(self, functions: dict[str, tuple[int, list[tuple[int, str | None]]]],
                 tails: dict[str, tuple[str, ...]] | None = None,
                 modules: dict[str, str] | None = None) -> None:
        self._tails = tails or {}
        self._symbols: dict[str, Symbol] = {}
        self._sites: dict[str, tuple[CallSite, ...]] = {}
        address = 0xFFFFFFFF81000000
        for name, (size, calls) in functions.items():
            self._symbols[name] = Symbol(name, address, size, (modules or {}).get(name))
            self._sites[name] = tuple(CallSite(offset, (target,) if target else ())
                                      for offset, target in calls)  # fmt: skip
            address += size

    def lookup(self, name: str) -> Symbol | None:
        return self._symbols.get(name)

    def symbol_at(self, address: int) -> Symbol | None:
        return next((symbol for symbol in self._symbols.values()
                     if symbol.address <= address < symbol.address + symbol.size), None)

    def call_sites(self, symbol: Symbol) -> tuple[CallSite, ...]:
        return self._sites[symbol.name]

    def tail_calls(self, symbol: Symbol) -> tuple[str, ...]:
        return self._tails.get(symbol.name, ())


def frames(version: str, path: str, table: HandMadeTable, seed: int = 1) -> dict[str, int]:
    """Build a call path; return each function's offset."""
    lines = StackBuilder(get_kernel(version), seed, table).path(path)
    return {str(frame.symbol): frame.offset for frame in map(parse_frame, lines)}


LEARNED = load_profile("6.1").symbols


def test_the_call_nearest_the_learned_offset_when_none_is_named() -> None:
    # GIVEN a bigger get_page_from_freelist than 6.1.192's, whose calls name neither
    # page_owner's hook nor a function calling it
    calls = [(0x100, "node_dirty_ok"), (0x1000, "rmqueue_bulk"), (0x1A00, "clear_page"),
             (0x1F00, None)]  # fmt: skip
    table = HandMadeTable({"get_page_from_freelist": (0x2000, calls)})
    # WHEN the 6.1 fault path is built
    offset = frames("6.1", "anon_fault", table)["get_page_from_freelist"]
    # THEN the top frame takes the call nearest the learned offset scaled to the new size
    learned = LEARNED["get_page_from_freelist"]
    scaled = learned["calls"]["<top>"] * 0x2000 // learned["size"]
    assert offset == min((site for site, _ in calls), key=lambda site: abs(site - scaled))
    assert offset == 0x1A00


def test_the_call_to_page_owners_hook_in_the_top_frame() -> None:
    # GIVEN a post_alloc_hook (the 6.12 CMA path's top frame) calling __set_page_owner
    table = HandMadeTable({"post_alloc_hook": (0x100, [(0x20, "__kernel_unpoison_pages"),
                                                       (0x90, "__set_page_owner")])})
    # THEN its frame returns after that call
    assert frames("6.12", "cma", table)["post_alloc_hook"] == 0x90


def test_a_call_through_a_function_the_catalogue_lacks() -> None:
    # GIVEN an exc_page_fault reaching handle_mm_fault through an out-of-line helper
    table = HandMadeTable({
        "exc_page_fault": (0x200, [(0x12, "do_user_addr_fault"), (0x33, "irqentry_enter"),
                                   (0x98, None)]),
        "do_user_addr_fault": (0x600, [(0x40, "handle_mm_fault")]),
    })  # fmt: skip
    # THEN its frame (under handle_mm_fault) returns after the helper's call, not after
    # the call nearest the learned offset (0x98 at this size)
    learned = LEARNED["exc_page_fault"]
    assert learned["calls"]["handle_mm_fault"] * 0x200 // learned["size"] == 0x98
    assert frames("6.1", "anon_fault", table)["exc_page_fault"] == 0x12


def test_a_call_to_a_function_ending_in_a_jump_to_the_frame_above() -> None:
    # GIVEN a vma_alloc_folio whose call to __folio_alloc goes through a wrapper that
    # tail-calls it (`jmp __folio_alloc`), far from the learned offset
    table = HandMadeTable({
        "vma_alloc_folio": (0x400, [(0x20, "mpol_cond_put"), (0xB0, "mpol_misplaced"),
                                    (0x300, "folio_wrapper")]),
        "folio_wrapper": (0x40, []),
    }, tails={"folio_wrapper": ("__folio_alloc",)})  # fmt: skip
    # THEN its frame returns after the call to the wrapper, not the one nearest the
    # learned offset (0xaf at this size)
    learned = LEARNED["vma_alloc_folio"]
    assert learned["calls"]["__folio_alloc"] * 0x400 // learned["size"] == 0xAF
    assert frames("6.1", "anon_fault", table)["vma_alloc_folio"] == 0x300


def test_several_calls_to_the_frame_above_are_chosen_by_the_seed() -> None:
    # GIVEN an __alloc_pages calling get_page_from_freelist at two places
    table = HandMadeTable({"__alloc_pages": (0x400, [(0x50, "should_fail_alloc_page"),
                                                     (0x200, "get_page_from_freelist"),
                                                     (0x300, "get_page_from_freelist")])})
    # THEN each seed gives one of the two, always the same, and the seeds cover both
    chosen = {seed: frames("6.1", "anon_fault", table, seed)["__alloc_pages"]
              for seed in range(1, 11)}  # fmt: skip
    assert set(chosen.values()) == {0x200, 0x300}
    assert frames("6.1", "anon_fault", table, 7)["__alloc_pages"] == chosen[7]


def test_without_code_the_learned_offset_or_a_seeded_middle() -> None:
    # GIVEN functions without call sites, as a System.map gives: handle_mm_fault at
    # 6.1.192's size, exc_page_fault at twice it, cma_alloc_write never seen in a dump
    handle = LEARNED["handle_mm_fault"]
    fault = LEARNED["exc_page_fault"]
    table = HandMadeTable({"handle_mm_fault": (handle["size"], []),
                           "exc_page_fault": (fault["size"] * 2, []),
                           "cma_alloc_write": (0x100, [])})  # fmt: skip
    anon = frames("6.1", "anon_fault", table)
    # THEN the same size keeps the learned offset, another size scales it
    assert anon["handle_mm_fault"] == handle["calls"]["__handle_mm_fault"]
    assert anon["exc_page_fault"] == fault["calls"]["handle_mm_fault"] * 2
    # AND an unknown function returns into its middle half, where the seed says
    middles = {frames("6.1", "cma", table, seed)["cma_alloc_write"] for seed in range(1, 11)}
    assert all(0x40 <= offset < 0xC0 for offset in middles) and len(middles) > 1


def test_module_functions_and_kallsyms_modules() -> None:
    # GIVEN a vmlinux-only table that happens to name the leaky module's function, and a
    # kallsyms-like one where a catalogue vmlinux function lives in a module
    table = HandMadeTable({"leaky_refill": (0x100, [(0x40, None)]),
                           "process_one_work": (0x400, [(0x80, None)])},
                          modules={"process_one_work": "wq"})  # fmt: skip
    lines = StackBuilder(get_kernel("6.12"), 1, table).path("leak")
    frames = {str(frame.symbol): frame for frame in map(parse_frame, lines)}
    builtin = {str(frame.symbol): frame for frame in map(
        parse_frame, StackBuilder(get_kernel("6.12"), 1).path("leak"))}
    # THEN the module's function keeps the built-in frame, not vmlinux's symbol
    assert frames["leaky_refill"] == builtin["leaky_refill"]
    assert frames["leaky_refill"].module == "leaky"
    # AND the function the table puts in a module is printed with that module
    assert (frames["process_one_work"].size, frames["process_one_work"].module) == (0x400, "wq")


@given(seed=st.integers(0, 1 << 32),
       layout=st.lists(st.tuples(st.integers(1, 0x2000), st.lists(st.integers(0, 0x2100),
                                                                   max_size=6)),
                       min_size=8, max_size=8))  # fmt: skip
def test_offsets_stay_inside_and_on_calls(seed: int,
                                          layout: list[tuple[int, list[int]]]) -> None:
    # GIVEN the 6.12 fault path's functions with any sizes and any call offsets
    names = ["get_page_from_freelist", "__alloc_pages_noprof", "alloc_pages_mpol_noprof",
             "vma_alloc_folio_noprof", "__handle_mm_fault", "handle_mm_fault",
             "exc_page_fault", "asm_exc_page_fault"]  # fmt: skip
    table = HandMadeTable({name: (size, [(offset, "some_call") for offset in sorted(set(calls))])
                           for name, (size, calls) in zip(names, layout, strict=True)})
    # WHEN the path is built twice under one seed
    built = StackBuilder(get_kernel("6.12"), seed, table).path("anon_fault")
    assert StackBuilder(get_kernel("6.12"), seed, table).path("anon_fault") == built
    for frame in map(parse_frame, built):
        symbol = table.lookup(str(frame.symbol))
        assert symbol is not None
        inside = {site.offset for site in table.call_sites(symbol)
                  if 0 < site.offset < symbol.size}  # fmt: skip
        # THEN every frame has the table's size, an offset inside it (0 only for a
        # one-byte function), and a call's return offset whenever there is one inside
        assert frame.size == symbol.size
        assert 0 < frame.offset < symbol.size or symbol.size == 1 and frame.offset == 0
        assert frame.offset in inside or not inside
