"""Symbolize the frames of page_owner dumps and page_owner_stacks files.

Each unique frame line is resolved once against vmlinux or its module's `.ko` (found under a
modules directory): `func+off/size` by name (the size picks among static functions sharing
a name), raw addresses directly. The text output is the input with each resolved frame line
extended by ` (file:line file:line ...)`, the inline chain as scripts/decode_stacktrace.sh
prints it, so it is still a dump that `pageowner.dump.dumpfile` reads and `pageowner sort`
groups. The JSON output lists the unique frames with their structured inline chains.
"""

from __future__ import annotations

import contextlib
import enum
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import IO, Any

from pageowner.dump.dumpfile import decode, encode, format_frame, parse_frame
from pageowner.dump.fileio import atomic_output, check_output_path, line_body, open_input
from pageowner.dump.handles import (
    HandleJoin,
    insert_frames,
    load_handle_stacks,
    sidecar_stacks_file,
)
from pageowner.errors import SymbolError
from pageowner.model import Frame
from pageowner.symbols.elf import ElfSymbolTable, Resolution, SourceLine
from pageowner.symbols.symtab import Symbol

__all__ = [
    "FORMATS",
    "WRITERS",
    "FrameStatus",
    "ResolvedFrame",
    "SymbolizeOptions",
    "SymbolizeReport",
    "Symbolizer",
    "find_module_files",
    "symbolize_file",
]

WarningHandler = Callable[[str], None]
ProgressHandler = Callable[[int, int | None], None]

# How many mismatching frames an error or warning names.
_NAMED = 3
_MODULE_SUFFIXES = (".ko", ".ko.xz", ".ko.gz")


class FrameStatus(enum.Enum):
    """What became of a frame; the values are the JSON `status` strings."""

    OK = "ok"  # symbol and source lines
    NO_LINES = "no-lines"  # symbol found, no DWARF line for it
    SIZE_MISMATCH = "size-mismatch"  # the /size differs from every symbol of that name
    UNKNOWN_SYMBOL = "unknown-symbol"  # no function of that name in the ELF
    NO_SYMBOL = "no-symbol"  # a raw address outside every function
    NO_MODULE = "no-module"  # the module's .ko was not found (or no --modules)
    UNPARSED = "unparsed"  # not a frame this reader can take apart

    @property
    def is_mismatch(self) -> bool:
        """Tell whether the frame says the ELF is not the dump's kernel."""
        return self in (FrameStatus.SIZE_MISMATCH, FrameStatus.UNKNOWN_SYMBOL)

    @property
    def keeps_text(self) -> bool:
        """Tell whether the frame line is written back unchanged."""
        return self.is_mismatch or self in (FrameStatus.NO_MODULE, FrameStatus.UNPARSED,
                                            FrameStatus.NO_SYMBOL)  # fmt: skip


@dataclass(frozen=True, slots=True)
class ResolvedFrame:
    """One unique frame line and what symbolizing it found."""

    text: str  # the frame line as read, leading space included, no newline
    frame: Frame
    status: FrameStatus
    elf: str | None = None
    symbol: Symbol | None = None
    address: int | None = None
    lines: tuple[SourceLine, ...] = ()
    # The /size the ELF has for the symbol, when it differs from the frame's.
    elf_size: int | None = None

    def symbolized(self, prefix: str | None) -> str:
        """Return the frame line with its source locations appended (or unchanged)."""
        if self.status.keeps_text:
            return self.text
        source = " ".join(_strip(line, prefix).location() for line in self.lines) or None
        frame = self.frame
        if frame.symbol is None and self.symbol is not None and self.address is not None:
            # A raw address becomes what %pS would have printed, keeping the address.
            frame = Frame(self.symbol.name, self.address - self.symbol.address,
                          self.symbol.size, self.symbol.module, self.address)  # fmt: skip
        if source is None:
            return format_frame(frame) if frame is not self.frame else self.text
        return format_frame(replace(frame, source=source))

    def to_json(self, prefix: str | None) -> dict[str, Any]:
        """Describe the frame for the JSON output."""
        symbol = self.symbol
        return {
            "text": self.text,
            "status": self.status.value,
            "function": symbol.name if symbol is not None else self.frame.symbol,
            "offset": self.address - symbol.address
            if symbol is not None and self.address is not None
            else self.frame.offset if self.frame.symbol else None,
            "size": symbol.size if symbol is not None else self.frame.size or None,
            "module": self.frame.module,
            "address": f"{self.address:#x}" if self.address is not None else None,
            "elf": self.elf,
            "elf_size": self.elf_size,
            "lines": [
                {"function": line.function, "file": _strip(line, prefix).file,
                 "line": line.line or None, "discriminator": line.discriminator or None}
                for line in self.lines
            ],
        }  # fmt: skip


