"""Simulator state: exact round trips, atomic saves, locking, and refusing bad states."""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from pageowner.errors import StateError
from pageowner.sim import api, state
from pageowner.sim.boot import run_boot
from pageowner.sim.dump import write_page_owner
from pageowner.sim.machine import Machine
from pageowner.sim.workloads import run_workload
from tests.sim_invariants import free_blocks_rebuild

ROOT = Path(__file__).resolve().parents[1]


def dump_bytes(machine: Machine) -> bytes:
    """Return a machine's page_owner text."""
    out = io.BytesIO()
    write_page_owner(machine, out)
    return out.getvalue()


@pytest.fixture()
def booted(tmp_path: Path) -> Path:
    """A state directory with a small 6.1 machine that ran a workload."""
    directory = tmp_path / "state"
    api.boot(directory, "6.1", 128 << 20, "page_owner=on", 5)
    api.run(directory, "capture", ["--mb", "8"])
    return directory


def test_a_saved_machine_loads_back_exactly(booted: Path) -> None:
    machine = state.load(booted)
    again = state.load(booted)
    assert dump_bytes(machine) == dump_bytes(again)
    assert set(machine.buddy.iter_free_blocks()) == set(again.buddy.iter_free_blocks())
    assert free_blocks_rebuild(machine.buddy)


def test_a_reload_between_workloads_changes_nothing(tmp_path: Path) -> None:
    # GIVEN the same workloads run in one process and through save/load in between
    machine = Machine.create("6.12", 128 << 20, "page_owner=on", 9)
    run_boot(machine)
    state.save(machine, tmp_path)
    for name, args in (("anon", ["--mb", "4", "--exit"]), ("leak", ["--pages", "100"])):
        run_workload(machine, name, args)
        loaded = state.load(tmp_path)
        run_workload(loaded, name, args)
        state.save(loaded, tmp_path)
    # THEN the machines print the same dump: free lists kept their order
    assert dump_bytes(machine) == dump_bytes(state.load(tmp_path))


def test_a_missing_state_says_to_boot(tmp_path: Path) -> None:
    with pytest.raises(StateError, match="no machine booted here; run 'pageowner boot'"):
        api.run(tmp_path / "nothing", "compact", [])


def _child(code: str) -> subprocess.CompletedProcess[str]:
    """Run Python code in a child process (the kill happens there, not here)."""
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, check=False)


def test_a_command_killed_before_the_rename_leaves_the_previous_state(booted: Path) -> None:
    before = (booted / state.STATE_FILE).read_bytes()
    result = _child(
        "import os, signal\n"
        "from pathlib import Path\n"
        "from pageowner.sim import api\n"
        "os.replace = lambda *a: os.kill(os.getpid(), signal.SIGKILL)\n"
        f"api.run(Path({str(booted)!r}), 'anon', ['--mb', '4'])\n")
    assert result.returncode == -signal.SIGKILL
    assert list(booted.glob(".state.bin.*.tmp")), "the new state was fully written"
    assert (booted / state.STATE_FILE).read_bytes() == before
    # the next command works and cleans up the leftover
    api.run(booted, "compact", [])
    assert not list(booted.glob(".state.bin.*.tmp"))


def _writing_state(pid: int, directory: Path) -> bool:
    """Tell whether a process has a new state file open for writing in `directory`.

    The save writes an unnamed O_TMPFILE file (shown as `DIR/#inode (deleted)` in /proc)
    where the file system has them, else `.state.bin.*.tmp`.
    """
    if list(directory.glob(".state.bin.*.tmp")):
        return True
    try:
        links = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
    except OSError:
        return False
    return any(link.startswith(f"{directory}/#") for link in links)


def test_a_command_killed_while_writing_leaves_the_previous_state(tmp_path: Path) -> None:
    directory = tmp_path / "big"
    api.boot(directory, "6.12", 3 << 30, "page_owner=on", 1)
    before = (directory / state.STATE_FILE).read_bytes()
    for _ in range(5):
        child = subprocess.Popen(
            [sys.executable, "-c", "from pathlib import Path\nfrom pageowner.sim import api\n"
             f"api.run(Path({str(directory)!r}), 'shmem', ['--mb', '256'])\n"],
            cwd=ROOT)
        deadline = time.monotonic() + 60
        while not _writing_state(child.pid, directory) and child.poll() is None:
            if time.monotonic() > deadline:
                break
            time.sleep(0.001)
        child.send_signal(signal.SIGKILL)
        child.wait()
        if child.returncode == -signal.SIGKILL:
            break
    assert child.returncode == -signal.SIGKILL
    assert (directory / state.STATE_FILE).read_bytes() == before
    state.load(directory)


