"""The fuzz harness in the unit suite: a fixed, repeatable batch of mutants must pass.

`make fuzz` runs the coverage-guided pass (atheris) for a while; this runs our own mutator
over the same target for a fixed number of inputs, so the suite fails on the same input
every time if a reader regresses.
"""

from __future__ import annotations

import random

from fuzz.corpus import seeds
from fuzz.mutator import mutate, run_mutations
from fuzz.targets import check_dump


def test_a_fixed_batch_of_mutants_breaks_no_promise() -> None:
    result = run_mutations(check_dump, seeds(), seed=2026, runs=1500)
    assert result.failure is None, f"{result.error}: {result.failure!r}"
    assert result.inputs == 1500


def test_the_mutator_is_repeatable() -> None:
    pool = seeds()
    first = [mutate(random.Random(7), pool) for _ in range(3)]
    again = [mutate(random.Random(7), pool) for _ in range(3)]
    assert first == again


def test_the_harness_reports_the_input_that_fails() -> None:
    def fragile(data: bytes) -> None:
        if b"\r" in data:
            raise ValueError("a CR")

    result = run_mutations(fragile, [b"Page allocated via order 0\n\n"], seed=1, runs=5000)
    assert result.failure is not None and b"\r" in result.failure
    assert result.error == "ValueError: a CR"
