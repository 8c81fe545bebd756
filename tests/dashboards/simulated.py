"""Sweeps with known effects, as the run frames :func:`ledger.load_runs` returns (no store needed).

Truth: ``val = 0.95 + STRONG[kernel_size] + SMALL[pooling] + r_k + e``, depth has no effect
(the null knob); ``r_k`` ~ N(0, 0.003) is shared by repeat k of every point (the paired seed),
``e`` ~ N(0, NOISE) per trial. The grid is unbalanced (two points missing, as infeasible points
would be). :data:`TRAP` scores best on test but only average on validation. ``val_loss`` is
``1 - val``. :func:`runs` takes other kernel effects (``strong``: kernel size -> effect; the
missing points are those of the largest kernel at depth 16) and a bonus for single points.
"""
from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

STRONG = {3: 0.0, 5: 0.015, 7: 0.006}
SMALL = {"max": 0.002, "avg": 0.0}
DEPTHS = (4, 8, 16)
NOISE = 0.004
REPEATS = 3
MISSING = {(7, 16, "max"), (7, 16, "avg")}  # infeasible: the grid is unbalanced (the largest kernel at depth 16)
TRAP = (3, 8, "avg")


def true_mean(kernel: int, depth: int, pooling: str, strong: dict = STRONG) -> float:
    return 0.95 + strong[kernel] + SMALL[pooling]


def points(strong: dict = STRONG) -> list[tuple]:
    missing = {(max(strong), 16, pooling) for pooling in SMALL}
    return [p for p in itertools.product(strong, DEPTHS, SMALL) if p not in missing]


def runs(seed: int, repeats: int = REPEATS, strong: dict = STRONG, bonus: dict | None = None) -> pd.DataFrame:
    """``bonus``: (kernel, depth, pooling) -> an effect of that point alone (an interaction)."""
    rng = np.random.default_rng(seed)
    shared = rng.normal(0, 0.003, repeats)
    rows = []
    for i, (kernel, depth, pooling) in enumerate(points(strong)):
        extra = (bonus or {}).get((kernel, depth, pooling), 0.0)
        for repeat in range(repeats):
            val = true_mean(kernel, depth, pooling, strong) + extra + shared[repeat] + rng.normal(0, NOISE)
            test = 0.999 if (kernel, depth, pooling) == TRAP else val + rng.normal(0, 0.003)
            rows.append({"run_id": f"r{i}-{repeat}", "run_name": f"k{kernel} d{depth} {pooling} #{repeat + 1}",
                         "status": "FINISHED", "point": f"p{i:03d}", "point_name": f"k{kernel} d{depth} {pooling}",
                         "repeat": repeat, "duplicate": False, "kernel_size": kernel, "depth": depth,
                         "pooling": pooling, "val_accuracy": val, "val_loss": 1 - val, "test_accuracy": test,
                         "train_accuracy": val + 0.005, "train_seconds": 1.0 + kernel * depth / 10,
                         "forward_flops": kernel * kernel * depth * 1000, "n_params": kernel * depth * 100,
                         "trial_seed": 1000 + repeat})
    frame = pd.DataFrame(rows)
    frame["start_time"] = pd.to_datetime(np.arange(len(frame)), unit="s", utc=True)
    frame = frame.astype({"kernel_size": "Int64", "depth": "Int64", "repeat": "Int64", "forward_flops": "Int64",
                          "n_params": "Int64"})
    frame.attrs.update(swept=["kernel_size", "depth", "pooling"], hyperparameters=["kernel_size", "depth", "pooling"])
    return frame