def test_a_busy_state_is_refused_after_waiting(booted: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(state.LOCK_TIMEOUT_ENV, "0.2")
    with state.locked(booted, exclusive=True):
        started = time.monotonic()
        with pytest.raises(StateError, match="busy with another pageowner command"):
            api.run(booted, "compact", [])
        assert time.monotonic() - started >= 0.2
        with pytest.raises(StateError, match="busy"):
            api.dump(booted, out=io.BytesIO())


def test_readers_share_the_lock(booted: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(state.LOCK_TIMEOUT_ENV, "0.2")
    with state.locked(booted, exclusive=False):
        assert api.dump(booted, out=io.BytesIO()) > 0
        with pytest.raises(StateError, match="busy"):
            api.run(booted, "compact", [])


def test_a_command_waits_for_the_lock_to_be_released(booted: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(state.LOCK_TIMEOUT_ENV, "10")
    held = threading.Event()

    def hold() -> None:
        with state.locked(booted, exclusive=True):
            held.set()
            time.sleep(0.3)

    thread = threading.Thread(target=hold)
    thread.start()
    held.wait()
    started = time.monotonic()
    assert "compaction" in api.run(booted, "compact", [])
    assert time.monotonic() - started >= 0.2
    thread.join()


def _rewrite_header(path: Path, change: dict[str, object]) -> None:
    """Change fields of a state file's JSON header, keeping the sections."""
    data = path.read_bytes()
    length = int.from_bytes(data[8:16], "little")
    header = json.loads(data[16:16 + length])
    header.update(change)
    new = json.dumps(header).encode()
    sections = data[16 + length:]
    if sections[-40:-32] == state.SUM_MAGIC:  # re-seal: a manifest made by hand, not damaged
        sections = sections[:-40] + state.SUM_MAGIC + hashlib.sha256(new).digest()
    path.write_bytes(data[:8] + len(new).to_bytes(8, "little") + new + sections)


def _flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


CORRUPTIONS = [
    ("not a pageowner state file", lambda p: p.write_bytes(b"PK\x03\x04 a zip file" * 4)),
    ("file too short", lambda p: p.write_bytes(b"PGOWN")),
    ("truncated", lambda p: p.write_bytes(p.read_bytes()[:-1000])),
    ("fails its checksum", _flip_last_byte),
    ("unreadable manifest", lambda p: p.write_bytes(p.read_bytes()[:16] + b"@@" +
                                                    p.read_bytes()[18:])),
    ("manifest without a format version",
     lambda p: _rewrite_header(p, {"format_version": "1"})),
]


@pytest.mark.parametrize(("message", "corrupt"), CORRUPTIONS,
                         ids=[m for m, _ in CORRUPTIONS])
def test_a_corrupt_state_is_reported_and_kept(booted: Path, message: str,
                                              corrupt: object) -> None:
    path = booted / state.STATE_FILE
    corrupt(path)  # type: ignore[operator]
    damaged = path.read_bytes()
    with pytest.raises(StateError, match=f"corrupt simulator state.*{message}.*--force"):
        api.run(booted, "compact", [])
    with pytest.raises(StateError, match="already booted here; use --force"):
        api.boot(booted, "6.1", 128 << 20, "page_owner=on")
    assert path.read_bytes() == damaged, "a corrupt state must never be replaced silently"
    api.boot(booted, "6.1", 128 << 20, "page_owner=on", force=True)
    state.load(booted)


@pytest.mark.parametrize(("version", "message"), [
    (state.FORMAT_VERSION + 1, "written by a newer pageowner.*upgrade pageowner"),
    (state.FORMAT_VERSION - 1, "written by an older pageowner.*--force"),
])
def test_another_format_version_is_reported(booted: Path, version: int, message: str) -> None:
    _rewrite_header(booted / state.STATE_FILE, {"format_version": version})
    with pytest.raises(StateError, match=message):
        api.dump(booted, out=io.BytesIO())


def test_an_inconsistent_manifest_is_corrupt(booted: Path) -> None:
    path = booted / state.STATE_FILE
    data = path.read_bytes()
    length = int.from_bytes(data[8:16], "little")
    header = json.loads(data[16:16 + length])
    header["machine"]["classes"][0][0] = 10 ** 6  # a stack that does not exist
    _rewrite_header(path, {"machine": header["machine"]})
    with pytest.raises(StateError, match="corrupt.*missing stack"):
        state.load(booted)


def test_the_state_holds_no_pickle(booted: Path) -> None:
    data = (booted / state.STATE_FILE).read_bytes()
    length = int.from_bytes(data[8:16], "little")
    assert data[:8] == b"PGOWNSIM"
    json.loads(data[16:16 + length])  # the manifest is plain JSON
    assert b"\x80\x04\x95" not in data[:16 + length]  # no pickle protocol-4 frame


def test_state_directory_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("PAGEOWNER_STATE", raising=False)
    assert state.default_state_dir(None) == Path(".pageowner")
    monkeypatch.setenv("PAGEOWNER_STATE", str(tmp_path))
    assert state.default_state_dir(None) == tmp_path
    assert state.default_state_dir("given") == Path("given")



