"""Capturing from a live 7.3 host: print modes, the NUMA filter, ENOMEM, page_owner_filter.

The page_owner descriptor is `KernelLikeFile`, a fake with the kernel's and the VFS's
semantics, fed with the real 7.3 stack_handle dump; its semantics are first checked
against what po_wtest measured on the real 7.3 kernel (fixtures/real73/README.md).
"""

from __future__ import annotations

import errno
import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from pageowner.cli import cli
from pageowner.errors import SpecError
from pageowner.live.capture import capture, copy_records
from pageowner.live.diagnose import FilterRefusedError, NotRootError
from pageowner.live.filtertool import FilterRequest, FilterToolError, run_filter
from pageowner.model import PrintMode
from tests.live_trees import FIXTURES, FakeMachine, KernelLikeFile, real_bytes

REAL73 = FIXTURES / "real73"


def real73(name: str) -> bytes:
    """Return a real 7.3 boot file, decompressed."""
    return real_bytes(f"../real73/7.3-boot.{name}.txt.xz")


@pytest.fixture()
def machine(tmp_path: Path) -> FakeMachine:
    """A 7.3 machine with the real boot run's page_owner and show_stacks_handles."""
    fake = FakeMachine(tmp_path / "host", release="7.3.0-rc7")
    fake.write("page_owner", real73("page_owner"))
    fake.write("page_owner_stacks/show_stacks_handles", real73("show_stacks_handles"))
    return fake


def in_mode(data: bytes, mode: str) -> bytes:
    """Print a stack_handle dump in another mode, by text (the oracle for the fake)."""
    if mode == "stack":
        return re.sub(rb"(?m)^handle: [0-9]+\n", b"", data)
    if mode == "handle":
        return re.sub(rb"(?m)^ [^\n]*\n", b"", data)
    return data


def test_fake_matches_the_measured_kernel() -> None:
    # GIVEN the fake fed with the real stack_handle dump (po_wtest's reads, README)
    fake = KernelLikeFile(real73("page_owner.stack_handle"))
    # THEN a buffer smaller than the first record fails without moving the offset
    for size in (1, 4, 16, 64, 256):
        with pytest.raises(OSError) as caught:
            fake.read(size)
        assert caught.value.errno == errno.ENOMEM and fake.position == 0
    # AND a bigger one returns that record (293 bytes in stack mode) and moves to PFN + 1
    assert len(fake.read(1024)) == 293 and fake.position == 0x1001
    # AND writes: all or nothing, ERANGE at 64, EINVAL over 416 bytes, `nid=0,` accepted
    for command, code in ((b"mode=bogus", errno.EINVAL), (b"nid=7", errno.EINVAL),
                          (b"nid=64", errno.ERANGE), (b"nid=1-0", errno.EINVAL),
                          (b"mode=handle nid=7", errno.EINVAL), (b" " * 417, errno.EINVAL)):
        with pytest.raises(OSError) as caught:
            fake.write(command)
        assert caught.value.errno == code
    assert fake.mode == b"stack" and fake.nids is None
    assert fake.write(b"nid=0,") == 6 and fake.write(b"mode=handle\0garbage") == 19
    assert fake.read(4096).endswith(b"\nhandle: 1048577\n\n")
    with pytest.raises(OSError) as caught:
        KernelLikeFile(b"", writable=False).write(b"mode=handle")
    assert caught.value.errno == errno.EBADF


def test_a_record_longer_than_a_page_is_skipped_once() -> None:
    # GIVEN a dump whose third record is longer than a page (the kernel clamps reads to one)
    data = real73("page_owner")
    records = [block + b"\n\n" for block in data.split(b"\n\n") if block][:50]
    head, pfn_line, *frames = records[2].rstrip(b"\n").split(b"\n")
    records[2] = b"\n".join([head, pfn_line, *frames * 60]) + b"\n\n"
    assert len(records[2]) > 4096
    source = KernelLikeFile(b"".join(records))
    chunks: list[bytes] = []
    # WHEN copied with 1 MiB reads
    stats = copy_records(source, chunks.append)
    # THEN that record alone is lost, counted once; every other record is kept, in order
    assert stats.lost_records == 1 and stats.error is None
    assert b"".join(chunks) == b"".join(records[:2] + records[3:])
    assert source.reads < 60


