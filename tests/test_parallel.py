"""The forked worker: its errors read as one process's would, its death is explained, and it
never outlives its parent or overrides an ignored Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from pageowner.dump.parallel import ForkedCall, WorkerError
from pageowner.errors import InputError


def test_a_result_travels_back() -> None:
    assert ForkedCall.start(lambda: b"counted\n\x00bytes").result() == b"counted\n\x00bytes"


def test_a_library_error_keeps_its_own_message() -> None:
    def work() -> bytes:
        raise InputError("dump.txt: read error: Input/output error")

    with pytest.raises(WorkerError) as caught:
        ForkedCall.start(work).result()
    assert str(caught.value) == "dump.txt: read error: Input/output error"
    assert not caught.value.died


def test_a_bug_in_the_worker_is_named() -> None:
    def work() -> bytes:
        raise KeyError("x")

    with pytest.raises(WorkerError, match=r"^parallel worker failed: KeyError: 'x'$"):
        ForkedCall.start(work).result()


def test_a_killed_worker_says_how_it_died_and_what_to_do() -> None:
    def work() -> bytes:
        os.kill(os.getpid(), signal.SIGKILL)
        return b""

    call = ForkedCall.start(work)
    with pytest.raises(WorkerError) as caught:
        call.result()
    assert caught.value.died
    assert str(caught.value) == (
        "the second process died (killed by SIGKILL: out of memory?); run again with -j 1")
    call.cancel()  # after result() reaped it: touches neither the pid nor the fd


def _child_of(pid: int) -> int | None:
    """Return the pid of a child of `pid`, if it has one."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as handle:
            children = handle.read().split()
    except OSError:
        return None
    return int(children[0]) if children else None


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(") ")[1][0] != "Z"
    except OSError:
        return False


_SLOW_WORKER = (
    "import signal, sys, time\n"
    "from pageowner.dump.parallel import ForkedCall\n"
    "{setup}"
    "call = ForkedCall.start(lambda: (time.sleep(30), b'late')[1])\n"
    "print('started', flush=True)\n"
    "print(call.result().decode(), flush=True)\n"
)


@pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="needs Linux /proc")
def test_the_worker_dies_with_its_parent() -> None:
    # GIVEN a process whose worker would run for 30 s
    parent = subprocess.Popen([sys.executable, "-c", _SLOW_WORKER.format(setup="")],
                              stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None and parent.stdout.readline() == "started\n"
    worker = _child_of(parent.pid)
    assert worker is not None and _alive(worker)
    # WHEN the parent is killed
    parent.kill()
    parent.wait(10)
    # THEN the kernel kills the worker too, instead of leaving it reading to the end
    deadline = time.monotonic() + 10
    while _alive(worker) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not _alive(worker)


@pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="needs Linux /proc")
def test_an_ignored_ctrl_c_stays_ignored_in_the_worker() -> None:
    # GIVEN a process started with SIGINT ignored (as `trap '' INT` or nohup-like scripts do)
    setup = "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
    code = _SLOW_WORKER.format(setup=setup).replace("time.sleep(30)", "time.sleep(1)")
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None and parent.stdout.readline() == "started\n"
    worker = _child_of(parent.pid)
    assert worker is not None
    # WHEN Ctrl-C reaches the worker
    os.kill(worker, signal.SIGINT)
    # THEN it carries on and its result arrives, as one process would have finished
    out, _ = parent.communicate(timeout=30)
    assert parent.returncode == 0
    assert out == "late\n"
