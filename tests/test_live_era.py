"""detect_kernel: the era of a dump from its capture sidecar, or from its text."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from pageowner.dump.era import (
    Era,
    detect_kernel,
    sidecar_flags_layout,
    sniff_dump_format,
    version_from_release,
)
from pageowner.dump.handles import sidecar_stacks_file
from pageowner.errors import InputError
from pageowner.kernel.kernels import dump_format_for
from pageowner.live.capture import capture
from pageowner.model import StacksFileKind
from tests.live_trees import REAL, FakeMachine, real_bytes


@pytest.mark.parametrize(
    ("fixture", "version"),
    [
        ("5.10.223-boot.page_owner.txt.xz", "5.10"),
        ("6.1.192-boot.page_owner.txt.xz", "6.1"),
        ("6.12.117-work.page_owner.txt.xz", "6.12"),
    ],
)
def test_text_of_real_dumps_names_their_format(fixture: str, version: str) -> None:
    # GIVEN a real dump without a sidecar (read compressed, as users keep them)
    # WHEN its era is detected
    era = detect_kernel(str(REAL / fixture))
    # THEN the format is the one the registry gives its kernel, and the kernel is a candidate
    assert era.source == "text"
    assert era.version is None
    assert era.fmt == dump_format_for(version)
    assert version in era.candidates


def test_text_of_hand_made_old_eras(tmp_path: Path) -> None:
    cases = Path(__file__).resolve().parents[1] / "fixtures/cases"
    assert detect_kernel(str(cases / "era-3.19.txt")).candidates == ("3.19",)
    assert detect_kernel(str(cases / "era-5.14.txt")).fmt == dump_format_for("5.14")


def test_sidecar_wins_over_the_text(tmp_path: Path) -> None:
    # GIVEN a capture from a machine reporting release 6.9.3 (the text looks 6.7+)
    machine = FakeMachine(tmp_path / "host", release="6.9.3-arch1")
    machine.write("page_owner", real_bytes("6.12.117-work.page_owner.txt.xz")[:200_000])
    capture(str(tmp_path / "d.txt"), host=machine.host)
    # WHEN its era is detected
    era = detect_kernel(str(tmp_path / "d.txt"))
    # THEN the sidecar's release decides
    assert era == Era("sidecar", "6.9", "6.9.3-arch1", dump_format_for("6.9"), ("6.9",))
    assert era.kernel is not None and era.kernel.has_show_stacks
    assert era.describe() == "kernel 6.9.3-arch1 (from sidecar)"


def test_corrupt_sidecar_is_reported(tmp_path: Path) -> None:
    dump = tmp_path / "d.txt"
    dump.write_bytes(b"")
    (tmp_path / "d.txt.meta.json").write_text("{not json")
    with pytest.raises(InputError, match=r"d.txt.meta.json: not a pageowner capture sidecar"):
        detect_kernel(str(dump))


@pytest.mark.parametrize(
    ("text", "era_error", "layout", "stacks"),
    [
        ("{not json", "(no kernel_release)", "(not JSON)", None),
        ("[1, 2]", "(no kernel_release)", None, None),
        (json.dumps({"flags_layout": "x86_64", "stacks_file": "s.txt"}),
         "(no kernel_release)", "x86_64", "s.txt"),
    ],
)  # fmt: skip
def test_every_sidecar_key_is_read_by_one_reader(
    tmp_path: Path, text: str, era_error: str, layout: str | None, stacks: str | None
) -> None:
    # GIVEN a dump whose sidecar is broken, of the wrong shape, or holds only some keys
    dump = tmp_path / "d.txt"
    dump.write_bytes(b"")
    (tmp_path / "d.txt.meta.json").write_text(text)
    # THEN era detection names what is missing, the flags layout raises only on bad JSON,
    # and the stacks file is quietly absent unless named
    with pytest.raises(InputError, match=r"d.txt.meta.json: not a pageowner capture sidecar "
                       + re.escape(era_error)):  # fmt: skip
        detect_kernel(str(dump))
    if layout is not None and layout.startswith("("):
        with pytest.raises(InputError, match=re.escape(layout)):
            sidecar_flags_layout(str(dump))
    else:
        assert sidecar_flags_layout(str(dump)) == layout
    expected = str(tmp_path / stacks) if stacks else None
    assert sidecar_stacks_file(str(dump)) == expected


def test_sidecar_with_a_bad_release_is_reported(tmp_path: Path) -> None:
    dump = tmp_path / "d.txt"
    dump.write_bytes(b"")
    (tmp_path / "d.txt.meta.json").write_text(json.dumps({"kernel_release": "unknown"}))
    with pytest.raises(InputError, match="kernel_release 'unknown' is not a kernel release"):
        detect_kernel(str(dump))


def test_stacks_files_are_recognised(tmp_path: Path) -> None:
    # GIVEN the real show_stacks and a show_handles file
    handles = tmp_path / "h.txt"
    handles.write_bytes(b"handle: 42\nnr_base_pages: 20824\n\n")
    # WHEN detected
    stacks_era = detect_kernel(str(REAL / "6.12.117-work.show_stacks.txt.xz"))
    handles_era = detect_kernel(str(handles))
    # THEN each names its file kind and the kernels that have it
    assert stacks_era.stacks_kind is StacksFileKind.SHOW_STACKS
    assert stacks_era.candidates == ("6.9", "6.12", "6.19", "7.3")
    assert handles_era.candidates == ("6.19", "7.3")
    assert handles_era.describe() == "stacks file, kernels 6.19-7.3 (from the text)"


def test_handle_lines_mean_7_3(plain_fixture: Callable[[str], Path]) -> None:
    # GIVEN the real 7.3 dumps in handle mode and in the default stack mode
    handle = detect_kernel(str(plain_fixture("real73/7.3-boot.page_owner.handle.txt.xz")))
    stack = detect_kernel(str(plain_fixture("real73/7.3-boot.page_owner.txt.xz")))
    # THEN only the handle lines pin the kernel to 7.3; stack mode prints as 6.7 did
    assert handle.candidates == ("7.3",)
    assert stack.candidates == ("6.7", "6.9", "6.12", "6.19", "7.3")


def test_unknown_text(tmp_path: Path) -> None:
    other = tmp_path / "x.txt"
    other.write_text("hello\n\n")
    assert detect_kernel(str(other)) == Era("unknown")


def test_a_cut_first_record_is_not_sniffed() -> None:
    head = real_bytes("6.1.192-boot.page_owner.txt.xz")[:300]
    assert sniff_dump_format(head) is None


@pytest.mark.parametrize(("release", "version"), [
    ("6.12.117", "6.12"), ("5.10.0-32-amd64", "5.10"), ("6.19-rc3", "6.19"), ("abc", None),
])  # fmt: skip
def test_version_from_release(release: str, version: str | None) -> None:
    assert version_from_release(release) == version