@pytest.mark.parametrize("mode", ["stack", "handle", "stack_handle"])
def test_capture_writes_the_filter_and_reads_that_mode(
    machine: FakeMachine, tmp_path: Path, mode: str
) -> None:
    data = real73("page_owner.stack_handle")
    source = KernelLikeFile(data)
    out = tmp_path / "d.txt"
    # WHEN captured in a mode
    result = capture(str(out), host=machine.host, mode=PrintMode(mode),
                     filter_opener=lambda path: source)
    # THEN the dump is what a descriptor with that filter reads, and the sidecar says so
    assert out.read_bytes() == in_mode(data, mode)
    meta = json.loads((tmp_path / "d.txt.meta.json").read_text())
    assert (meta["print_mode"], meta["nid"], meta["complete"]) == (mode, None, True)
    # AND handle mode saves show_stacks_handles beside the dump and ties it in the sidecar
    if mode == "handle":
        assert meta["stacks_file"] == "d.show_stacks_handles.txt"
        assert (tmp_path / meta["stacks_file"]).read_bytes() == real73("show_stacks_handles")
        assert [f.source for f in result.files] == ["page_owner",
                                                     "page_owner_stacks/show_stacks_handles"]
    else:
        assert "stacks_file" not in meta


def test_handle_capture_joins_without_stacks_from(machine: FakeMachine, tmp_path: Path,
                                                  runner: CliRunner) -> None:
    # GIVEN a handle-mode capture (its sidecar names the show_stacks_handles copy)
    source = KernelLikeFile(real73("page_owner.stack_handle"))
    out = tmp_path / "d.txt"
    capture(str(out), host=machine.host, mode=PrintMode.HANDLE, filter_opener=lambda p: source)
    # WHEN top reads it with no --stacks-from, and with the same file given explicitly
    plain = runner.invoke(cli, ["top", str(out), "--format", "csv"])
    given = runner.invoke(cli, ["top", str(out), "--format", "csv", "--stacks-from",
                                str(tmp_path / "d.show_stacks_handles.txt")])
    # THEN both join the same way: frames where listed, `handle N` where not
    assert plain.exit_code == given.exit_code == 0
    assert plain.stdout == given.stdout and "pcpu_create_chunk" in plain.stdout
    assert "not in" in plain.stderr and "have no frames" not in plain.stderr


def test_nid_filter_keeps_that_node(machine: FakeMachine, tmp_path: Path) -> None:
    data = real73("page_owner.stack_handle")
    source = KernelLikeFile(data)
    out = tmp_path / "d.txt"
    capture(str(out), host=machine.host, mode=PrintMode.HANDLE, nid="1",
            filter_opener=lambda path: source)
    text = out.read_bytes()
    # THEN only node 1's records (PFNs >= 0x20000 on that machine), in handle mode
    pfns = [int(p, 16) for p in re.findall(rb"\nPFN (0x[0-9a-f]+) ", text)]
    assert pfns and min(pfns) >= 0x20000
    assert len(pfns) == data.count(b"|node=1|") and b"\n start_kernel" not in text
    assert source.mode == b"handle" and source.nids == {1}


def hinted(machine: FakeMachine, tmp_path: Path, source: KernelLikeFile, **kwargs: object
           ) -> FilterRefusedError:  # fmt: skip
    """Capture with a filter and return the error it raises."""
    with pytest.raises(FilterRefusedError) as caught:
        capture(str(tmp_path / "d.txt"), host=machine.host, filter_opener=lambda path: source,
                **kwargs)  # type: ignore[arg-type]
    assert not (tmp_path / "d.txt").exists()
    return caught.value


