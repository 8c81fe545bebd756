"""Cost of a plan: FLOPs per trial from the model's shape inference, seconds from a measured rate.

A trial costs ``3 x forward FLOPs x train images x epochs`` (backward is about twice the forward)
plus the forward passes over the validation set every epoch and the test set once. Seconds come
from this machine's single-thread float32 matmul rate, measured once, times the efficiency that
training reaches: the one ``make bench`` measured on this machine (:func:`calibrated_efficiency`,
``~/.cache/cnn-sweeper/calibration.json``), else :data:`EFFICIENCY`. The executor dispatches the
longest trials first (:func:`longest_first`), the order the makespan below assumes.
"""
from __future__ import annotations

import heapq
import json
import math
import os
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Optional

import numpy as np

if TYPE_CHECKING:
    from sweeper.spec.config import SweepConfig
    from sweeper.plan.points import Plan, Point

#: Fraction of the single-thread float32 matmul rate that training reaches (im2col copies, the
#: elementwise layers, pooling, Python overhead around small matmuls) when this machine has no
#: calibration file. The estimate scales as 1 / efficiency. ``benchmarks.calibrate`` measured
#: medians of 0.14 (Intel Xeon) and 0.22 (AMD EPYC) on the project's 2-core machines: the lower
#: one, so that an uncalibrated ETA errs long.
EFFICIENCY = 0.14
#: Written by ``python -m benchmarks.calibrate`` (``make bench``): {"efficiency": ..., "cpu": ...}.
CALIBRATION_ENV = "CNN_SWEEPER_CALIBRATION"
#: float64 matmuls run at about half the float32 rate.
DTYPE_SLOWDOWN = {"float32": 1.0, "float64": 2.0}


@lru_cache(maxsize=None)
def measure_flops_per_cpu(seconds: float = 0.2) -> float:
    """Single-thread float32 matmul FLOP/s on this machine, measured once per process."""
    try:
        from threadpoolctl import threadpool_limits
        limit = threadpool_limits(1)
    except ImportError:  # then BLAS may use every core and the rate is optimistic
        limit = None
    try:
        rng = np.random.default_rng(0)
        n = 256
        a, b = rng.standard_normal((n, n), dtype=np.float32), rng.standard_normal((n, n), dtype=np.float32)
        a @ b  # warm up the BLAS
        count, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds:
            a @ b
            count += 1
        return 2 * n ** 3 * count / elapsed
    finally:
        if limit is not None:
            limit.restore_original_limits()


def calibration_path() -> str:
    return os.environ.get(CALIBRATION_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "cnn-sweeper",
                                                          "calibration.json")


@lru_cache(maxsize=None)
def calibrated_efficiency(path: Optional[str] = None) -> tuple[float, str]:
    """``(efficiency, source)``: the measured one from the calibration file, else :data:`EFFICIENCY`.

    A file that is missing, unreadable or out of range (0, 1] falls back to the default: an
    estimate must never stop a plan.
    """
    path = path or calibration_path()
    try:
        with open(path) as fh:
            value = float(json.load(fh)["efficiency"])
        if 0 < value <= 1:
            return value, f"measured by `make bench` ({path})"
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return EFFICIENCY, "default, not calibrated on this machine (`make bench` measures it)"


def relative_cost(trial, config: "SweepConfig") -> float:
    """FLOPs of one trial scaled by its dtype: proportional to its estimated seconds."""
    return trial_flops(trial.point, config) * DTYPE_SLOWDOWN[trial.point.config["train"]["dtype"]]


def longest_first(trials, config: "SweepConfig") -> list:
    """``trials`` in decreasing estimated cost (ties keep their order): a long trial started last
    would leave the other CPUs idle at the end of the sweep."""
    return sorted(trials, key=lambda t: -relative_cost(t, config))


@dataclass(frozen=True)
class CostEstimate:
    """FLOPs and seconds per point hash, and totals for the pending trials."""

    flops_per_cpu: float  # measured matmul rate, before the efficiency
    trial_flops: dict  # point hash -> FLOPs of one trial
    trial_seconds: dict  # point hash -> seconds of one trial on cpus_per_trial CPUs
    pending_flops: float
    cpu_seconds: float  # of the pending trials
    concurrency: int
    wall_seconds: float
    efficiency: float = EFFICIENCY
    efficiency_source: str = ""
    #: With early stopping: the share of the pending trials' epochs ASHA is expected to train
    #: (:func:`asha_share`), and the CPU and wall time that share takes; None without it.
    asha_share: Optional[float] = None
    asha_cpu_seconds: Optional[float] = None
    asha_wall_seconds: Optional[float] = None


