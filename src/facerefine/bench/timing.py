"""The timing harness: :func:`time_callable` -> :class:`Timing` (pure statistics).

Timing assertions never go in unit tests; the harness takes its clock as an argument
so tests drive it with a fake one.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Timing:
    """Wall-clock seconds of the timed repeats; warm-up calls are kept apart, never in the stats."""

    samples: tuple[float, ...]
    warmup: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if not self.samples:
            raise ValueError("Timing needs at least one sample")

    @property
    def repeats(self) -> int:
        return len(self.samples)

    @property
    def median(self) -> float:
        return float(statistics.median(self.samples))

    @property
    def mean(self) -> float:
        return float(statistics.fmean(self.samples))

    @property
    def min(self) -> float:
        return float(min(self.samples))

    @property
    def max(self) -> float:
        return float(max(self.samples))

    @property
    def p10(self) -> float:
        return percentile(self.samples, 10)

    @property
    def p90(self) -> float:
        return percentile(self.samples, 90)

    def to_dict(self, ndigits: int = 6) -> dict[str, Any]:
        r = lambda v: round(v, ndigits)  # noqa: E731 - microseconds are plenty
        return {"median_s": r(self.median), "p10_s": r(self.p10), "p90_s": r(self.p90),
                "min_s": r(self.min), "max_s": r(self.max), "mean_s": r(self.mean),
                "repeats": self.repeats, "samples_s": [r(s) for s in self.samples],
                "warmup_s": [r(s) for s in self.warmup]}


def percentile(samples: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) with linear interpolation between order statistics
    (numpy's default), so p10/p90 of a few samples are still defined."""
    if not samples:
        raise ValueError("percentile of no samples")
    if not 0 <= q <= 100:
        raise ValueError(f"q must be in [0, 100], got {q}")
    xs = sorted(samples)
    pos = (len(xs) - 1) * q / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return float(xs[lo] + (xs[hi] - xs[lo]) * (pos - lo))


def time_callable(fn: Callable[[], object], *, warmup: int, repeats: int,
                  sync: Callable[[], None] | None = None,
                  clock: Callable[[], float] = time.perf_counter) -> Timing:
    """Call ``fn`` ``warmup`` times, then ``repeats`` timed times; return the :class:`Timing`.

    Every call is bracketed by two clock reads and ``sync`` (e.g. ``torch.cuda.synchronize``)
    runs only right before the second one: GPU kernels are asynchronous, so the clock may
    stop only once the device is done, and nothing else may stall the device inside the
    measured region. Warm-up calls are timed the same way (so their queued kernels cannot
    leak into the first repeat, and compile time stays visible) but go to
    ``Timing.warmup``, never into the statistics.
    """
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0, got {warmup}")
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")

    def once() -> float:
        start = clock()
        fn()
        if sync is not None:
            sync()
        return clock() - start

    warm = tuple(once() for _ in range(warmup))
    return Timing(samples=tuple(once() for _ in range(repeats)), warmup=warm)