def test_filter_errors_name_the_cause(machine: FakeMachine, tmp_path: Path) -> None:
    path = f"{machine.debugfs}/page_owner"
    data = real73("page_owner.stack_handle")
    error = hinted(machine, tmp_path, KernelLikeFile(data), nid="7")
    assert str(error) == (
        f"writing 'nid=7' to {path} failed: Invalid argument (the kernel rejected the whole "
        "filter)\nhint: --nid must list nodes that have memory (see /sys/devices/system/node/"
        "has_memory), as 0, 0,2 or 0-3; --mode is stack, handle or stack_handle")
    error = hinted(machine, tmp_path, KernelLikeFile(data), nid="64")
    assert "a node number is not below MAX_NUMNODES" in str(error).split("\n")[0]
    error = hinted(machine, tmp_path, KernelLikeFile(data, writable=False), mode=PrintMode.STACK)
    assert "the descriptor is not open for writing" in str(error)
    with pytest.raises(SpecError, match="takes at most 416"):
        capture(str(tmp_path / "d.txt"), host=machine.host, nid=",".join(["0"] * 300))


def test_a_kernel_before_7_3_refuses_the_filter(tmp_path: Path) -> None:
    old = FakeMachine(tmp_path / "old", release="6.12.117")
    old.write("page_owner", real_bytes("6.1.192-boot.page_owner.txt.xz"))
    error = hinted(old, tmp_path, KernelLikeFile(b"", accepts_writes=False),
                   mode=PrintMode.HANDLE)
    assert str(error) == (
        f"writing 'mode=handle' to {old.debugfs}/page_owner failed: Invalid argument: kernel "
        "6.12.117 takes no page_owner filters (7.3 added them)\nhint: capture without --mode "
        "and --nid: older kernels print every node in stack mode")


def test_no_permission_is_diagnosed(machine: FakeMachine, tmp_path: Path) -> None:
    machine.euid = 1000

    def denied(path: str) -> KernelLikeFile:
        raise PermissionError(errno.EACCES, "Permission denied", path)

    with pytest.raises(NotRootError, match="not root"):
        capture(str(tmp_path / "d.txt"), host=machine.host, mode=PrintMode.HANDLE,
                filter_opener=denied)


def test_page_owner_filter_output_and_messages(machine: FakeMachine) -> None:
    # GIVEN page_owner_filter's documented use: -m handle -n 0
    data = real73("page_owner.stack_handle")
    source = KernelLikeFile(data)
    chunks: list[bytes] = []
    run_filter(FilterRequest("handle", "0"), str(machine.debugfs / "page_owner"),
               chunks.append, opener=lambda path: source)
    # THEN it writes node 0's records in handle mode, as the real nid0 handle dump has them
    # (the two reads were a few ms apart: their first 51 records are the same pages)
    text = b"".join(chunks)
    real = real73("page_owner.handle.nid0")
    assert text.split(b"\n\n")[:51] == real.split(b"\n\n")[:51]
    assert max(int(p, 16) for p in re.findall(rb"\nPFN (0x[0-9a-f]+) ", text)) < 0x20000
    # AND the kernel's refusal is the tool's message, word for word (console, `pof -n 7`)
    with pytest.raises(FilterToolError) as caught:
        run_filter(FilterRequest(None, "7"), str(machine.debugfs / "page_owner"),
                   chunks.append, opener=lambda path: KernelLikeFile(data))
    assert str(caught.value) == (
        "Error: Kernel rejected the filter command.\nPossible causes:\n"
        "  - Kernel does not support per-fd filtering\n  - NUMA node has no memory\n"
        "  - Unknown reason")


