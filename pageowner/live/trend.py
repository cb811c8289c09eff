"""`pageowner trend`: rank the stacks of a watch store by how steadily they grow.

Each stack's pages over time get a least-squares line: the slope (pages per minute) says
how fast it grows, R^2 and the share of steps that do not go down say how steady that is.
A leak grows steadily; page cache and slab noise go up and down. A stack is called
*steady growth* when its slope is positive, R^2 >= 0.8 and at least 75 % of its steps do
not go down, over at least 4 snapshots.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from pageowner.dump.dumpfile import parse_frame
from pageowner.errors import ThresholdExceeded
from pageowner.kernel.frames import first_caller
from pageowner.live.store import Store

__all__ = [
    "LineFit",
    "StackTrend",
    "TrendOptions",
    "TrendReport",
    "analyze_series",
    "analyze_store",
    "choose_axis",
    "fit_line",
    "label_stack",
    "rising_share",
]

MIN_SNAPSHOTS = 4


@dataclass(frozen=True)
class LineFit:
    """A least-squares line y = slope * x + intercept and its R^2."""

    slope: float
    intercept: float
    r2: float


def fit_line(xs: Sequence[float], ys: Sequence[float]) -> LineFit:
    """Fit a line by least squares; R^2 is 0 for flat data, slope 0 when x does not vary.

    >>> fit_line([0, 1, 2], [1, 3, 5])
    LineFit(slope=2.0, intercept=1.0, r2=1.0)
    """
    n = len(xs)
    if n == 0:
        return LineFit(0.0, 0.0, 0.0)
    mean_x = sum(xs) / n
    mean_y = sum(ys) / n
    sxx = sum((x - mean_x) ** 2 for x in xs)
    syy = sum((y - mean_y) ** 2 for y in ys)
    sxy = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True))
    if sxx == 0:
        return LineFit(0.0, mean_y, 0.0)
    slope = sxy / sxx
    r2 = (sxy * sxy) / (sxx * syy) if syy > 0 else 0.0
    return LineFit(slope, mean_y - slope * mean_x, min(1.0, r2))


def rising_share(ys: Sequence[float]) -> float:
    """Return the share of steps that do not go down (0 for fewer than two points).

    >>> rising_share([1, 2, 2, 1, 3])
    0.75
    """
    steps = len(ys) - 1
    if steps < 1:
        return 0.0
    return sum(1 for a, b in zip(ys, ys[1:], strict=False) if b >= a) / steps


def label_stack(frames: Sequence[str]) -> str:
    """Name a stack by its first frame outside the allocator.

    >>> label_stack([" post_alloc_hook+0x1/0x2", " __alloc_pages_noprof+0x3/0x4",
    ...              " my_leaky_probe+0x10/0x40 [leaky]"])
    'my_leaky_probe+0x10/0x40 [leaky]'
    """
    # The same allocator table as `top` and `flame` use (pageowner.kernel.frames).
    index = first_caller([parse_frame(frame) for frame in frames])
    if index is not None:
        return frames[index].strip()
    return frames[-1].strip() if frames else "(no stack)"


@dataclass(frozen=True)
class TrendOptions:
    """How to judge steadiness, how many stacks to show, and when to fail."""

    top: int = 10  # 0 shows every stack
    fail_on_slope: float | None = None
    min_r2: float = 0.8
    min_rising: float = 0.75
    min_snapshots: int = MIN_SNAPSHOTS


@dataclass(frozen=True)
class StackTrend:
    """How one stack's pages moved over the series."""

    stack_id: int
    frames: tuple[str, ...]
    label: str
    series: tuple[int, ...]
    slope: float  # pages per minute
    r2: float
    rising: float  # share of non-decreasing steps
    steady: bool  # steady growth: the signature of a leak

    @property
    def first(self) -> int:
        """Return the pages at the first snapshot."""
        return self.series[0] if self.series else 0

    @property
    def last(self) -> int:
        """Return the pages at the last snapshot."""
        return self.series[-1] if self.series else 0

    @property
    def peak(self) -> int:
        """Return the most pages seen."""
        return max(self.series, default=0)


