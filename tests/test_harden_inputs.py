"""Bad input everywhere a file is read: a result or a one-line error, never a traceback.

Every command that reads a dump (sort, grep, top, diff, stats, frag, flame, symbolize) gets
every input of tests/harden_inputs.py and the odd files (a directory, a dangling symlink, an
unreadable file, a FIFO, a file that disappears while it is read). The promise: exit 0 with
a result (warnings naming file and line for what was skipped), or exit 1 with one line
naming the file (and the line, for a parse error); nothing written on failure.
"""

from __future__ import annotations

import ctypes
import lzma
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from pageowner.cli import cli
from tests.harden_inputs import BASE, COMMANDS, SAME_AS_BASE, STACKS_XZ, bad_dumps, vmlinux_bytes

INPUTS = bad_dumps()


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Write every bad input once, plus the plain dump, a show_stacks file and an ELF."""
    folder = tmp_path_factory.mktemp("bad")
    paths = {}
    for name, data in {**INPUTS, "plain": BASE}.items():
        paths[name] = folder / f"{name}.txt"
        paths[name].write_bytes(data)
    paths["show_stacks"] = folder / "show_stacks.txt"
    paths["show_stacks"].write_bytes(lzma.decompress(STACKS_XZ.read_bytes()))
    paths["vmlinux"] = folder / "vmlinux"
    paths["vmlinux"].write_bytes(vmlinux_bytes())
    return paths


def invoke(command: str, source: str, output: Path, vmlinux: Path) -> Result:
    """Run one command line in-process (stdout and stderr kept apart)."""
    args = [arg.format(i=source, o=output, v=vmlinux) for arg in COMMANDS[command]]
    return CliRunner().invoke(cli, args)


def check_outcome(result: Result, source: str, output: Path) -> None:
    """Exit 0 with a result, or exit 1 with one line naming the file; no traceback."""
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"crash: {result.exception!r}") from result.exception
    assert "Traceback" not in result.stderr
    assert result.exit_code in (0, 1), result.stderr
    for line in result.stderr.splitlines():
        assert line.startswith("pageowner: "), line
        if "warning" in line and ("skipped" in line or "dropped" in line):
            assert re.search(rf"{re.escape(source)}:\d+: ", line), line
    errors = [line for line in result.stderr.splitlines() if "warning" not in line]
    if result.exit_code == 0:
        assert output.exists(), "exit 0 without the output"
    elif not errors:
        # grep(1)'s "nothing selected": exit 1 with no error, and the output written empty.
        assert output.read_bytes() == b"", "exit 1 without an error, yet output"
    else:
        message = result.stderr.strip().splitlines()[-1]
        assert source in message, message
        assert not output.exists(), "a failed command left an output behind"


@pytest.mark.parametrize("name", sorted(INPUTS))
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_bad_dump_gives_a_result_or_a_one_line_error(
    files: dict[str, Path], tmp_path: Path, command: str, name: str
) -> None:
    # GIVEN a generated or mutated dump WHEN a command reads it
    output = tmp_path / "out.txt"
    result = invoke(command, str(files[name]), output, files["vmlinux"])
    # THEN a result (exit 0) or one line naming the file (exit 1), never a traceback
    check_outcome(result, str(files[name]), output)


@pytest.mark.parametrize("name", SAME_AS_BASE)
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_cr_lf_and_mixed_line_ends_read_as_lf(
    files: dict[str, Path], tmp_path: Path, command: str, name: str
) -> None:
    # GIVEN the plain dump and the same dump with CR-LF (or mixed) line ends
    plain, odd = tmp_path / "plain.out", tmp_path / "odd.out"
    invoke(command, str(files["plain"]), plain, files["vmlinux"])
    result = invoke(command, str(files[name]), odd, files["vmlinux"])
    assert result.exit_code == 0, result.stderr
    # THEN every command prints the same (symbolize keeps each line's own line end)
    got = odd.read_bytes()
    if command == "symbolize":
        got = got.replace(b"\r\n", b"\n")
    expected = plain.read_bytes().replace(str(files["plain"]).encode(), str(files[name]).encode())
    assert got == expected


def test_a_lone_cr_is_data_in_every_reader(files: dict[str, Path], tmp_path: Path) -> None:
    # GIVEN a dump whose lines end with a lone CR: one line, as page_owner_sort reads it
    source = str(files["lone-cr-line-ends"])
    out = tmp_path / "out.txt"
    # WHEN sort reads it THEN it is one block, counted as one record (the C tool's view)
    sort = invoke("sort", source, out, files["vmlinux"])
    assert sort.exit_code == 0, sort.stderr
    assert out.read_bytes().startswith(b"1 times, 8 pages, allocated by VMALLOC :\nPage allocated")
    assert out.read_bytes().count(b"\r") == BASE.count(b"\n")
    # AND the typed reader finds its first line (all of it) a malformed header, line 1
    top = invoke("top", source, tmp_path / "top.txt", files["vmlinux"])
    assert top.exit_code == 1
    assert f"{source}:1: the dump ends inside a record (malformed page_owner header)" in top.stderr
    assert top.stderr.strip().endswith("(and no other block could be read)")


def test_a_lone_cr_inside_a_record_is_kept_by_sort_and_named_by_the_reader(
    files: dict[str, Path], tmp_path: Path
) -> None:
    source = str(files["lone-cr-in-lines"])
    out = tmp_path / "out.txt"
    assert invoke("sort", source, out, files["vmlinux"]).exit_code == 0
    assert b"\r get_page_from" in out.read_bytes()
    grep = invoke("grep", source, tmp_path / "grep.txt", files["vmlinux"])
    assert grep.exit_code == 0
    assert re.search(rf"{re.escape(source)}:\d+: stack frame after the trailing lines",
                     grep.stderr)


def test_a_record_with_100000_frames_is_read_whole(files: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    result = invoke("sort", str(files["100000-frames"]), out, files["vmlinux"])
    assert result.exit_code == 0
    assert b" f99999+0x1/0x20\n" in out.read_bytes()
    top = invoke("top-name", str(files["100000-frames"]), tmp_path / "top.json", files["vmlinux"])
    assert top.exit_code == 0


def test_an_order_past_63_is_skipped_with_its_line(files: dict[str, Path], tmp_path: Path) -> None:
    source = str(files["order-64"])
    result = invoke("top", source, tmp_path / "out.txt", files["vmlinux"])
    assert result.exit_code == 0
    assert f"{source}:1: order 64 is out of range (0-63)" in result.stderr


# -- odd files ---------------------------------------------------------------------------


def _odd_file(kind: str, folder: Path) -> Path:
    """Make a directory, or a dangling symlink, named like an input."""
    path = folder / f"{kind}.txt"
    if kind == "directory":
        path.mkdir()
    else:
        path.symlink_to(folder / "nowhere")
    return path


@pytest.mark.parametrize(("kind", "reason"), [("directory", "Is a directory"),
                                              ("dangling-symlink", "No such file or directory")])
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_an_input_that_cannot_be_opened_is_named(
    files: dict[str, Path], tmp_path: Path, command: str, kind: str, reason: str
) -> None:
    source = _odd_file(kind, tmp_path)
    output = tmp_path / "out.txt"
    result = invoke(command, str(source), output, files["vmlinux"])
    check_outcome(result, str(source), output)
    assert result.exit_code == 1
    assert result.stderr.strip().endswith(f"{source}: {reason}")


def _drop_file_access() -> None:
    """In a child: give up reading files we do not own, even as root (no CAP_DAC_*)."""
    if os.geteuid() != 0:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    # Root regains every capability in its bounding set at exec(); drop them there first.
    for capability in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        if libc.prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
    data = (ctypes.c_uint32 * 6)()
    if libc.capget(header, data) != 0:
        raise OSError(ctypes.get_errno(), "capget")
    mask = ~((1 << 1) | (1 << 2)) & 0xFFFFFFFF  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
    data[0] &= mask  # effective
    data[1] &= mask  # permitted
    if libc.capset(header, data) != 0:
        raise OSError(ctypes.get_errno(), "capset")


def _run(args: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pageowner", *args], capture_output=True,
                          text=True, check=False, timeout=120, **kwargs)  # type: ignore[call-overload]


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_an_unreadable_input_is_named(files: dict[str, Path], tmp_path: Path, command: str) -> None:
    # GIVEN a file without read permission, and a process that cannot override that
    source = tmp_path / "secret.txt"
    source.write_bytes(BASE)
    source.chmod(0)
    owner = 65534 if os.geteuid() == 0 else os.geteuid()
    os.chown(source, owner, owner) if os.geteuid() == 0 else None
    output = tmp_path / "out.txt"
    args = [arg.format(i=source, o=output, v=files["vmlinux"]) for arg in COMMANDS[command]]
    # WHEN the command reads it
    result = _run(args, preexec_fn=_drop_file_access)
    # THEN one line: the file and "Permission denied", exit 1, nothing written
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip().splitlines()[-1] == f"pageowner: {source}: Permission denied"
    assert not output.exists()


def _feed_fifo(path: Path, data: bytes) -> threading.Thread:
    """Write `data` into a FIFO from a thread (it blocks until a reader opens it)."""
    def write() -> None:
        with open(path, "wb") as fifo:
            fifo.write(data)

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_fifo_reads_like_the_file(files: dict[str, Path], tmp_path: Path, command: str) -> None:
    # GIVEN a FIFO that a writer fills with the plain dump
    fifo = tmp_path / "dump.fifo"
    os.mkfifo(fifo)
    writer = _feed_fifo(fifo, BASE)
    # WHEN a command reads the FIFO, and the file
    through_fifo, from_file = tmp_path / "fifo.out", tmp_path / "file.out"
    result = invoke(command, str(fifo), through_fifo, files["vmlinux"])
    writer.join(10)
    invoke(command, str(files["plain"]), from_file, files["vmlinux"])
    # THEN the same result
    assert result.exit_code == 0, result.stderr
    assert through_fifo.read_bytes() == from_file.read_bytes().replace(
        str(files["plain"]).encode(), str(fifo).encode())


def _wait_until_open(pid: int, path: Path, timeout: float = 30.0) -> None:
    """Wait until process `pid` has `path` open."""
    deadline = time.monotonic() + timeout
    target = str(path)
    while time.monotonic() < deadline:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                try:
                    if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                        return
                except OSError:
                    continue
        except OSError:
            pass
        time.sleep(0.002)
    raise AssertionError(f"{path} was never opened")


@pytest.fixture(scope="module")
def big_dump(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    """A 20 MB dump (the plain one 90 times), and what `top` prints for it."""
    path = tmp_path_factory.mktemp("big") / "big.txt"
    path.write_bytes(BASE * 90)
    result = _run(["top", str(path)])
    assert result.returncode == 0
    return path, result.stdout.encode()


def test_a_file_unlinked_while_it_is_read_is_read_whole(
    big_dump: tuple[Path, bytes], tmp_path: Path
) -> None:
    # GIVEN a copy of a big dump, and `top` reading it
    source = tmp_path / "going.txt"
    source.write_bytes(big_dump[0].read_bytes())
    child = subprocess.Popen([sys.executable, "-m", "pageowner", "top", str(source)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # WHEN the file is removed while the command reads it
    _wait_until_open(child.pid, source)
    source.unlink()
    out, err = child.communicate(timeout=120)
    # THEN the open file is read to its end: the same report, exit 0
    assert child.returncode == 0, err
    assert out.replace(str(source).encode(), str(big_dump[0]).encode()) == big_dump[1]


def test_a_file_truncated_while_it_is_read_gives_a_result_or_an_error(
    big_dump: tuple[Path, bytes], tmp_path: Path
) -> None:
    for command in ("top", "sort"):
        source = tmp_path / "shrinking.txt"
        source.write_bytes(big_dump[0].read_bytes())
        args = ["top", str(source)] if command == "top" else ["sort", str(source), "-"]
        child = subprocess.Popen([sys.executable, "-m", "pageowner", *args],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        _wait_until_open(child.pid, source)
        os.truncate(source, len(BASE) * 3 + 1234)  # mid-record
        _, err = child.communicate(timeout=120)
        assert child.returncode in (0, 1), err
        assert b"Traceback" not in err
        assert all(line.startswith(b"pageowner: ") for line in err.splitlines()), err


# -- /dev/full -----------------------------------------------------------------------------


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full")
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_dev_full_as_the_output_is_a_write_error(files: dict[str, Path], command: str) -> None:
    result = invoke(command, str(files["plain"]), Path("/dev/full"), files["vmlinux"])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1] == \
        "pageowner: /dev/full: write failed: No space left on device"


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full")
@pytest.mark.parametrize("args", [["sort", "{i}", "-"], ["top", "{i}"], ["stats", "{i}"],
                                  ["grep", "-c", "{i}"], ["workloads"]])
def test_dev_full_as_stdout_is_a_write_error(files: dict[str, Path], args: list[str]) -> None:
    with open("/dev/full", "wb") as full:
        result = subprocess.run(
            [sys.executable, "-m", "pageowner", *(a.format(i=files["plain"]) for a in args)],
            stdout=full, stderr=subprocess.PIPE, text=True, check=False, timeout=60)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and "Exception ignored" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].endswith("No space left on device")


def test_a_reader_that_goes_away_is_not_an_error(files: dict[str, Path]) -> None:
    # `pageowner sort dump - | head -1`: the pipe closes early; exit 0, nothing on stderr.
    big = files["plain"].read_bytes() * 20
    child = subprocess.Popen([sys.executable, "-m", "pageowner", "grep", "-"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert child.stdin is not None and child.stdout is not None and child.stderr is not None
    stdin = child.stdin

    def feed() -> None:
        try:
            stdin.write(big)
            stdin.close()
        except BrokenPipeError:
            pass  # the command may stop reading once its reader has gone

    threading.Thread(target=feed, daemon=True).start()
    child.stdout.read(100)
    child.stdout.close()
    child.wait(60)
    assert child.returncode == 0
    assert child.stderr.read() == b""


# -- watch stores --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def store_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A watch store of 300 snapshots of 40 stacks (about 300 KB, many pages)."""
    from pageowner.live.store import StackSample, Store

    path = tmp_path_factory.mktemp("store") / "run.db"
    with Store.open(str(path), create=True) as store:
        for minute in range(300):
            store.add_snapshot(
                60.0 * minute, "show_stacks",
                [StackSample((f" f{k}+0x1/0x2", " g+0x1/0x2"), 10 + minute + k) for k in range(40)],
                bytes_read=1, read_seconds=0.0)  # fmt: skip
    return path.read_bytes()


def _damage_store(data: bytes, damage: str) -> bytes:
    if damage == "empty":
        return b""
    if damage == "junk":
        return bytes(range(256)) * 40
    if damage == "truncated":
        return data[: len(data) // 3]
    scrambled = bytearray(data)
    start = {"header-page": 200, "mid-file": len(data) // 2, "last-pages": len(data) - 8000}[damage]
    for at in range(start, min(start + 4000, len(data)), 3):
        scrambled[at] ^= 0x5A
    return bytes(scrambled)


@pytest.mark.parametrize("damage", ["empty", "junk", "truncated", "header-page", "mid-file",
                                    "last-pages"])
def test_a_damaged_store_is_one_line(store_bytes: bytes, tmp_path: Path, damage: str) -> None:
    # GIVEN a watch store damaged like a crashed disk would
    path = tmp_path / "run.db"
    path.write_bytes(_damage_store(store_bytes, damage))
    # WHEN trend reads it THEN one line naming the store, exit 1; the store is kept
    result = CliRunner().invoke(cli, ["trend", str(path)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"pageowner: {path}: "), result.stderr
    assert path.read_bytes() == _damage_store(store_bytes, damage)