def _strip(line: SourceLine, prefix: str | None) -> SourceLine:
    """Drop the build directory from a source path, as decode_stacktrace.sh does."""
    if prefix and line.file and line.file.startswith(prefix + "/"):
        return replace(line, file=line.file[len(prefix) + 1 :])
    return line


def find_module_files(directory: str) -> dict[str, list[str]]:
    """Map module names (with `-` read as `_`) to the .ko files under a directory."""
    found: dict[str, list[str]] = {}
    if not os.path.isdir(directory):
        raise SymbolError(f"{directory}: not a directory (--modules)")
    for root, dirs, files in os.walk(directory):
        dirs.sort()
        for name in sorted(files):
            for suffix in _MODULE_SUFFIXES:
                if name.endswith(suffix):
                    module = name[: -len(suffix)].replace("-", "_")
                    found.setdefault(module, []).append(os.path.join(root, name))
    return found


_HEX = re.compile(r"0x[0-9a-f]+")


def raw_address(frame: Frame) -> int | None:
    """Return the address a frame without a symbol stands for, or None.

    %pS prints `0x...` for an address it cannot name; that text is the real address even
    when the `[<...>]` column beside it is not an address (a hashed %p, which a hand-made
    or foreign dump may carry; page_owner printed plain addresses there until v4.14).

    >>> hex(raw_address(Frame(None, address=0x4E6F1A2B, raw="0xffffffffc0123456")))
    '0xffffffffc0123456'
    """
    if frame.raw is not None:
        return int(frame.raw, 16) if _HEX.fullmatch(frame.raw) else None
    return frame.address


