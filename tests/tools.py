"""Find the real outside tools some tests drive (Go's pprof, Prometheus's promtool).

`make unit` installs Debian's golang-go and prometheus where it can (root, apt); where a
tool is still missing, its tests skip and say why.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

__all__ = ["go_pprof", "promtool", "run_tool"]

_GO_CANDIDATES = ("go", "/usr/lib/go/bin/go")


def go_pprof() -> list[str]:
    """Return the command running Go's pprof, or skip the test saying why."""
    for candidate in _GO_CANDIDATES:
        found = shutil.which(candidate)
        if found is not None:
            return [found, "tool", "pprof"]
    pytest.skip("Go's pprof is not installed (Debian: apt-get install golang-go; "
                "`make unit` does it as root)")


def promtool() -> str:
    """Return the path of Prometheus's promtool, or skip the test saying why."""
    found = shutil.which("promtool")
    if found is None:
        pytest.skip("promtool is not installed (Debian: apt-get install prometheus; "
                    "`make unit` does it as root)")
    return found


def run_tool(command: list[str], tmp: Path, stdin: bytes | None = None) -> str:
    """Run an outside tool offline with its caches in `tmp`; fail the test on an error."""
    # GOPROXY=off: nothing may be fetched; pprof needs nothing but the file it is given.
    env = dict(os.environ, HOME=str(tmp), PPROF_TMPDIR=str(tmp), GOPROXY="off",
               GOCACHE=str(tmp / "gocache"))  # fmt: skip
    env.pop("PPROF_BINARY_PATH", None)
    done = subprocess.run(command, input=stdin, capture_output=True, env=env, timeout=120,
                          check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return done.stdout.decode()
