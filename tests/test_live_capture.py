"""`pageowner capture`: byte-exact copies from a fake debugfs tree, the sidecar, partial reads."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from pageowner.cli import cli
from pageowner.dump.dumpfile import iter_records
from pageowner.errors import SpecError
from pageowner.live.capture import capture, copy_records, stacks_output_path
from pageowner.live.clock import ManualClock
from pageowner.live.diagnose import PartialReadError
from tests.live_trees import (
    FakeMachine,
    KernelLikeFile,
    real_bytes,
    real_stacks,
    show_handles_text,
    show_stacks_handles_text,
)

DUMP = "6.12.117-work.page_owner.txt.xz"
STACKS = "6.12.117-work.show_stacks.txt.xz"


@pytest.fixture
def machine(tmp_path: Path) -> FakeMachine:
    """A 6.19-like machine: the real 6.12 dump and show_stacks, plus handle files."""
    fake = FakeMachine(tmp_path / "host", release="6.19.2-test")
    fake.write("page_owner", real_bytes(DUMP))
    fake.write("page_owner_stacks/show_stacks", real_bytes(STACKS))
    stacks = {1000 + 8 * i: stack for i, stack in enumerate(real_stacks()[:50])}
    fake.write("page_owner_stacks/show_handles",
               show_handles_text({h: 3 + i for i, h in enumerate(stacks)}))
    fake.write("page_owner_stacks/show_stacks_handles", show_stacks_handles_text(stacks))
    # 6.9-6.19 print count_threshold with "%llu": no newline (7.3 adds one)
    fake.write("page_owner_stacks/count_threshold", b"0")
    return fake


def test_capture_copies_page_owner_byte_for_byte(machine: FakeMachine, tmp_path: Path) -> None:
    # GIVEN a debugfs tree holding a real 18 MB dump
    out = tmp_path / "d.txt"
    # WHEN it is captured
    result = capture(str(out), host=machine.host, clock=ManualClock(1_800_000_000.0))
    # THEN the file is the dump, byte for byte, and the records are counted like the reader does
    assert out.read_bytes() == real_bytes(DUMP)
    records = sum(1 for _ in iter_records(real_bytes(DUMP).splitlines(keepends=True)))
    assert result.records == records == 27574
    assert result.bytes_read == len(real_bytes(DUMP))


def test_capture_sidecar_records_machine_and_files(machine: FakeMachine, tmp_path: Path) -> None:
    # GIVEN a machine with a known release, command line, uptime and clock
    out = tmp_path / "d.txt"
    (machine.root / "proc/uptime").write_text("86400.25 170000.50\n")
    # WHEN it is captured with its stacks files
    capture(str(out), host=machine.host, stacks=True, clock=ManualClock(1_800_000_000.0))
    # THEN the sidecar says exactly what was taken, from where, when
    meta = json.loads((tmp_path / "d.txt.meta.json").read_text())
    sizes = {name: len(data) for name, data in (
        ("d.txt", real_bytes(DUMP)),
        ("d.show_stacks.txt", real_bytes(STACKS)),
    )}  # fmt: skip
    assert meta == {
        "pageowner_capture": 1,
        "kernel_release": "6.19.2-test",
        "kernel_version": "6.19",
        "cmdline": "console=ttyS0 page_owner=on",
        "hostname": "testbox",
        "captured_at": "2027-01-15T08:00:00Z",
        "captured_at_unix": 1800000000.0,
        "uptime": 86400.25,
        "seconds": 0.0,
        "page_size": 4096,
        "debugfs": str(machine.debugfs),
        "records": 27574,
        "bytes": sizes["d.txt"],
        # The era the text matches, not only its line shapes.
        "format": "as kernels 6.7 to 7.3 print it (header 6.7, pfn 6.5, frames 4.15)",
        "flags_layout": None,
        "complete": True,
        "lost_records": 0,
        "error": None,
        "files": [
            {"source": "page_owner", "file": "d.txt", "bytes": sizes["d.txt"], "records": 27574},
            {"source": "page_owner_stacks/show_stacks", "file": "d.show_stacks.txt",
             "bytes": sizes["d.show_stacks.txt"], "records": 535},
            {"source": "page_owner_stacks/show_handles", "file": "d.show_handles.txt",
             "bytes": (machine.debugfs / "page_owner_stacks/show_handles").stat().st_size,
             "records": 50},
            {"source": "page_owner_stacks/show_stacks_handles",
             "file": "d.show_stacks_handles.txt",
             "bytes": (machine.debugfs / "page_owner_stacks/show_stacks_handles").stat().st_size,
             "records": 50},
            {"source": "page_owner_stacks/count_threshold", "file": "d.count_threshold.txt",
             "bytes": 1, "records": 0},
        ],
        "count_threshold": 0,
    }


def test_capture_stacks_files_are_copied_beside_the_dump(
    machine: FakeMachine, tmp_path: Path
) -> None:
    # GIVEN every page_owner_stacks file of a 6.19 kernel
    out = tmp_path / "d.txt"
    # WHEN captured with --page-owner-stacks
    capture(str(out), host=machine.host, stacks=True)
    # THEN each is copied byte for byte under a name saying what it is
    for name in ("show_stacks", "show_handles", "show_stacks_handles", "count_threshold"):
        source = machine.debugfs / "page_owner_stacks" / name
        assert (tmp_path / f"d.{name}.txt").read_bytes() == source.read_bytes()


def test_capture_reads_a_7_3_threshold_with_its_newline(tmp_path: Path) -> None:
    # GIVEN a 7.3 machine whose count_threshold was set to 64 ("%llu\n" since 7.3)
    fake = FakeMachine(tmp_path / "host", release="7.3.0-rc7")
    fake.write("page_owner", real_bytes("6.1.192-boot.page_owner.txt.xz"))
    fake.write("page_owner_stacks/show_stacks", real_bytes(STACKS))
    fake.write("page_owner_stacks/count_threshold", b"64\n")
    # WHEN captured with its stacks files
    capture(str(tmp_path / "d.txt"), host=fake.host, stacks=True)
    # THEN the copy keeps the bytes and the sidecar says which stacks show_stacks left out
    assert (tmp_path / "d.count_threshold.txt").read_bytes() == b"64\n"
    assert json.loads((tmp_path / "d.txt.meta.json").read_text())["count_threshold"] == 64


def test_capture_stacks_on_an_old_kernel_notes_the_missing_directory(tmp_path: Path) -> None:
    # GIVEN a 6.1 machine: page_owner but no page_owner_stacks
    fake = FakeMachine(tmp_path / "host", release="6.1.192")
    fake.write("page_owner", real_bytes("6.1.192-boot.page_owner.txt.xz"))
    # WHEN captured with --page-owner-stacks
    result = capture(str(tmp_path / "d.txt"), host=fake.host, stacks=True)
    # THEN only the dump is taken, and the result says why
    assert [f.source for f in result.files] == ["page_owner"]
    assert result.notes == (
        f"{fake.debugfs}/page_owner_stacks does not exist (kernels before 6.9 have none); "
        "only page_owner was captured",
    )


def test_stacks_output_path_keeps_the_extension() -> None:
    assert stacks_output_path("run/d.txt", "show_handles") == "run/d.show_handles.txt"
    assert stacks_output_path("run/dump", "show_stacks") == "run/dump.show_stacks"


def test_stacks_need_a_file_output(machine: FakeMachine) -> None:
    with pytest.raises(SpecError, match="--page-owner-stacks needs -o FILE"):
        capture("-", host=machine.host, stacks=True)


def test_kernel_like_reads_with_a_big_buffer_get_every_record() -> None:
    # GIVEN a reader that, like the kernel, returns one record per read()
    data = real_bytes("6.1.192-boot.page_owner.txt.xz")
    source = KernelLikeFile(data)
    chunks: list[bytes] = []
    # WHEN copied with the default 1 MiB reads
    stats = copy_records(source, chunks.append)
    # THEN every record arrives, one per read, and none is lost
    assert b"".join(chunks) == data
    assert stats.records == len(source.records) == 3975
    assert stats.lost_records == 0
    assert source.reads == 3975 + 1


def runs_of_long_records(records: list[bytes], limit: int) -> int:
    """Count the runs of consecutive records longer than `limit` (each reads as one loss)."""
    runs = 0
    previous_long = False
    for record in records:
        long = len(record) > limit
        runs += long and not previous_long
        previous_long = long
    return runs


@pytest.mark.parametrize(("release", "size"), [("4.19.0", 16 << 10), ("5.10.223", 1 << 20)])
def test_kernels_before_the_page_clamp_are_read_in_small_reads(
    tmp_path: Path, release: str, size: int
) -> None:
    # GIVEN a kernel that kmalloc()s the whole read size per record (before 5.0) or not
    fake = FakeMachine(tmp_path / "host", release=release)
    data = real_bytes("5.10.223-boot.page_owner.txt.xz")
    fake.write("page_owner", data)
    sizes: list[int] = []

    class Recording(KernelLikeFile):
        def read(self, size: int) -> bytes:
            sizes.append(size)
            return super().read(size)

    # WHEN it is captured THEN every read asks for what that kernel can give cheaply
    result = capture(str(tmp_path / "d.txt"), host=fake.host,
                     opener=lambda path: Recording(data))
    assert set(sizes) == {size} and result.records == 3344
    assert (tmp_path / "d.txt").read_bytes() == data


def test_small_buffer_loses_the_records_that_do_not_fit() -> None:
    # GIVEN the kernel's and the VFS's behaviour: ENOMEM for a record longer than the
    # buffer, and the offset left on that record's scan start
    data = real_bytes("6.1.192-boot.page_owner.txt.xz")
    source = KernelLikeFile(data)
    chunks: list[bytes] = []
    # WHEN read with 700-byte reads (like `dd bs=700`)
    stats = copy_records(source, chunks.append, read_size=700)
    # THEN exactly the records longer than 700 bytes are skipped (a run of them with no
    # readable record between counts as one loss), and the others are kept in order
    short = [r for r in source.records if len(r) <= 700]
    assert stats.lost_records == runs_of_long_records(source.records, 700) > 0
    assert b"".join(chunks) == b"".join(short)


def test_lost_records_fail_the_capture_but_keep_the_rest(
    machine: FakeMachine, tmp_path: Path
) -> None:
    # GIVEN a kernel-like page_owner read with a buffer too small for some records
    data = real_bytes("6.1.192-boot.page_owner.txt.xz")
    source = KernelLikeFile(data)
    out = tmp_path / "d.txt"
    # WHEN captured
    with pytest.raises(PartialReadError) as caught:
        capture(str(out), host=machine.host, opener=lambda path: source, read_size=700)
    # THEN the error counts the lost records, and the file and sidecar hold the rest
    short = [r for r in source.records if len(r) <= 700]
    lost = runs_of_long_records(source.records, 700)
    assert str(caught.value) == (
        f"{lost} record(s) of {machine.debugfs}/page_owner could not be read (ENOMEM: longer "
        f"than the read buffer or one page); the other {len(short)} records are in {out}\n"
        "hint: a record longer than a page never fits a read; the capture stepped past each "
        "one, so only those are missing"
    )
    assert out.read_bytes() == b"".join(short)
    meta = json.loads((tmp_path / "d.txt.meta.json").read_text())
    assert (meta["complete"], meta["lost_records"], meta["records"]) == (False, lost, len(short))


def test_read_error_partway_keeps_the_part_read(machine: FakeMachine, tmp_path: Path) -> None:
    # GIVEN a kernel-like page_owner that fails with EIO on its 101st read
    data = real_bytes("6.1.192-boot.page_owner.txt.xz")
    source = KernelLikeFile(data, fail_after=100, error=errno.EIO)
    out = tmp_path / "d.txt"
    # WHEN captured
    with pytest.raises(PartialReadError) as caught:
        capture(str(out), host=machine.host, opener=lambda path: source)
    # THEN the first 100 records are kept, the sidecar says incomplete, the error says so
    kept = b"".join(source.records[:100])
    assert out.read_bytes() == kept
    assert str(caught.value) == (
        f"read error on {machine.debugfs}/page_owner after {len(kept)} bytes (100 records): "
        f"Input/output error; the part read is kept in {out}\n"
        "hint: the dump ends early but is usable (pageowner sort reads it); run the capture "
        "again for a whole one"
    )
    assert caught.value.exit_code == 1
    meta = json.loads((tmp_path / "d.txt.meta.json").read_text())
    assert (meta["complete"], meta["error"], meta["records"]) == (False, "Input/output error", 100)
    assert source.closed


def test_cli_capture_to_a_file_and_to_stdout(machine: FakeMachine, tmp_path: Path) -> None:
    # GIVEN a debugfs tree with the real 6.1 boot dump
    data = real_bytes("6.1.192-boot.page_owner.txt.xz")
    machine.write("page_owner", data)
    runner = CliRunner()
    # WHEN captured to a file and to stdout
    to_file = runner.invoke(cli, ["capture", "--debugfs", str(machine.debugfs),
                                  "-o", str(tmp_path / "d.txt")])
    to_stdout = runner.invoke(cli, ["capture", "--debugfs", str(machine.debugfs)])
    # THEN both hold the dump exactly; only the file gets a sidecar; stderr tells the count
    assert to_file.exit_code == 0, to_file.output
    assert (tmp_path / "d.txt").read_bytes() == data
    assert (tmp_path / "d.txt.meta.json").exists()
    size = f"{len(data) / 1024 / 1024:.1f} MiB"
    assert to_file.stderr.startswith(f"pageowner: captured 3,975 records ({size})")
    assert to_stdout.exit_code == 0
    assert to_stdout.stdout_bytes == data


def test_cli_sidecar_describes_the_machine_named_by_proc(
    machine: FakeMachine, tmp_path: Path
) -> None:
    # GIVEN a copied machine's trees (release 6.19.2-test), not this host's
    machine.write("page_owner", real_bytes("6.1.192-boot.page_owner.txt.xz"))
    # WHEN captured with --proc pointing at its procfs
    result = CliRunner().invoke(cli, ["capture", "--debugfs", str(machine.debugfs), "--proc",
                                      str(machine.root / "proc"), "-o", str(tmp_path / "d.txt")])
    # THEN the sidecar names that machine's kernel and command line
    assert result.exit_code == 0, result.output
    meta = json.loads((tmp_path / "d.txt.meta.json").read_text())
    assert (meta["kernel_release"], meta["cmdline"]) == (
        "6.19.2-test", "console=ttyS0 page_owner=on")


def test_cli_stacks_to_stdout_is_a_usage_error(machine: FakeMachine) -> None:
    result = CliRunner().invoke(cli, ["capture", "--page-owner-stacks", "--debugfs", str(machine.debugfs)])
    assert result.exit_code == 2
    assert "--page-owner-stacks needs -o FILE" in result.stderr