class Symbolizer:
    """Resolve frames against vmlinux and module .ko files, opening each ELF once."""

    def __init__(
        self,
        vmlinux: ElfSymbolTable,
        modules_dir: str | None = None,
        *,
        cache_dir: str | None = None,
        use_cache: bool = True,
        on_warning: WarningHandler | None = None,
    ) -> None:
        self.vmlinux = vmlinux
        self.modules_dir = modules_dir
        self.cache_dir = cache_dir
        self.use_cache = use_cache
        self.on_warning = on_warning
        self._module_files: dict[str, list[str]] | None = None
        self._modules: dict[str, ElfSymbolTable | None] = {}
        self.missing_modules: dict[str, int] = {}
        self.no_dwarf: list[str] = []
        self.kaslr_offset = 0
        if not vmlinux.has_dwarf:
            self._no_dwarf(vmlinux)

    def _warn(self, message: str) -> None:
        """Pass a warning on, if anyone listens."""
        if self.on_warning is not None:
            self.on_warning(message)

    def _no_dwarf(self, table: ElfSymbolTable) -> None:
        """Warn once that an ELF gives symbols only."""
        self.no_dwarf.append(table.path)
        self._warn(f"{table.path}: no DWARF debug info; frames get symbols, not file:line")

    def close(self) -> None:
        """Close the module tables opened (vmlinux belongs to the caller)."""
        for table in self._modules.values():
            if table is not None:
                table.close()
        self._modules.clear()

    def module_table(self, module: str) -> ElfSymbolTable | None:
        """Return the table of a module's .ko, or None when it cannot be found."""
        if module in self._modules:
            return self._modules[module]
        table = None
        if self.modules_dir is not None:
            if self._module_files is None:
                self._module_files = find_module_files(self.modules_dir)
            # Like decode_stacktrace.sh, prefer a copy with debug info when there are several.
            for path in self._module_files.get(module.replace("-", "_"), []):
                candidate = ElfSymbolTable.from_path(path, module=module,
                                                     cache_dir=self.cache_dir,
                                                     use_cache=self.use_cache)  # fmt: skip
                if table is None or (candidate.has_dwarf and not table.has_dwarf):
                    if table is not None:
                        table.close()
                    table = candidate
                else:
                    candidate.close()
                if table.has_dwarf:
                    break
            if table is not None and not table.has_dwarf:
                self._no_dwarf(table)
        self._modules[module] = table
        return table

    def resolve_lines(
        self, texts: Iterable[str], on_progress: ProgressHandler | None = None
    ) -> dict[str, ResolvedFrame]:
        """Resolve unique frame lines (leading space included, no newline)."""
        pending: dict[int, list[tuple[str, Frame, int, Symbol | None, int | None]]] = {}
        tables: dict[int, ElfSymbolTable] = {}
        results: dict[str, ResolvedFrame] = {}
        frames = {text: parse_frame(text) for text in dict.fromkeys(texts)}
        self.kaslr_offset = self._kaslr_offset(frames.values())
        for text, frame in frames.items():
            located = self._locate(text, frame)
            if isinstance(located, ResolvedFrame):
                results[text] = located
                continue
            table, address, symbol, elf_size = located
            tables[id(table)] = table
            pending.setdefault(id(table), []).append((text, frame, address, symbol, elf_size))
        done = 0
        total = sum(len({item[2] for item in items}) for items in pending.values())
        for key, items in pending.items():
            table = tables[key]

            def progress(count: int, base: int = done) -> None:
                if on_progress is not None:
                    on_progress(base + count, total)

            resolved = table.resolve((address for _, _, address, _, _ in items), progress)
            for text, frame, address, symbol, elf_size in items:
                results[text] = self._finish(text, frame, table, resolved[address], symbol,
                                             elf_size)  # fmt: skip
            done += len({item[2] for item in items})
        return results

    def _locate(self, text: str, frame: Frame) -> ResolvedFrame | tuple[
        ElfSymbolTable, int, Symbol | None, int | None
    ]:
        """Find the ELF and address of a frame, or its final status."""
        if frame.symbol is None:
            address = raw_address(frame)
            if address is None:
                return ResolvedFrame(text, frame, FrameStatus.UNPARSED)
            return self.vmlinux, address - self.kaslr_offset, None, None
        table: ElfSymbolTable | None = self.vmlinux
        if frame.module is not None:
            # With CONFIG_STACKTRACE_BUILD_ID (v5.14+) %pS adds the module's build id:
            # "[xfs 1234abcd...]".
            module = frame.module.split()[0]
            table = self.module_table(module)
            if table is None:
                self.missing_modules[module] = self.missing_modules.get(module, 0) + 1
                return ResolvedFrame(text, frame, FrameStatus.NO_MODULE)
        assert table is not None
        symbol, matched = table.lookup_sized(frame.symbol, frame.size)
        if symbol is None:
            return ResolvedFrame(text, frame, FrameStatus.UNKNOWN_SYMBOL, table.path)
        if not matched or frame.offset >= max(frame.size, 1):
            return ResolvedFrame(text, frame, FrameStatus.SIZE_MISMATCH, table.path, symbol,
                                 elf_size=symbol.size)  # fmt: skip
        return table, symbol.address + frame.offset, symbol, None

    def _kaslr_offset(self, frames: Iterable[Frame]) -> int:
        """Find how far the running kernel was moved from vmlinux's link addresses.

        Frames of the 3.19-4.14 eras carry both `[<address>]` and `func+off/size`; when most
        of them agree on `address - (symbol + off)`, that is the KASLR offset, and raw
        addresses are taken back by it. Where the column is not an address (a hashed %p)
        they disagree and the offset stays 0.
        """
        votes: dict[int, int] = {}
        for frame in frames:
            if frame.symbol is None or frame.address is None or frame.module is not None:
                continue
            symbol, matched = self.vmlinux.lookup_sized(frame.symbol, frame.size)
            if symbol is not None and matched:
                offset = frame.address - symbol.address - frame.offset
                votes[offset] = votes.get(offset, 0) + 1
        if not votes:
            return 0
        offset, count = max(votes.items(), key=lambda item: (item[1], -abs(item[0])))
        return offset if count >= max(2, sum(votes.values()) // 2 + 1) else 0

    @staticmethod
    def _finish(text: str, frame: Frame, table: ElfSymbolTable, resolution: Resolution,
                symbol: Symbol | None, elf_size: int | None) -> ResolvedFrame:  # fmt: skip
        """Combine a frame with its resolution."""
        symbol = symbol or resolution.symbol
        if symbol is None:
            return ResolvedFrame(text, frame, FrameStatus.NO_SYMBOL, table.path,
                                 address=resolution.address)  # fmt: skip
        status = FrameStatus.OK if resolution.lines else FrameStatus.NO_LINES
        return ResolvedFrame(text, frame, status, table.path, symbol, resolution.address,
                             resolution.lines, elf_size)  # fmt: skip


@dataclass(frozen=True, slots=True)
class SymbolizeOptions:
    """What `symbolize_file` needs besides its input and output."""

    vmlinux: str
    modules_dir: str | None = None
    output_format: str = "text"
    # The build directory stripped from paths: "auto" finds it from kernel_init as
    # decode_stacktrace.sh does, "" keeps paths whole.
    base_path: str = "auto"
    cache_dir: str | None = None
    use_cache: bool = True
    # Write the output even when frames do not match the ELF (they stay unchanged).
    allow_mismatch: bool = False
    # Frames for 7.3 handle-only records: show_stacks_handles or a stack_handle dump.
    stacks_from: str | None = None


@dataclass
class SymbolizeReport:
    """What a symbolize run did, for the command's summary and the tests."""

    frames: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    mismatches: list[ResolvedFrame] = field(default_factory=list)
    missing_modules: dict[str, int] = field(default_factory=dict)
    index_from_cache: bool = False
    lines_from_cache: int = 0
    build_id: str | None = None
    base_path: str | None = None
    kaslr_offset: int = 0


def _collect_frames(lines: Iterable[bytes], spool: IO[bytes] | None) -> list[str]:
    """Return the unique frame lines of a dump, copying every line to `spool` if given."""
    unique: dict[bytes, None] = {}
    for raw in lines:
        if spool is not None:
            spool.write(raw)
        if raw.startswith(b" "):
            unique[line_body(raw)] = None
    return [decode(raw) for raw in unique]


def _rewrite(lines: Iterable[bytes], out: IO[bytes], replacements: dict[bytes, bytes]) -> None:
    """Copy lines, replacing resolved frame lines (line endings kept)."""
    for raw in lines:
        if raw.startswith(b" "):
            body = line_body(raw)
            new = replacements.get(body)
            if new is not None:
                out.write(new + raw[len(body) :])
                continue
        out.write(raw)


def _write_text(resolved: dict[str, ResolvedFrame], report: SymbolizeReport,
                options: SymbolizeOptions, lines: Callable[[], Iterator[bytes]],
                out: IO[bytes]) -> None:  # fmt: skip
    """Write the input again, each resolved frame line extended by its source group."""
    changes = {}
    for text, frame in resolved.items():
        new = frame.symbolized(report.base_path)
        if new != text:
            changes[encode(text)] = encode(new)
    _rewrite(lines(), out, changes)


def _write_json(resolved: dict[str, ResolvedFrame], report: SymbolizeReport,
                options: SymbolizeOptions, lines: Callable[[], Iterator[bytes]],
                out: IO[bytes]) -> None:  # fmt: skip
    """Write the unique frames and a summary as one JSON document."""
    document = {
        "vmlinux": options.vmlinux,
        "build_id": report.build_id,
        "base_path": report.base_path,
        "kaslr_offset": f"{report.kaslr_offset:#x}",
        "frames": [frame.to_json(report.base_path) for frame in resolved.values()],
        "summary": {"frames": report.frames, "statuses": report.statuses,
                    "missing_modules": report.missing_modules},
    }  # fmt: skip
    out.write(json.dumps(document, indent=1).encode() + b"\n")


Writer = Callable[
    [dict[str, ResolvedFrame], SymbolizeReport, SymbolizeOptions,
     Callable[[], Iterator[bytes]], IO[bytes]], None,
]  # fmt: skip

# Output formats: `--format NAME` -> the function that writes it.
WRITERS: dict[str, Writer] = {"text": _write_text, "json": _write_json}
FORMATS = tuple(WRITERS)


@contextlib.contextmanager
def _two_pass_input(
    path: str, join: HandleJoin
) -> Iterator[tuple[list[str], Callable[[], Iterator[bytes]]]]:
    """Read the frame lines of an input, and give a way to read all of it again.

    A plain file is read twice; stdin, pipes and compressed input are copied to a
    temporary file on the first pass. Handle-only records get their joined frames.
    """
    with open_input(path) as source:
        if source.is_regular:
            frames = _collect_frames(insert_frames(source.lines(), join), None)

            def again() -> Iterator[bytes]:
                with open_input(path) as second:
                    yield from insert_frames(second.lines(), HandleJoin(path, join.stacks))

            yield frames, again
            return
        with tempfile.TemporaryFile() as spool:
            frames = _collect_frames(insert_frames(source.lines(), join), spool)

            def replay() -> Iterator[bytes]:
                spool.seek(0)
                yield from spool

            yield frames, replay


def symbolize_file(
    input_path: str,
    output_path: str,
    options: SymbolizeOptions,
    *,
    on_warning: WarningHandler | None = None,
    on_progress: ProgressHandler | None = None,
) -> SymbolizeReport:
    """Symbolize a page_owner dump or page_owner_stacks file into `output_path`.

    Raises SymbolError when frames do not match the ELF (a /size that no symbol of that
    name has, or a name it lacks), unless `options.allow_mismatch`; nothing is written then.
    """
    writer = WRITERS.get(options.output_format)
    if writer is None:
        raise SymbolError(f"unknown output format {options.output_format!r}")
    check_output_path(output_path, (input_path, options.vmlinux))
    stacks_path = options.stacks_from or sidecar_stacks_file(input_path)
    join = HandleJoin(input_path, load_handle_stacks(stacks_path) if stacks_path else None)
    report = SymbolizeReport()
    with ElfSymbolTable.from_path(options.vmlinux, cache_dir=options.cache_dir,
                                  use_cache=options.use_cache) as vmlinux:  # fmt: skip
        symbolizer = Symbolizer(vmlinux, options.modules_dir, cache_dir=options.cache_dir,
                                use_cache=options.use_cache, on_warning=on_warning)  # fmt: skip
        try:
            with _two_pass_input(input_path, join) as (frames, again):
                message = join.warning("left without frames")
                if message is not None and on_warning is not None:
                    on_warning(message)
                resolved = symbolizer.resolve_lines(frames, on_progress)
                _summarize(report, resolved, symbolizer, vmlinux)
                report.base_path = _base_path(options.base_path, vmlinux)
                _check_mismatches(report, options, on_warning)
                _warn_modules(report, options, on_warning)
                with atomic_output(output_path, inputs=(input_path, options.vmlinux)) as out:
                    writer(resolved, report, options, again, out)
        finally:
            symbolizer.close()
    return report


def _summarize(report: SymbolizeReport, resolved: dict[str, ResolvedFrame],
               symbolizer: Symbolizer, vmlinux: ElfSymbolTable) -> None:  # fmt: skip
    """Count statuses and collect mismatches."""
    report.frames = len(resolved)
    for frame in resolved.values():
        status = frame.status.value
        report.statuses[status] = report.statuses.get(status, 0) + 1
        if frame.status.is_mismatch:
            report.mismatches.append(frame)
    report.missing_modules = dict(symbolizer.missing_modules)
    report.index_from_cache = vmlinux.from_cache
    report.lines_from_cache = vmlinux.cached_hits
    report.build_id = vmlinux.build_id
    report.kaslr_offset = symbolizer.kaslr_offset


def _base_path(option: str, vmlinux: ElfSymbolTable) -> str | None:
    """Resolve the --base-path option."""
    if option == "auto":
        return vmlinux.source_prefix()
    return option.rstrip("/") or None


def _describe_mismatch(frame: ResolvedFrame) -> str:
    """Name one mismatching frame in a few words."""
    text = frame.text.strip()
    if frame.status == FrameStatus.UNKNOWN_SYMBOL:
        return f"{text} (no such function)"
    if frame.elf_size is not None:
        return f"{text} (ELF size {frame.elf_size:#x})"
    return text


def _check_mismatches(report: SymbolizeReport, options: SymbolizeOptions,
                      on_warning: WarningHandler | None) -> None:  # fmt: skip
    """Refuse (or, with allow_mismatch, warn about) frames the ELF does not match."""
    if not report.mismatches:
        return
    count = len(report.mismatches)
    named = "; ".join(_describe_mismatch(frame) for frame in report.mismatches[:_NAMED])
    more = f" and {count - _NAMED} more" if count > _NAMED else ""
    message = (f"{count} of {report.frames} frames do not match the ELF it was resolved "
               f"against (another kernel build?): {named}{more}")  # fmt: skip
    if not options.allow_mismatch:
        raise SymbolError(message + "; --allow-mismatch writes the output anyway")
    if on_warning is not None:
        on_warning(message + "; those frames are left as they are")


def _warn_modules(report: SymbolizeReport, options: SymbolizeOptions,
                  on_warning: WarningHandler | None) -> None:  # fmt: skip
    """Say which module frames stay unresolved and why."""
    if not report.missing_modules or on_warning is None:
        return
    names = ", ".join(sorted(report.missing_modules))
    frames = sum(report.missing_modules.values())
    if options.modules_dir is None:
        on_warning(f"frames of {names} left as they are ({frames} unique): no --modules "
                   "directory")  # fmt: skip
    else:
        on_warning(f"frames of {names} left as they are ({frames} unique): no .ko under "
                   f"{options.modules_dir}")  # fmt: skip
