"""The page_owner_sort engine: select, cull (group) and sort dump blocks, byte for byte.

This reproduces `tools/mm/page_owner_sort` of Linux 6.12 (and, for the options 6.7 removed,
`tools/vm/page_owner_sort` of 6.1) from their observable behaviour, written down in
../shared/reference/kernel.md section C and checked against the tools' outputs in fixtures/.
It works on the raw bytes of each block, extracting fields with the same regular expressions
the C tool uses, so that odd inputs group and sort as they do there.

Where the C tool has a bug we do what its documentation promises; docs/compat.md lists each
deviation. Unlike the C tool, the engine streams: memory grows with the number of groups,
not with the number of records.

The parts, each in its own module: options and keys (`options`), the fields of a block
(`fields`), grouping (`group`), the fast scanner (`scan`), ordering (`order`) and rendering
(`render`). This module runs them over a file, on two cores when it is big enough.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from pageowner.dump.fileio import atomic_output, check_output_path, open_input
from pageowner.dump.parallel import (
    MIN_PARALLEL_BYTES,
    ForkedCall,
    WorkerError,
    find_block_boundary,
    last_line_starting_with,
    parallel_available,
)
from pageowner.dump.repair import Tolerance, tolerate
from pageowner.errors import InputError, ParseError
from pageowner.sort.group import WarningHandler
from pageowner.sort.options import SortOptions
from pageowner.sort.render import render_groups
from pageowner.sort.scan import ProgressHandler, SortEngine

__all__ = ["InputProgress", "count_dump_file", "sort_dump"]


def count_dump_file(
    fd: int,
    size: int,
    options: SortOptions,
    *,
    path: str = "<dump>",
    strict: bool = False,
    on_warning: WarningHandler | None = None,
    on_progress: ProgressHandler | None = None,
    jobs: int = 2,
) -> SortEngine:
    """Count a regular file, on two cores when it is big enough to pay for the fork."""
    engine = SortEngine(options, path=path, strict=strict, on_warning=on_warning)
    split = None
    # Without the ts digits cut out nearly every record is a group of its own; shipping
    # them between processes costs more than the second core saves.
    if jobs > 1 and options.strip_ts and size >= MIN_PARALLEL_BYTES and parallel_available():
        split = find_block_boundary(fd, size // 2, size)
    if split is None or split >= size:
        engine.feed_stream(lambda n: os.read(fd, n), on_progress=on_progress)
        return engine
    # The child counts [split, size) and inherits the last PFN line before it, as the
    # C tool's ext_buf would have it there.
    inherited = last_line_starting_with(fd, b"PFN", split)

    def work() -> bytes:
        later = SortEngine(options, path=path, strict=strict)
        later.pfn_line = inherited
        offset = [split]

        def read_later(n: int) -> bytes:
            chunk = os.pread(fd, n, offset[0])
            offset[0] += len(chunk)
            return chunk

        try:
            later.feed_stream(read_later)
        except ParseError as exc:
            # Its line number counts from the split; the parent knows where that is.
            return _PARSE_ERROR + b"%d\n%s\n%s" % (
                exc.lineno, exc.reason.encode(), exc.line.encode("utf-8", "surrogateescape"),
            )  # fmt: skip
        return later.serialize()

    child = ForkedCall.start(work)
    try:
        scale = size / split
        progress = (
            None if on_progress is None else (lambda done: on_progress(int(done * scale)))
        )
        engine.feed_stream(lambda n: os.read(fd, n), limit=split, on_progress=progress)
        payload = child.result()
    except WorkerError as exc:
        if exc.died:
            raise WorkerError(f"{path}: {exc}", died=True) from None
        raise
    except BaseException:
        child.cancel()
        raise
    if payload.startswith(_PARSE_ERROR):
        lineno, reason, line = payload[len(_PARSE_ERROR) :].split(b"\n", 2)
        raise ParseError(path, int(lineno) + engine.next_lineno - 1, _decode_line(line),
                         reason.decode())  # fmt: skip
    engine.absorb(payload, line_offset=engine.next_lineno - 1)
    return engine


# How a worker reports a --strict parse error instead of its counts (which start with a digit).
_PARSE_ERROR = b"parse error\n"


def _decode_line(raw: bytes) -> str:
    """Decode a line for an error message, every byte kept (UTF-8, surrogateescape)."""
    return raw.decode("utf-8", "surrogateescape")


InputProgress = Callable[[int, "int | None"], None]


def sort_dump(
    input_path: str,
    output_path: str,
    options: SortOptions,
    *,
    strict: bool = False,
    jobs: int = 2,
    on_warning: WarningHandler | None = None,
    on_progress: InputProgress | None = None,
) -> SortEngine:
    """Read a dump, group and sort it, and write the page_owner_sort report atomically.

    `-` reads standard input or writes standard output. Returns the engine, whose
    counters say how many records were read, selected and skipped.
    """
    check_output_path(output_path, (input_path,))
    with open_input(input_path) as opened:
        # Damaged or non-dump text is rewritten into a dump first (docs/compat.md 14-15).
        source = tolerate(opened, Tolerance(strict, on_warning))
        size = source.size

        def progress(done: int) -> None:
            if on_progress is not None:
                on_progress(done, size)

        if source.fd is not None and size is not None:
            engine = count_dump_file(
                source.fd, size, options, path=source.name, strict=strict,
                on_warning=on_warning, on_progress=progress, jobs=jobs,
            )  # fmt: skip
        else:
            engine = SortEngine(options, path=source.name, strict=strict, on_warning=on_warning)
            engine.feed_stream(source.read, on_progress=progress)
    if engine.records == 0:
        # page_owner_sort writes an empty report here (exit 0): docs/compat.md 15.
        first = (f"{source.name}:{engine.warnings[0][0]}: {engine.warnings[0][1]}"
                 if engine.warnings else f"{source.name}: no page_owner record in it")  # fmt: skip
        raise InputError(f"{first} (and no other block could be read)")
    groups = engine.sorted_groups()
    with atomic_output(output_path, inputs=(input_path,)) as out:
        for chunk in render_groups(groups, options):
            out.write(chunk)
    return engine
