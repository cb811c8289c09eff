"""`--format pprof`: the profile that Go's pprof reads, checked with the real `go tool pprof`."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import pytest

from pageowner.analyze.analysis import InputKind
from pageowner.analyze.pprof import ProfileOptions, read_profile
from pageowner.analyze.top import TopOptions, top_file
from pageowner.kernel.frames import ALLOCATOR_FRAMES
from pageowner.report.pprof import encode_profile
from pageowner.report.pprof_proto import profile_pb2
from tests.analyze_support import ROOT, fixture
from tests.analyze_support import run as run_cli
from tests.tools import go_pprof, run_tool

WORK = fixture("6.12.117-work.page_owner.txt.xz")
BOOT_STACKS = fixture("6.12.117-boot.show_stacks.txt.xz")
WORK_STACKS = fixture("6.12.117-work.show_stacks.txt.xz")
SYMBOLIZED = "fixtures/cases/symbolized-6.12.txt"


def _hide_allocators() -> str:
    """Return an RE2 regex matching the allocator frames `first_caller` skips."""
    names = "|".join(re.escape(pattern).replace(r"\*", ".*") for pattern, _ in ALLOCATOR_FRAMES)
    suffix = r"(?:\.(?:constprop|isra|part|cold|lto_priv|llvm)(?:\.[0-9]+)*)*(?:_noprof)?"
    return rf"^(?:{names}){suffix}(?: \[.*\])?$"


def _profile(tmp: Path, *args: str) -> Path:
    """Write a profile with the CLI and return its path."""
    out = tmp / f"p{len(list(tmp.glob('*.pb.gz')))}.pb.gz"
    result = run_cli([*args, "--format", "pprof", "-o", str(out)])
    assert result.exit_code == 0, result.stderr
    return out


def _decode(path: Path) -> profile_pb2.Profile:
    profile = profile_pb2.Profile()
    profile.ParseFromString(gzip.decompress(path.read_bytes()))
    return profile


def _pprof_top(tmp: Path, *args: str) -> tuple[int, dict[str, int]]:
    """Run `pprof -top` and return its total and the flat value of each function."""
    text = run_tool([*go_pprof(), "-top", "-nodefraction=0", "-nodecount=100000", *args], tmp)
    total_match = re.search(r"of (\d+) total", text)
    assert total_match is not None, text
    flat: dict[str, int] = {}
    rows = text.split("cum%\n", 1)[1]
    for line in rows.splitlines():
        fields = line.split(None, 5)
        flat[fields[5]] = int(fields[0])
    return int(total_match.group(1)), flat


def _pprof_traces_total(tmp: Path, *args: str) -> int:
    """Run `pprof -traces` and add up the value of every trace."""
    text = run_tool([*go_pprof(), "-traces", *args], tmp)
    values = re.findall(r"^ +(\d+)   \S", text, flags=re.MULTILINE)
    assert values, text
    return sum(int(value) for value in values)


def test_the_profile_holds_every_page_with_its_labels() -> None:
    data = read_profile(str(ROOT / WORK), ProfileOptions(jobs=1))
    profile = encode_profile(data)
    strings = profile.string_table
    assert strings[0] == ""
    types = [(strings[t.type], strings[t.unit]) for t in profile.sample_type]
    assert types == [("pages", "count"), ("bytes", "bytes"), ("allocations", "count")]
    top = top_file(str(ROOT / WORK), TopOptions(jobs=1))
    assert sum(s.value[0] for s in profile.sample) == top.total_pages == 34626
    assert sum(s.value[1] for s in profile.sample) == 4096 * top.total_pages
    assert sum(s.value[2] for s in profile.sample) == top.total_times
    keys = {strings[label.key] for sample in profile.sample for label in sample.label}
    # This 6.12 kernel was built without memcg: no record says `Charged to`.
    assert keys == {"pid", "tgid", "comm", "gfp", "order", "migratetype", "zone", "node"}
    # One location per distinct frame, every sample leaf first.
    ids = {location.id for location in profile.location}
    assert len(ids) == len(profile.location)
    assert all(set(sample.location_id) <= ids for sample in profile.sample)
    mappings = {strings[m.filename] for m in profile.mapping}
    assert "vmlinux" in mappings


def test_memcg_is_a_label() -> None:
    profile = encode_profile(read_profile(str(ROOT / fixture("modern-6.12.txt")),
                                          ProfileOptions()))
    strings = profile.string_table
    memcgs = {strings[label.str] for sample in profile.sample for label in sample.label
              if strings[label.key] == "memcg"}
    assert memcgs, "modern-6.12.txt has `Charged to memcg` lines"


def test_two_cores_write_the_same_profile() -> None:
    one = encode_profile(read_profile(str(ROOT / WORK), ProfileOptions(jobs=1)))
    two = encode_profile(read_profile(str(ROOT / WORK), ProfileOptions(jobs=2)))
    assert one.SerializeToString(deterministic=True) == two.SerializeToString(deterministic=True)


def test_symbolized_frames_name_file_and_line(tmp_path: Path) -> None:
    profile = _decode(_profile(tmp_path, "flame", SYMBOLIZED))
    strings = profile.string_table
    lines = {(strings[f.name], strings[f.filename], line.line)
             for location in profile.location for line in location.line
             for f in profile.function if f.id == line.function_id}
    assert any(path.endswith(".c") and number > 0 for _, path, number in lines), lines


def test_pprof_top_and_traces_agree_with_top(tmp_path: Path) -> None:
    path = _profile(tmp_path, "top", WORK)
    top = top_file(str(ROOT / WORK), TopOptions(by="caller", top=10, jobs=1))
    total, flat = _pprof_top(tmp_path, f"-hide={_hide_allocators()}", str(path))
    assert total == top.total_pages
    assert _pprof_traces_total(tmp_path, str(path)) == top.total_pages
    # With the allocator frames hidden, each stack's leaf is its first caller: pprof's flat
    # pages per function are `top --by caller`.
    ours = {entry.label: entry.pages for entry in top.entries
            if not entry.label.startswith("(")}
    theirs = dict(sorted(flat.items(), key=lambda item: -item[1])[:len(ours)])
    assert theirs == ours


def test_tagfocus_comm_is_top_by_name(tmp_path: Path) -> None:
    path = _profile(tmp_path, "flame", WORK)
    top = top_file(str(ROOT / WORK), TopOptions(by="name", top=0, jobs=1))
    dd = next(entry for entry in top.entries if entry.label == "dd")
    text = run_tool([*go_pprof(), "-top", "-nodefraction=0", "-tagfocus=comm=^dd$", str(path)],
                    tmp_path)
    focused = re.search(r"accounting for (\d+), [0-9.]+% of (\d+) total", text)
    assert focused is not None, text
    assert int(focused.group(2)) == top.total_pages
    assert int(focused.group(1)) == dd.pages == 24269


def test_diff_base_is_the_growth(tmp_path: Path) -> None:
    after = tmp_path / "after.pb.gz"
    base = tmp_path / "before.pb.gz"
    result = run_cli(["flame", WORK_STACKS, "--diff", BOOT_STACKS, "--format", "pprof",
                      "-o", str(after), "--base-output", str(base)])
    assert result.exit_code == 0, result.stderr
    before_data = read_profile(str(ROOT / BOOT_STACKS), ProfileOptions())
    after_data = read_profile(str(ROOT / WORK_STACKS), ProfileOptions())
    assert before_data.kind is InputKind.SHOW_STACKS
    # The same samples as reading each input alone (the comment names the path as given).
    assert list(_decode(base).sample) == list(encode_profile(before_data).sample)
    assert list(_decode(after).sample) == list(encode_profile(after_data).sample)
    text = run_tool([*go_pprof(), "-top", "-nodefraction=0", f"-diff_base={base}", str(after)],
                    tmp_path)
    growth = after_data.total_pages - before_data.total_pages
    assert re.search(rf"accounting for {growth},", text), text  # the total is the base's
    # `diff` writes the same two profiles.
    again = tmp_path / "again.pb.gz"
    again_base = tmp_path / "again-base.pb.gz"
    result = run_cli(["diff", BOOT_STACKS, WORK_STACKS, "--format", "pprof", "-o", str(again),
                      "--base-output", str(again_base)])
    assert result.exit_code == 0, result.stderr
    assert again.read_bytes() == after.read_bytes()
    assert again_base.read_bytes() == base.read_bytes()


@pytest.mark.parametrize("args", [
    ["flame", WORK, "--format", "pprof", "--base-output", "x.pb.gz"],
    ["top", WORK, "--format", "json", "--base-output", "x.pb.gz"],
    ["diff", WORK, WORK, "--base-output", "x.pb.gz"],
])
def test_base_output_needs_a_pprof_diff(args: list[str]) -> None:
    result = run_cli(args)
    assert result.exit_code == 2
    assert "--base-output" in result.stderr


@pytest.mark.parametrize(("args", "shown"), [
    (["flame", WORK], "pages"),
    (["flame", WORK, "--weight", "bytes"], "bytes"),
    (["flame", WORK, "--weight", "times"], "allocations"),
    (["top", WORK, "--times"], "allocations"),
])
def test_weight_picks_the_value_pprof_shows_first(tmp_path: Path, args: list[str],
                                                  shown: str) -> None:
    profile = _decode(_profile(tmp_path, *args))
    assert profile.string_table[profile.default_sample_type] == shown
    text = run_tool([*go_pprof(), "-top", "-nodecount=1", str(tmp_path / "p0.pb.gz")], tmp_path)
    assert f"Type: {shown}\n" in text
