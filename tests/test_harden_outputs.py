"""Outputs and inputs stay safe: no command writes over its input, into a missing folder,
half a file on a full disk, or anything at all when it is interrupted or killed.

Every command that writes a file is tried with OUTPUT naming one of its inputs (the same
path, a symlink, a hard link, another spelling), OUTPUT in a missing folder, and OUTPUT on
a full file system; `grep` and `sort` are interrupted (SIGINT) and killed (SIGKILL) while
they write. After each: the inputs are byte for byte what they were, and the output folder
holds nothing new (an output that existed keeps its old content).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

import pageowner.dump.fileio as fileio
from pageowner.cli import cli
from pageowner.errors import OutputError
from pageowner.live.store import StackSample, Store
from pageowner.sim import api
from tests.harden_inputs import BASE, vmlinux_bytes


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Inputs of every kind: a dump, an ELF, a watch store, a simulator state, a debugfs tree."""
    folder = tmp_path_factory.mktemp("world")
    dump = folder / "dump.txt"
    dump.write_bytes(BASE)
    vmlinux = folder / "vmlinux"
    vmlinux.write_bytes(vmlinux_bytes())
    store_path = folder / "run.db"
    with Store.open(str(store_path), create=True) as store:
        for minute in range(3):
            store.add_snapshot(60.0 * minute, "show_stacks",
                               [StackSample((" a+0x1/0x2", " b+0x3/0x4"), 10 + minute)],
                               bytes_read=1, read_seconds=0.0)  # fmt: skip
    sim = folder / "sim"
    api.boot(sim, "6.12", 64 << 20, "page_owner=on")
    tree, proc = folder / "debugfs", folder / "proc"
    api.dump(sim, tree=str(tree), proc_tree=str(proc))
    return {"dump": dump, "vmlinux": vmlinux, "store": store_path, "sim": sim,
            "state": sim / "state.bin", "debugfs": tree, "proc": proc,
            "page_owner": tree / "page_owner"}  # fmt: skip


# Each writing command: its arguments with {o} for OUTPUT, and which inputs it reads.
WRITERS: dict[str, tuple[list[str], tuple[str, ...]]] = {
    "sort": (["sort", "{dump}", "{o}"], ("dump",)),
    "grep": (["grep", "{dump}", "-o", "{o}"], ("dump",)),
    "top": (["top", "{dump}", "-o", "{o}"], ("dump",)),
    "diff": (["diff", "{dump}", "{vmlinux_dump}", "-o", "{o}"], ("dump",)),
    "stats": (["stats", "{dump}", "-o", "{o}"], ("dump",)),
    "frag": (["frag", "{dump}", "-o", "{o}"], ("dump",)),
    "flame": (["flame", "{dump}", "-o", "{o}"], ("dump",)),
    "flame-diff": (["flame", "{copy}", "--diff", "{dump}", "-o", "{o}"], ("dump",)),
    "symbolize": (["symbolize", "--vmlinux", "{vmlinux}", "--allow-mismatch", "--no-cache",
                   "{dump}", "-o", "{o}"], ("dump", "vmlinux")),
    "trend": (["trend", "{store}", "-o", "{o}"], ("store",)),
    "dump": (["dump", "--state", "{sim}", "-o", "{o}"], ("state",)),
    "capture": (["capture", "--debugfs", "{debugfs}", "--proc", "{proc}", "-o", "{o}"],
                ("page_owner",)),
}


def _args(command: str, world: dict[str, Path], output: Path | str, tmp: Path) -> list[str]:
    copy = tmp / "copy.txt"
    if not copy.exists():
        copy.write_bytes(BASE)
    names = {key: str(value) for key, value in world.items()}
    return [arg.format(o=output, copy=copy, vmlinux_dump=copy, **names)
            for arg in WRITERS[command][0]]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _listing(folder: Path) -> dict[str, str]:
    """Every file under a folder with its digest (what 'nothing new' is checked against)."""
    return {str(p.relative_to(folder)): _digest(p) for p in sorted(folder.rglob("*"))
            if p.is_file()}


def _spellings(path: Path, tmp: Path) -> Iterator[tuple[str, Path | str]]:
    """Other names of the same file: itself, relative, a symlink, a hard link."""
    yield "same path", path
    yield "relative", os.path.relpath(path)
    link = tmp / "symlink-to-input"
    link.symlink_to(path)
    yield "symlink", link
    hard = tmp / "hardlink-to-input"
    with contextlib.suppress(OSError):
        os.link(path, hard)
        yield "hard link", hard


