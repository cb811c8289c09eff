"""Fuzz the dump readers and the sort engine for a bounded time; print how many inputs.

    python fuzz/run.py --seconds 10            # atheris when installed, else our mutator
    python fuzz/run.py --engine own --runs 100000

atheris (coverage-guided libFuzzer) runs fuzz/atheris_target.py in a child process with
the fixture seeds and a dictionary; our own mutator (fuzz/mutator.py) runs in-process.
Exit status 0: no input broke a promise; 1: one did, and it is saved under
.fuzz-artifacts/ (reproduce: python fuzz/run.py --replay FILE).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fuzz.corpus import seeds, write_dictionary  # noqa: E402
from fuzz.mutator import run_mutations  # noqa: E402
from fuzz.targets import check_dump  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / ".fuzz-artifacts"
_DONE = re.compile(r"Done (\d+) runs in (\d+) second")


def run_atheris(seconds: float, runs: int | None, seed: int) -> int:
    """Run libFuzzer through atheris in a child; print its count; return the exit status."""
    ARTIFACTS.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="pageowner-fuzz-") as work:
        corpus = Path(work) / "corpus"
        corpus.mkdir()
        for index, example in enumerate(seeds()):
            (corpus / f"seed-{index:03d}").write_bytes(example)
        dictionary = Path(work) / "dump.dict"
        write_dictionary(dictionary)
        command = [sys.executable, str(ROOT / "fuzz" / "atheris_target.py"),
                   f"-max_total_time={max(1, int(seconds))}", f"-dict={dictionary}",
                   "-max_len=16384", "-rss_limit_mb=4096", "-timeout=30", f"-seed={seed}",
                   f"-artifact_prefix={ARTIFACTS}/", "-print_final_stats=1", str(corpus)]
        if runs is not None:
            command.insert(2, f"-runs={runs}")
        start = time.monotonic()
        child = subprocess.run(command, capture_output=True, text=True, check=False,
                               env={**os.environ, "PYTHONHASHSEED": "0"})
        elapsed = time.monotonic() - start
    done = _DONE.search(child.stderr)
    if child.returncode != 0 or done is None:
        sys.stderr.write(child.stderr[-6000:])
        print(f"fuzz (atheris): FAILED after {elapsed:.0f}s; crash input in {ARTIFACTS}/")
        return 1
    inputs = int(done.group(1))
    print(f"fuzz (atheris {_version('atheris')}): {inputs} inputs in {elapsed:.0f}s, "
          f"{inputs / elapsed:.0f}/s, no crash")
    return 0


def run_own(seconds: float | None, runs: int | None, seed: int) -> int:
    """Run our mutation fuzzer in-process; print its count; return the exit status."""
    result = run_mutations(check_dump, seeds(), seed=seed, runs=runs, seconds=seconds)
    if result.failure is not None:
        ARTIFACTS.mkdir(exist_ok=True)
        saved = ARTIFACTS / f"own-seed{seed}-input{result.inputs}"
        saved.write_bytes(result.failure)
        print(f"fuzz (own mutator): input {result.inputs} failed: {result.error}\n"
              f"  saved as {saved}; replay: python fuzz/run.py --replay {saved}")
        return 1
    rate = result.inputs / result.seconds if result.seconds else 0.0
    print(f"fuzz (own mutator, seed {seed}): {result.inputs} inputs in {result.seconds:.0f}s, "
          f"{rate:.0f}/s, no crash")
    return 0


def _version(name: str) -> str:
    """Return an installed distribution's version."""
    from importlib.metadata import version

    return version(name)


def main() -> int:
    """Parse the arguments and fuzz."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--runs", type=int, default=None)
    parser.add_argument("--engine", choices=("auto", "atheris", "own"), default="auto")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--replay", type=Path, help="check one saved input and show the error")
    args = parser.parse_args()
    if args.replay is not None:
        check_dump(args.replay.read_bytes())
        print(f"{args.replay}: passes")
        return 0
    engine = args.engine
    if engine == "auto":
        engine = "atheris" if importlib.util.find_spec("atheris") else "own"
        if engine == "own":
            print("fuzz: atheris is not installed; using our own mutator")
    if engine == "atheris":
        return run_atheris(args.seconds, args.runs, args.seed)
    return run_own(args.seconds if args.runs is None else None, args.runs, args.seed)


if __name__ == "__main__":
    sys.exit(main())
