"""The ` (file:line ...)` group symbolize appends: frames keep parsing and printing back."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from pageowner.dump.dumpfile import format_frame, parse_frame
from pageowner.model import Frame

names = st.from_regex(r"[a-z_][a-z0-9_.]{0,30}", fullmatch=True)
paths = st.from_regex(r"[a-z][a-z0-9_/.-]{0,40}\.[ch]", fullmatch=True)
locations = st.builds(lambda path, line: f"{path}:{line}", paths, st.integers(1, 99999))


@given(
    symbol=names,
    offset=st.integers(0, 1 << 20),
    size=st.integers(1, 1 << 20),
    module=st.none() | st.from_regex(r"[a-z][a-z0-9_]{0,15}", fullmatch=True),
    address=st.none() | st.integers(0, (1 << 64) - 1),
    chain=st.lists(locations, min_size=1, max_size=6),
)
def test_symbolized_frames_round_trip(symbol: str, offset: int, size: int, module: str | None,
                                      address: int | None, chain: list[str]) -> None:
    # GIVEN a frame with a source group, in either era's shape
    frame = Frame(symbol, offset, size, module, address, source=" ".join(chain))
    # WHEN it is printed and read back
    line = format_frame(frame)
    # THEN it is the same frame, and the group closes the line
    assert parse_frame(line) == frame
    assert line.endswith(f" ({' '.join(chain)})")


def test_frame_without_source_prints_as_the_kernel_does() -> None:
    assert format_frame(Frame("post_alloc_hook", 0x177, 0x1A0)) == " post_alloc_hook+0x177/0x1a0"
    assert parse_frame(" post_alloc_hook+0x177/0x1a0").source is None


def test_parenthesised_text_without_a_location_stays_raw() -> None:
    # arm64 stack dumps add "(P)" after a frame: that is not a source group
    frame = parse_frame(" el0_svc+0x34/0x50 (P)")
    assert frame.symbol is None and frame.raw == "el0_svc+0x34/0x50 (P)"
    assert format_frame(frame) == " el0_svc+0x34/0x50 (P)"