@pytest.mark.parametrize("command", sorted(WRITERS))
def test_an_output_that_is_an_input_is_refused(world: dict[str, Path], tmp_path: Path,
                                               command: str) -> None:
    for input_name in WRITERS[command][1]:
        target = world[input_name]
        before = _listing(target.parent)
        for how, output in _spellings(target, tmp_path):
            # WHEN the output names an input THEN exit 1, one line, and the input is intact
            result = CliRunner().invoke(cli, _args(command, world, output, tmp_path))
            assert result.exit_code == 1, (how, result.stderr)
            assert result.stderr.strip().endswith("refusing to overwrite the input file"), how
            assert _listing(target.parent) == before, how
        for link in ("symlink-to-input", "hardlink-to-input"):
            (tmp_path / link).unlink(missing_ok=True)


@pytest.mark.parametrize("command", sorted(WRITERS))
def test_an_output_in_a_missing_folder_is_refused(world: dict[str, Path], tmp_path: Path,
                                                  command: str) -> None:
    output = tmp_path / "no" / "such" / "folder" / "out.txt"
    result = CliRunner().invoke(cli, _args(command, world, output, tmp_path))
    assert result.exit_code == 1, result.stderr
    assert result.stderr.strip().splitlines()[-1] == \
        f"pageowner: {output}: cannot create output: No such file or directory"
    assert not (tmp_path / "no").exists()


# -- a full disk -------------------------------------------------------------------------


@pytest.fixture(params=["tmpfs", "rlimit"])
def full_disk(request: pytest.FixtureRequest,
              tmp_path: Path) -> Iterator[tuple[Path, Callable[[], None] | None]]:
    """A small file system to fill: a 256 KiB tmpfs (root only), or RLIMIT_FSIZE in the child.

    Yields the folder and the child's preexec function (None with the tmpfs).
    """
    folder = tmp_path / "small"
    folder.mkdir()
    if request.param == "tmpfs":
        if os.geteuid() != 0 or shutil.which("mount") is None or subprocess.run(
                ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(folder)],
                capture_output=True, check=False).returncode != 0:
            pytest.skip("cannot mount a tmpfs here (not root?); the rlimit case covers it")
        try:
            yield folder, None
        finally:
            subprocess.run(["umount", str(folder)], check=False)
        return

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails: EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (256 << 10, 256 << 10))

    yield folder, limit


@pytest.mark.parametrize("args", [["sort", "-a", "{i}", "{o}"], ["grep", "{i}", "-o", "{o}"],
                                  ["symbolize", "--vmlinux", "{v}", "--allow-mismatch",
                                   "--no-cache", "{i}", "-o", "{o}"]])
def test_a_full_disk_leaves_no_output(full_disk: tuple[Path, Callable[[], None] | None],
                                      tmp_path: Path, args: list[str]) -> None:
    # GIVEN an input bigger than the file system the output goes to, and an older output
    folder, preexec = full_disk
    source = tmp_path / "big.txt"
    # (each copy with other timestamps, so that `sort -a` keeps every record apart)
    source.write_bytes(b"".join(BASE.replace(b"ts 1", b"ts %d" % copy) for copy in range(8)))
    vmlinux = tmp_path / "vmlinux"
    vmlinux.write_bytes(vmlinux_bytes())
    digest = _digest(source)
    output = folder / "out.txt"
    output.write_bytes(b"the previous report\n")
    # WHEN the command writes there
    result = subprocess.run(
        [sys.executable, "-m", "pageowner", *(a.format(i=source, o=output, v=vmlinux)
                                              for a in args)],
        capture_output=True, text=True, check=False, preexec_fn=preexec, timeout=120)
    # THEN exit 1 naming the output and the cause; the old output and the input are intact
    assert result.returncode == 1, result.stderr
    reason = "No space left on device" if preexec is None else "File too large"
    assert result.stderr.strip().splitlines()[-1] == \
        f"pageowner: {output}: write failed: {reason}"
    assert output.read_bytes() == b"the previous report\n"
    assert sorted(p.name for p in folder.iterdir()) == ["out.txt"]
    assert _digest(source) == digest


# -- interrupted while writing -------------------------------------------------------------


def _open_output_size(pid: int, folder: Path) -> int | None:
    """Return the size of the output file `pid` is writing in `folder` (None if none yet)."""
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith(str(folder) + "/"):
                    return os.stat(f"/proc/{pid}/fd/{fd}").st_size
    return None


