"""A small seeded mutation fuzzer: the fallback where atheris cannot be installed.

Each input is a seed with one to five mutations stacked: bit flips, interesting bytes,
dictionary tokens, cuts, duplicated or deleted ranges, splices of two seeds, line ends
changed (LF to CR-LF or to a lone CR) and numbers made huge or negative. Everything comes
from `random.Random(seed)`, so a run is repeatable and a failure names its input number.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from fuzz.corpus import TOKENS

__all__ = ["FuzzResult", "mutate", "run_mutations"]

_MAX_SIZE = 16384
_INTERESTING = b"\x00\xff\r\n ()0-9|=x"
_NUMBER = re.compile(rb"[0-9]+")
_HUGE = (b"18446744073709551616", b"9" * 30, b"-1", b"-2147483649", b"0" * 40 + b"1", b"65",
         b"9" * 5000)


def _flip(rng: random.Random, data: bytearray, _: list[bytes]) -> None:
    if data:
        data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)


def _byte(rng: random.Random, data: bytearray, _: list[bytes]) -> None:
    if data:
        data[rng.randrange(len(data))] = rng.choice(_INTERESTING)


def _token(rng: random.Random, data: bytearray, _: list[bytes]) -> None:
    at = rng.randrange(len(data) + 1)
    data[at:at] = rng.choice(TOKENS)


def _cut(rng: random.Random, data: bytearray, _: list[bytes]) -> None:
    del data[rng.randrange(len(data) + 1):]


def _delete(rng: random.Random, data: bytearray, _: list[bytes]) -> None:
    if data:
        start = rng.randrange(len(data))
        del data[start:start + rng.randrange(1, 64)]


def _duplicate(rng: random.Random, data: bytearray, _: list[bytes]) -> None:
    if data:
        start = rng.randrange(len(data))
        piece = data[start:start + rng.randrange(1, 512)]
        at = rng.randrange(len(data) + 1)
        data[at:at] = piece * rng.choice((1, 2, 8))


def _splice(rng: random.Random, data: bytearray, pool: list[bytes]) -> None:
    other = rng.choice(pool)
    data[rng.randrange(len(data) + 1):] = other[rng.randrange(len(other) + 1):]


def _line_ends(rng: random.Random, data: bytearray, _: list[bytes]) -> None:
    start = rng.randrange(len(data) + 1)
    end = start + rng.randrange(1, 2048)
    new = rng.choice((b"\r\n", b"\r", b"\n\n", b"\r\r\n"))
    data[start:end] = bytes(data[start:end]).replace(b"\n", new)


def _number(rng: random.Random, data: bytearray, _: list[bytes]) -> None:
    matches = list(_NUMBER.finditer(bytes(data)))
    if matches:
        match = rng.choice(matches)
        data[match.start():match.end()] = rng.choice(_HUGE)


_MUTATIONS: tuple[Callable[[random.Random, bytearray, list[bytes]], None], ...] = (
    _flip, _byte, _token, _token, _cut, _delete, _duplicate, _splice, _line_ends, _number,
)


def mutate(rng: random.Random, pool: list[bytes]) -> bytes:
    """Return a new input: a seed from `pool` with one to five mutations."""
    data = bytearray(rng.choice(pool))
    for _ in range(rng.randint(1, 5)):
        rng.choice(_MUTATIONS)(rng, data, pool)
    return bytes(data[:_MAX_SIZE]) if rng.random() < 0.98 else bytes(data)


@dataclass
class FuzzResult:
    """How many inputs were tried, for how long, and the first one that failed."""

    inputs: int = 0
    seconds: float = 0.0
    failure: bytes | None = None
    error: str | None = None


def _inputs(seed: int, pool: list[bytes]) -> Iterator[bytes]:
    """Yield the seeds, then mutants forever."""
    yield from pool
    rng = random.Random(seed)
    while True:
        yield mutate(rng, pool)


def run_mutations(check: Callable[[bytes], None], pool: list[bytes], *, seed: int = 1,
                  runs: int | None = None, seconds: float | None = None) -> FuzzResult:
    """Feed mutants to `check` until `runs` inputs or `seconds` pass, or one fails."""
    result = FuzzResult()
    start = time.monotonic()
    for data in _inputs(seed, pool):
        if runs is not None and result.inputs >= runs:
            break
        if seconds is not None and time.monotonic() - start >= seconds:
            break
        result.inputs += 1
        try:
            check(data)
        except Exception as exc:  # noqa: BLE001 - any exception is the finding
            result.failure = data
            result.error = f"{type(exc).__name__}: {exc}"
            break
    result.seconds = time.monotonic() - start
    return result