@dataclass(frozen=True)
class TrendReport:
    """The ranked stacks of a store and the series they were judged on."""

    store: str
    meta: Mapping[str, str]
    times: tuple[float, ...]  # seconds since the epoch, one per snapshot
    stacks: tuple[StackTrend, ...]  # ranked: steady growth first, then by slope * R^2
    options: TrendOptions = field(default_factory=TrendOptions)
    uptimes: tuple[float | None, ...] = ()  # the machine's /proc/uptime at each snapshot
    boot_ids: tuple[str | None, ...] = ()  # and its boot_id

    @property
    def clock(self) -> str:
        """Name the clock the slopes are measured on: "uptime" or "watch" (see choose_axis)."""
        return choose_axis(self.times, self.uptimes, self.boot_ids)[0]

    @property
    def minutes(self) -> tuple[float, ...]:
        """Return each snapshot's time in minutes since the first, on the report's clock."""
        axis = choose_axis(self.times, self.uptimes, self.boot_ids)[1]
        start = axis[0] if axis else 0.0
        return tuple((t - start) / 60.0 for t in axis)

    @property
    def span_minutes(self) -> float:
        """Return the length of the series in minutes."""
        return self.minutes[-1] if self.times else 0.0

    @property
    def top(self) -> tuple[StackTrend, ...]:
        """Return the stacks to show."""
        return self.stacks[: self.options.top] if self.options.top else self.stacks

    @property
    def steady(self) -> tuple[StackTrend, ...]:
        """Return the stacks growing steadily."""
        return tuple(s for s in self.stacks if s.steady)

    @property
    def tripped(self) -> tuple[StackTrend, ...]:
        """Return the steady stacks at or over the --fail-on-slope limit."""
        limit = self.options.fail_on_slope
        if limit is None:
            return ()
        return tuple(s for s in self.steady if s.slope >= limit)

    def check(self) -> None:
        """Raise ThresholdExceeded when a steadily growing stack is at or over the limit."""
        tripped = self.tripped
        if tripped:
            worst = tripped[0]
            raise ThresholdExceeded(
                f"{len(tripped)} stack(s) grow steadily at or over {self.options.fail_on_slope:g} "
                f"pages/min; the first, {worst.label}, grows {worst.slope:.2f} pages/min "
                f"(R^2 {worst.r2:.2f})"
            )


def choose_axis(
    times: Sequence[float], uptimes: Sequence[float | None],
    boot_ids: Sequence[str | None] = (),
) -> tuple[str, tuple[float, ...]]:  # fmt: skip
    """Pick the clock to measure growth on: the machine's uptime when every snapshot has it,
    all within one boot (the same boot_id where known) and only moving forward; else the
    watch's own clock.

    Uptime (CLOCK_BOOTTIME) is not stepped by NTP, and a simulated machine's uptime is its
    simulated time, so a walk-through gives the same slopes on every run.

    >>> choose_axis([100.0, 101.0], [60.0, 120.0])
    ('uptime', (60.0, 120.0))
    >>> choose_axis([100.0, 101.0], [600.0, 5.0])[0]
    'watch'
    """
    known = [u for u in uptimes if u is not None]
    if len({boot for boot in boot_ids if boot is not None}) > 1:  # a reboot in the series
        return "watch", tuple(times)
    if times and len(known) == len(times) and all(
        later >= earlier for earlier, later in itertools.pairwise(known)
    ) and (len(known) == 1 or known[-1] > known[0]):
        return "uptime", tuple(known)
    return "watch", tuple(times)


def analyze_series(
    times: Sequence[float],
    series: Mapping[int, Sequence[int]],
    frames: Mapping[int, tuple[str, ...]],
    options: TrendOptions | None = None,
) -> tuple[StackTrend, ...]:
    """Judge and rank each stack's series (one count per time; 0 where it was absent)."""
    options = options or TrendOptions()
    start = times[0] if times else 0.0
    minutes = [(t - start) / 60.0 for t in times]
    trends = []
    for stack_id, counts in series.items():
        fit = fit_line(minutes, counts)
        rising = rising_share(counts)
        steady = (
            len(counts) >= options.min_snapshots
            and fit.slope > 0
            and counts[-1] > counts[0]
            and fit.r2 >= options.min_r2
            and rising >= options.min_rising
        )
        stack = frames.get(stack_id, ())
        trends.append(StackTrend(stack_id, stack, label_stack(stack), tuple(counts),
                                 fit.slope, fit.r2, rising, steady))  # fmt: skip
    # Steady growth first; then by slope weighted by steadiness; ties by first seen.
    trends.sort(key=lambda t: (not t.steady, -(t.slope * t.r2), t.stack_id))
    return tuple(trends)


def analyze_store(path: str, options: TrendOptions | None = None) -> TrendReport:
    """Read a watch store and rank its stacks by growth."""
    options = options or TrendOptions()
    with Store.open(path) as store:
        snapshots = store.snapshots()
        stacks = store.stacks()
        position = {row.id: index for index, row in enumerate(snapshots)}
        series: dict[int, list[int]] = {}
        for snapshot_id, stack_id, pages in store.samples():
            counts = series.setdefault(stack_id, [0] * len(snapshots))
            counts[position[snapshot_id]] = pages
        meta = store.meta()
    times = tuple(row.taken_at for row in snapshots)
    uptimes = tuple(row.uptime for row in snapshots)
    boot_ids = tuple(row.boot_id for row in snapshots)
    frames = {stack_id: row.frames for stack_id, row in stacks.items()}
    ranked = analyze_series(choose_axis(times, uptimes, boot_ids)[1], series, frames, options)
    return TrendReport(path, meta, times, ranked, options, uptimes, boot_ids)
