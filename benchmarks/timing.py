"""Wall-clock medians of alternated repetitions, robust to a shared, noisy machine.

Each repetition times a batch of consecutive calls; the candidates run in turn (A B, then B A, ...)
so drift in the machine's speed (other tenants, frequency scaling) hits both sides alike.
"""
from __future__ import annotations

import statistics
import time
from typing import Callable


def calibrate(fn: Callable[[], object], target_s: float) -> int:
    """How many calls of ``fn`` take about ``target_s`` seconds (at least 1)."""
    t0 = time.perf_counter()
    fn()
    once = time.perf_counter() - t0
    return max(1, int(target_s / max(once, 1e-9)))


def time_calls(fn: Callable[[], object], calls: int) -> float:
    """Seconds per call over ``calls`` consecutive calls."""
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - t0) / calls


def alternate(candidates: dict[str, Callable[[], object]], reps: int, warmup: int = 1,
              target_s: float = 0.25) -> dict[str, list[float]]:
    """Seconds per call of each candidate, ``reps`` samples each, taken in alternating order."""
    names = list(candidates)
    for name in names:
        for _ in range(warmup):
            candidates[name]()
    calls = {name: calibrate(candidates[name], target_s) for name in names}
    samples: dict[str, list[float]] = {name: [] for name in names}
    for rep in range(reps):
        order = names if rep % 2 == 0 else names[::-1]
        for name in order:
            samples[name].append(time_calls(candidates[name], calls[name]))
    return samples


def median(values) -> float:
    return float(statistics.median(values))


def geomean(values) -> float:
    import math
    values = list(values)
    return float(math.exp(sum(math.log(v) for v in values) / len(values))) if values else float("nan")
