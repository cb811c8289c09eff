"""Simulator state survives kills, refuses concurrent changes clearly, and reports damage.

`pageowner run` is killed with SIGKILL 50 times at random moments (every fifth time while
it writes the new state); after each kill the state loads, passes the buddy and page_owner
invariants (tests/sim_invariants.py) and holds either the old history or the old one plus
that run: never anything in between. Two runs at once are serialized by the lock (or the
second is refused, with the holder's pid, when the wait runs out). Every byte of a state
file matters: any damage is a one-line error and the file is left as it was.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pageowner.errors import StateError
from pageowner.sim import api, state
from tests.sim_invariants import check_machine

ROOT = Path(__file__).resolve().parents[1]
# Small runs that a 64 MiB machine sustains 50 times over; each takes ~0.1-0.3 s.
RUNS = (
    ["leak", "--pages", "100"], ["fork", "--count", "4"], ["anon", "--mb", "4", "--exit"],
    ["compact"], ["slab", "--mb", "1"], ["vmalloc", "--count", "2", "--kb", "64"],
)


@pytest.fixture()
def machine_dir(tmp_path: Path) -> Path:
    """A booted 64 MiB 6.12 machine with page_owner on."""
    directory = tmp_path / "machine"
    api.boot(directory, "6.12", 64 << 20, "page_owner=on")
    return directory


def _start_run(directory: Path, args: list[str], **env: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "pageowner", "run", "--state",
                             str(directory), *args], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env={**os.environ, **env})  # fmt: skip


def _saving(pid: int, directory: Path) -> bool:
    """Tell whether `pid` has the new state open: an unnamed O_TMPFILE file in `directory`."""
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}").startswith(f"{directory}/#"):
                return True
        except OSError:
            continue
    return bool(list(directory.glob(".state.bin.*.tmp")))


def _history(directory: Path) -> list[str]:
    return list(state.load(directory, with_symbols=False).history)


def test_fifty_kills_never_leave_a_broken_state(machine_dir: Path) -> None:
    rng = random.Random(6)
    # How long each undisturbed run takes (the faster of two, as the first pays for cold
    # caches), to spread the kills over it: a kill within 90 % of it lands before the save.
    durations: dict[tuple[str, ...], float] = {}
    for args in RUNS:
        for _ in range(2):
            start = time.monotonic()
            assert _start_run(machine_dir, list(args)).wait(60) == 0
            took = time.monotonic() - start
            durations[tuple(args)] = min(took, durations.get(tuple(args), took))
    outcomes = {"killed before the save": 0, "killed while saving": 0, "finished": 0}
    for attempt in range(50):
        before = _history(machine_dir)
        args = list(RUNS[attempt % len(RUNS)])
        child = _start_run(machine_dir, args)
        # GIVEN a run WHEN it is killed at a random moment, or while it saves
        if attempt % 5 == 4:
            deadline = time.monotonic() + 30
            while not _saving(child.pid, machine_dir) and child.poll() is None \
                    and time.monotonic() < deadline:
                pass
        else:
            time.sleep(rng.uniform(0.1, 0.9) * durations[tuple(args)])
        child.kill()
        child.wait(60)
        # THEN the state loads and its invariants hold
        machine = state.load(machine_dir)
        check_machine(machine)
        # AND the run happened entirely or not at all
        after = list(machine.history)
        if child.returncode == 0:
            outcomes["finished"] += 1
            assert after == [*before, f"run {' '.join(args)}"]
        else:
            assert child.returncode == -9
            assert after in (before, [*before, f"run {' '.join(args)}"])
            key = "killed while saving" if attempt % 5 == 4 else "killed before the save"
            outcomes[key] += 1
        assert not list(machine_dir.glob(".state.bin.*")), "a temporary file was left"
    print(f"\n50 kills of `pageowner run` ({max(durations.values()):.2f}s at most a run): "
          f"{outcomes}")
    assert outcomes["killed while saving"] >= 5
    assert outcomes["killed before the save"] >= 20


def test_two_runs_at_once_are_serialized(machine_dir: Path) -> None:
    # GIVEN two runs started together WHEN both finish
    first = _start_run(machine_dir, ["leak", "--pages", "300"])
    second = _start_run(machine_dir, ["fork", "--count", "8"])
    assert first.wait(60) == 0 and second.wait(60) == 0
    # THEN both happened, one after the other, and the machine is whole
    history = _history(machine_dir)
    assert sorted(history[-2:]) == ["run fork --count 8", "run leak --pages 300"]
    check_machine(state.load(machine_dir))


def test_a_run_that_cannot_get_the_lock_is_refused_clearly(machine_dir: Path) -> None:
    before = (machine_dir / state.STATE_FILE).read_bytes()
    # GIVEN another command holding the machine (a real flock from this process)
    with state.locked(machine_dir, exclusive=True):
        # WHEN a run waits longer than PAGEOWNER_LOCK_TIMEOUT
        child = _start_run(machine_dir, ["compact"], PAGEOWNER_LOCK_TIMEOUT="0.3")
        _, err = child.communicate(timeout=60)
    # THEN it is refused in one line naming the holder, and nothing changed
    assert child.returncode == 1
    assert err.decode().strip() == (
        f"pageowner: {machine_dir}: the machine is busy with another pageowner command "
        f"(pid {os.getpid()}); try again when it has finished")
    assert (machine_dir / state.STATE_FILE).read_bytes() == before


def _damaged(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    """Return a description and a damaged copy of a state file."""
    kind = rng.choice(["flip", "flip", "truncate", "zero-run", "append"])
    if kind == "flip":
        at = rng.randrange(len(data))
        return f"byte {at} flipped", data[:at] + bytes([data[at] ^ (1 << rng.randrange(8))]) \
            + data[at + 1:]
    if kind == "truncate":
        at = rng.randrange(len(data))
        return f"cut at {at}", data[:at]
    if kind == "zero-run":
        at = rng.randrange(len(data))
        return f"zeros from {at}", data[:at] + bytes(min(64, len(data) - at)) + data[at + 64:]
    return "junk appended", data + b"junk"


def test_any_damage_to_the_state_is_a_clear_error_and_kept(machine_dir: Path) -> None:
    path = machine_dir / state.STATE_FILE
    good = path.read_bytes()
    rng = random.Random(66)
    for _ in range(60):
        # GIVEN a state file damaged in one place
        what, data = _damaged(good, rng)
        if data == good:
            continue
        path.write_bytes(data)
        # WHEN it is loaded THEN a StateError says it is corrupt, and the file is kept
        with pytest.raises(StateError) as caught:
            state.load(machine_dir)
        assert str(path) in str(caught.value), what
        assert "corrupt simulator state" in str(caught.value) or "truncated" in str(
            caught.value), what
        assert path.read_bytes() == data
    path.write_bytes(good)
    check_machine(state.load(machine_dir))


@pytest.mark.parametrize("damage", ["empty", "truncated", "newer", "junk", "directory"])
def test_the_cli_reports_a_bad_state_in_one_line(machine_dir: Path, damage: str) -> None:
    path = machine_dir / state.STATE_FILE
    data = path.read_bytes()
    if damage == "empty":
        path.write_bytes(b"")
    elif damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "junk":
        path.write_bytes(os.urandom(4096))
    elif damage == "directory":
        path.unlink()
        path.mkdir()
    else:
        length = int.from_bytes(data[8:16], "little")
        header = json.loads(data[16:16 + length])
        header["format_version"] = state.FORMAT_VERSION + 1
        new = json.dumps(header).encode()
        path.write_bytes(data[:8] + len(new).to_bytes(8, "little") + new + data[16 + length:])
    for args in (["run", "compact"], ["dump"]):
        result = subprocess.run([sys.executable, "-m", "pageowner", *args, "--state",
                                 str(machine_dir)], capture_output=True, text=True,
                                check=False, timeout=60)  # fmt: skip
        assert result.returncode == 1, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"pageowner: {path}"), result.stderr
        expected = "newer pageowner" if damage == "newer" else (
            "Is a directory" if damage == "directory" else "corrupt simulator state")
        assert expected in lines[0]


def test_a_state_saved_before_the_manifest_checksum_still_loads(machine_dir: Path) -> None:
    # GIVEN a state file as pageowner wrote it before the trailer (the last 40 bytes)
    path = machine_dir / state.STATE_FILE
    data = path.read_bytes()
    assert data[-40:-32] == state.SUM_MAGIC
    path.write_bytes(data[:-40])
    # THEN it loads, whole, and the next save adds the trailer
    check_machine(state.load(machine_dir))
    api.run(machine_dir, "compact", [])
    assert path.read_bytes()[-40:-32] == state.SUM_MAGIC