def test_page_owner_filter_cli_messages(runner: CliRunner, tmp_path: Path) -> None:
    # GIVEN the error paths the real tool was run through (fixtures' console)
    console = (REAL73 / "7.3-boot.console.txt").read_text()
    cases = {("-m", "bogus"): "pof -m bogus rc=1", (): "pof (no args) rc=1",
             ("-n", "1-0"): "pof -n 1-0 rc=1"}
    for args, marker in cases.items():
        before = console[: console.index(marker)]
        expected = before[before.rindex("rc=1\n") + 5:] if args != ("-m", "bogus") else \
            "Error: Invalid mode 'bogus'\nValid modes: stack, handle, stack_handle\n"
        # WHEN pageowner filter gets the same arguments
        result = runner.invoke(cli, ["filter", *args, "--debugfs", str(tmp_path)])
        # THEN it prints the same message and exits 1
        assert result.exit_code == 1 and result.stderr == expected and result.stdout == ""
    missing = runner.invoke(cli, ["filter", "-m", "handle", "--debugfs", str(tmp_path)])
    assert missing.exit_code == 1 and missing.stderr == (
        f"Error: {tmp_path}/page_owner does not exist\nMake sure page_owner is enabled in "
        "kernel\n")
    helped = runner.invoke(cli, ["filter", "-h"])
    assert helped.exit_code == 0 and helped.stderr.startswith("Usage: page_owner_filter")


def test_watch_reads_the_dump_in_handle_mode_on_7_3(machine: FakeMachine, tmp_path: Path
                                                    ) -> None:  # fmt: skip
    # GIVEN a 7.3 machine whose page_owner descriptors have the kernel's semantics
    from collections import Counter

    from pageowner.live.clock import ManualClock
    from pageowner.live.store import Store
    from pageowner.live.watch import SnapshotKind, group_dump_by_stack, watch

    data = real73("page_owner.stack_handle")
    opened: list[KernelLikeFile] = []

    def filtered(path: str) -> KernelLikeFile:
        opened.append(KernelLikeFile(data))
        return opened[-1]

    # WHEN two snapshots of the whole dump are taken
    result = watch(str(tmp_path / "s.db"), host=machine.host, interval=1, count=2,
                   source=SnapshotKind.PAGE_OWNER, clock=ManualClock(1.8e9),
                   filter_opener=filtered)
    # THEN the first reads handle mode and learns the frames once from stack_handle mode;
    # the second reads handle mode only
    assert [f.mode for f in opened] == [b"handle", b"stack_handle", b"handle"]
    handle_bytes, both_bytes = len(in_mode(data, "handle")), len(data)
    assert [s.bytes_read for s in result.snapshots] == [handle_bytes + both_bytes, handle_bytes]
    # AND its counts are the stack-mode dump's, per stack
    expected = Counter({tuple(s.decode().split("\n")): p for s, p in
                        group_dump_by_stack([in_mode(data, "stack")]).items()})
    with Store.open(str(tmp_path / "s.db")) as store:
        stacks = store.stacks()
        last = store.snapshots()[-1].id
        got = Counter({stacks[st].frames: p for sn, st, p in store.samples() if sn == last})
    assert got == expected


def test_cli_capture_filter_options(machine: FakeMachine, tmp_path: Path,
                                    runner: CliRunner) -> None:
    page_owner = machine.debugfs / "page_owner"
    before = page_owner.read_bytes()
    common = ["--debugfs", str(machine.debugfs), "--proc", str(machine.root / "proc")]
    # GIVEN usage mistakes THEN usage errors (exit 2), nothing opened
    bad_mode = runner.invoke(cli, ["capture", "--mode", "bogus", "-o", str(tmp_path / "a")])
    to_stdout = runner.invoke(cli, ["capture", "--mode", "handle", *common])
    too_long = runner.invoke(cli, ["capture", "--nid", ",".join(["1"] * 300), "-o",
                                   str(tmp_path / "b"), *common])
    assert bad_mode.exit_code == to_stdout.exit_code == too_long.exit_code == 2
    assert "show_stacks_handles is saved beside it" in to_stdout.stderr
    # AND a tree whose page_owner is a plain file with data is never written to
    result = runner.invoke(cli, ["capture", "--mode", "handle", "-o", str(tmp_path / "c.txt"),
                                 *common])
    assert result.exit_code == 1 and "not debugfs" in result.stderr
    assert result.stderr.count("\n") == 1
    filtered = runner.invoke(cli, ["filter", "-m", "handle", "--debugfs", str(machine.debugfs)])
    assert filtered.exit_code == 1 and "not debugfs" in filtered.stderr
    assert page_owner.read_bytes() == before and not (tmp_path / "c.txt").exists()