def _kill_while_writing(args: list[str], folder: Path, sig: int, min_bytes: int) -> int:
    """Start a command, send `sig` once its output holds `min_bytes`; return its status."""
    child = subprocess.Popen([sys.executable, "-m", "pageowner", *args],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and child.poll() is None:
        size = _open_output_size(child.pid, folder)
        if size is not None and size >= min_bytes:
            child.send_signal(sig)
            break
        time.sleep(0.001)
    else:
        child.kill()
        raise AssertionError("the command ended before it was caught writing")
    _, err = child.communicate(timeout=120)
    if sig == signal.SIGINT:
        assert err.decode().strip().endswith("pageowner: interrupted"), err
    return child.returncode


@pytest.fixture(scope="module")
def big_input(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 20 MB dump: big enough to catch a command halfway through its output."""
    path = tmp_path_factory.mktemp("bigin") / "big.txt"
    path.write_bytes(BASE * 90)
    return path


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL, signal.SIGTERM])
@pytest.mark.parametrize("existing", [False, True])
def test_a_command_stopped_while_writing_leaves_nothing(big_input: Path, tmp_path: Path,
                                                        sig: int, existing: bool) -> None:
    # GIVEN grep copying a 20 MB dump to a file (that may exist from an earlier run)
    folder = tmp_path / "out"
    folder.mkdir()
    output = folder / "report.txt"
    if existing:
        output.write_bytes(b"yesterday's report\n")
    digest = _digest(big_input)
    # WHEN it is interrupted or killed with a megabyte written
    status = _kill_while_writing(["grep", str(big_input), "-o", str(output)], folder, sig,
                                 1 << 20)
    # THEN it stopped; no partial output, no temporary file; the input is intact
    assert status == (130 if sig == signal.SIGINT else -sig)
    assert [p.name for p in folder.iterdir()] == (["report.txt"] if existing else [])
    if existing:
        assert output.read_bytes() == b"yesterday's report\n"
    assert _digest(big_input) == digest


def test_sort_killed_at_random_points_leaves_nothing(big_input: Path, tmp_path: Path) -> None:
    # sort writes its report at the end: kill it at spread-out moments instead.
    folder = tmp_path / "out"
    folder.mkdir()
    output = folder / "sorted.txt"
    digest = _digest(big_input)
    whole = tmp_path / "whole.txt"
    argv = [sys.executable, "-m", "pageowner", "sort", "-a", str(big_input)]
    subprocess.run([*argv, str(whole)], check=True, stdout=subprocess.DEVNULL)
    for delay in (0.05, 0.15, 0.3, 0.5, 0.8):
        child = subprocess.Popen([*argv, str(output)],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        child.kill()
        child.wait(60)
        files = [p.name for p in folder.iterdir()]
        # Finished first, or killed after linking its output in place (on its way out):
        # then the report is whole. Killed before that: there is no file at all.
        if child.returncode == 0 or files:
            assert files == ["sorted.txt"] and output.read_bytes() == whole.read_bytes()
            output.unlink()
        else:
            assert files == []
    assert _digest(big_input) == digest


# -- the temporary file itself --------------------------------------------------------------


def test_without_o_tmpfile_a_named_temporary_is_removed_on_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delattr(os, "O_TMPFILE", raising=False)
    output = tmp_path / "out.txt"
    with pytest.raises(KeyboardInterrupt), fileio.atomic_output(str(output)) as out:
        out.write(b"half")
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []
    with fileio.atomic_output(str(output)) as out:
        out.write(b"whole")
    assert output.read_bytes() == b"whole"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_where_no_link_can_be_made_the_output_is_copied_into_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fileio, "_link_fd", lambda fd, name: False)
    output = tmp_path / "out.txt"
    output.write_bytes(b"old")
    with fileio.atomic_output(str(output)) as out:
        out.write(b"new" * 100_000)
    assert output.read_bytes() == b"new" * 100_000
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]
    assert oct(output.stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def test_a_new_output_gets_the_permissions_open_would_give(tmp_path: Path) -> None:
    output = tmp_path / "out.txt"
    with fileio.atomic_output(str(output)) as out:
        out.write(b"x")
    assert oct(output.stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_a_write_error_on_stdout_is_an_output_error(monkeypatch: pytest.MonkeyPatch) -> None:
    class Full:
        def write(self, data: bytes) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

        def flush(self) -> None:
            pass

    class Stdout:
        buffer = Full()

    monkeypatch.setattr(sys, "stdout", Stdout())
    with pytest.raises(OutputError, match="<stdout>: write failed: No space left on device"), \
            fileio.atomic_output("-") as out:
        out.write(b"x")