def rung_epochs(grace: int, reduction_factor: int, epochs: int) -> list[int]:
    """The epochs at which ASHA decides (:class:`sweeper.trials.asha.Rungs`): ``grace * rf**k`` below ``epochs``."""
    rungs, m = [], grace
    while m < epochs:
        rungs.append(m)
        m *= reduction_factor
    return rungs


def asha_share(trials: int, grace: int, reduction_factor: int, epochs: int, draws: int = 200_000) -> float:
    """Expected share of ``trials x epochs`` epochs that ASHA's rule trains, trials arriving one by one.

    The ``i``-th trial to reach a rung goes on when it is at or above the ``1 - 1/rf`` percentile
    (linear interpolation) of the ``i`` values recorded there so far, that is when its rank among
    them (0 the lowest) is at least ``ceil((1 - 1/rf)(i - 1))``: the first trials at a rung pass
    more often than ``1/rf``. Averaged over random orders of scores (a fixed generator, so a plan
    is reproducible; about ``draws`` rank insertions in all), trials of equal length.
    """
    import bisect

    rungs = rung_epochs(grace, reduction_factor, epochs)
    if trials < 1 or not rungs:
        return 1.0
    q = 1 - 1 / reduction_factor
    rng = np.random.default_rng(0)
    reps = max(5, min(2000, draws // (trials * len(rungs))))
    total = 0
    for _ in range(reps):
        scores, previous = list(rng.random(trials)), 0
        for rung in rungs:
            total += len(scores) * (rung - previous)
            seen, passing = [], []
            for score in scores:
                bisect.insort(seen, score)
                if bisect.bisect_left(seen, score) >= math.ceil(q * (len(seen) - 1) - 1e-9):
                    passing.append(score)
            scores, previous = passing, rung
        total += len(scores) * (epochs - previous)
    return total / (reps * trials * epochs)


def trial_flops(point: Point, config: SweepConfig, sizes: Optional[tuple[int, int, int]] = None) -> int:
    """3 x forward x train images x epochs (forward + backward) + forward on validation every
    epoch + forward on the test set once; ``sizes``: (train, val, test) images, default the config's."""
    train, val, test = sizes or config.data.sizes() or (0, 0, 0)
    epochs = point.config["train"]["epochs"]
    return point.flops * (3 * train * epochs + val * epochs + test)


def _makespan(durations: list[float], slots: int) -> float:
    """Longest-first list scheduling of ``durations`` on ``slots`` workers."""
    loads = [0.0] * max(1, slots)
    for d in sorted(durations, reverse=True):
        heapq.heappush(loads, heapq.heappop(loads) + d)
    return max(loads)


def estimate_cost(plan: "Plan", flops_per_cpu: Optional[float] = None) -> CostEstimate:
    config = plan.config
    rate = flops_per_cpu or measure_flops_per_cpu()
    efficiency, source = calibrated_efficiency()
    cpus = config.resources.cpus_per_trial
    flops, seconds = {}, {}
    for point in plan.points:
        flops[point.hash] = trial_flops(point, config, plan.sizes())
        slowdown = DTYPE_SLOWDOWN[point.config["train"]["dtype"]]
        seconds[point.hash] = flops[point.hash] * slowdown / (rate * efficiency * cpus)
    pending = [seconds[t.point.hash] for t in plan.pending]
    slots = max(1, plan.total_cpus // cpus)
    if config.resources.max_concurrent:
        slots = min(slots, config.resources.max_concurrent)
    slots = max(1, min(slots, len(pending)))
    asha = {}
    rule = config.early_stopping
    if rule is not None and pending:
        epochs = max(t.point.config["train"]["epochs"] for t in plan.pending)
        share = asha_share(len(pending), rule.grace_epochs, rule.reduction_factor, epochs)
        cpu = sum(pending) * share
        # Trials stop early, so the CPUs stay busy to the end; no shorter than one trial to the end.
        asha = dict(asha_share=share, asha_cpu_seconds=cpu * cpus,
                    asha_wall_seconds=max(cpu / slots, max(pending)))
    return CostEstimate(rate, flops, seconds, float(sum(flops[t.point.hash] for t in plan.pending)),
                        sum(pending) * cpus, slots, _makespan(pending, slots) if pending else 0.0,
                        efficiency, source, **asha)


def duration(seconds: float) -> str:
    """``42s``, ``3m05s``, ``2h07m``."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"
