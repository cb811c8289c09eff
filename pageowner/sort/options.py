"""page_owner_sort's options: the sort and cull keys, their parsers, and `SortOptions`.

The key names and the way the short flags combine are those of `tools/mm/page_owner_sort`
(Linux 6.12) and, for the keys 6.7 removed, `tools/vm/page_owner_sort` (6.1); see
../shared/reference/kernel.md section C.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pageowner.errors import SpecError

__all__ = [
    "CULL_KEYS",
    "SHORT_SORT_FLAGS",
    "SORT_KEYS",
    "SortKey",
    "SortOptions",
    "build_options",
    "parse_cull_spec",
    "parse_name_list",
    "parse_sort_spec",
]


@dataclass(frozen=True)
class _KeyInfo:
    """One sort or cull key: its names, and whether it exists only in 5.18-6.6."""

    name: str
    aliases: tuple[str, ...]
    legacy: bool = False


# --sort keys (get_arg_type): short and long names; `times`/`pages` are ours (-t / -m).
SORT_KEYS: tuple[_KeyInfo, ...] = (
    _KeyInfo("pid", ("p", "pid")),
    _KeyInfo("tgid", ("tg", "tgid")),
    _KeyInfo("name", ("n", "name")),
    _KeyInfo("stacktrace", ("st", "stacktrace")),
    _KeyInfo("txt", ("T", "txt")),
    _KeyInfo("alloc_ts", ("at", "alloc_ts")),
    _KeyInfo("allocator", ("ator", "allocator")),
    _KeyInfo("times", ("times",)),
    _KeyInfo("pages", ("pages",)),
    _KeyInfo("free_ts", ("ft", "free_ts"), legacy=True),
)
# --cull keys, in the fixed priority the C comparator applies them, whatever the user order.
CULL_KEYS: tuple[_KeyInfo, ...] = (
    _KeyInfo("stacktrace", ("st", "stacktrace")),
    _KeyInfo("pid", ("p", "pid")),
    _KeyInfo("tgid", ("tg", "tgid")),
    _KeyInfo("name", ("n", "name")),
    _KeyInfo("free", ("f", "free"), legacy=True),
    _KeyInfo("allocator", ("ator", "allocator")),
)


def _lookup(word: str, table: Sequence[_KeyInfo]) -> _KeyInfo | None:
    """Find a key by any of its names (case-sensitive, as the C tool's strcmp)."""
    for info in table:
        if word in info.aliases:
            return info
    return None


@dataclass(frozen=True)
class SortKey:
    """One term of a sort order: a key name and its direction."""

    name: str
    descending: bool = False

    @property
    def legacy(self) -> bool:
        """Tell whether this key exists only in the 5.18-6.6 tool (free_ts)."""
        info = _lookup(self.name, SORT_KEYS)
        return bool(info and info.legacy)


def parse_sort_spec(text: str) -> tuple[SortKey, ...]:
    """Parse `[+|-]key[,[+|-]key...]` as --sort takes it.

    >>> parse_sort_spec("n,+pid,-tgid")
    (SortKey(name='name', descending=False), SortKey(name='pid', descending=False), \
SortKey(name='tgid', descending=True))
    """
    keys = []
    for word in text.split(","):
        descending = word.startswith("-")
        bare = word[1:] if word[:1] in ("+", "-") else word
        info = _lookup(bare, SORT_KEYS)
        if info is None:
            names = ", ".join(alias for key in SORT_KEYS for alias in key.aliases)
            raise SpecError(f"unknown sort key {bare!r} (choose from {names})")
        keys.append(SortKey(info.name, descending))
    return tuple(keys)


def parse_cull_spec(text: str) -> frozenset[str]:
    """Parse `key[,key...]` as --cull takes it; the order given does not matter.

    >>> sorted(parse_cull_spec("st,pid,name"))
    ['name', 'pid', 'stacktrace']
    """
    keys = set()
    for word in text.split(","):
        info = _lookup(word, CULL_KEYS)
        if info is None:
            names = ", ".join(alias for key in CULL_KEYS for alias in key.aliases)
            raise SpecError(f"unknown cull key {word!r} (choose from {names})")
        keys.add(info.name)
    return frozenset(keys)


def parse_name_list(text: str) -> tuple[bytes, ...]:
    """Parse a comma-separated command-name list (exact names; empty ones allowed).

    >>> parse_name_list("swapper/0,dd")
    (b'swapper/0', b'dd')
    """
    return tuple(word.encode("utf-8", "surrogateescape") for word in text.split(","))


@dataclass(frozen=True)
class SortOptions:
    """Everything that decides a page_owner_sort report."""

    sort_keys: tuple[SortKey, ...] = (SortKey("times", descending=True),)
    cull: frozenset[str] = frozenset()
    pids: tuple[int, ...] | None = None
    tgids: tuple[int, ...] | None = None
    names: tuple[bytes, ...] | None = None
    filter_released: bool = False  # -f, 5.18-6.6 only
    force_legacy: bool = False

    @property
    def legacy(self) -> bool:
        """Tell whether 5.18-6.6 semantics apply: -f, -r, `ft` or `f` asks for them.

        Those options read free_ts, which 6.7 removed together with the timestamp
        stripping that lets identical allocations merge; the old tool kept the text whole.
        """
        return (
            self.force_legacy
            or self.filter_released
            or "free" in self.cull
            or any(key.legacy for key in self.sort_keys)
        )

    @property
    def strip_ts(self) -> bool:
        """Tell whether the ts digits are cut from the text before grouping (6.7+).

        page_owner_sort keeps them when the first sort key is the allocation time.
        """
        return not self.legacy and self.sort_keys[0].name != "alloc_ts"


# The short sort flags of page_owner_sort; -r exists only in the 5.18-6.6 tool.
SHORT_SORT_FLAGS: dict[str, SortKey] = {
    "a": SortKey("alloc_ts"),
    "m": SortKey("pages", descending=True),
    "n": SortKey("name"),
    "p": SortKey("pid"),
    "P": SortKey("tgid"),
    "s": SortKey("stacktrace"),
    "t": SortKey("times", descending=True),
    "r": SortKey("free_ts"),
}


def build_options(
    short_flags: Sequence[str] = (),
    sort_spec: tuple[SortKey, ...] | None = None,
    cull: frozenset[str] = frozenset(),
    pids: tuple[int, ...] | None = None,
    tgids: tuple[int, ...] | None = None,
    names: tuple[bytes, ...] | None = None,
    filter_released: bool = False,
) -> SortOptions:
    """Combine page_owner_sort's options as the 6.7+ tool does.

    One short sort flag at most (repeating the same one is fine); it wins over --sort.
    With neither, --sort applies, and without that, times descending.
    """
    chosen = sorted(set(short_flags))
    if len(chosen) > 1:
        flags = " ".join(f"-{flag}" for flag in chosen)
        raise SpecError(f"choose one sort flag, not {flags}")
    if chosen:
        keys: tuple[SortKey, ...] = (SHORT_SORT_FLAGS[chosen[0]],)
    elif sort_spec:
        keys = sort_spec
    else:
        keys = (SortKey("times", descending=True),)
    return SortOptions(
        sort_keys=keys, cull=cull, pids=pids, tgids=tgids, names=names,
        filter_released=filter_released,
    )  # fmt: skip
