"""The machine's own NumPy float32 matrix-multiply rate, measured in the same run.

``peak``: one large square product, the best the BLAS does on this machine. ``for_conv``: the three
products an im2col convolution of a given layer needs (forward, dW, dx) on contiguous operands,
the best an im2col convolution could do at that layer's sizes.
"""
from __future__ import annotations

import numpy as np

from .timing import alternate, median


def _rate(fns_and_flops, reps: int, target_s: float) -> float:
    flops = sum(f for _, f in fns_and_flops)
    fns = [fn for fn, _ in fns_and_flops]

    def run():
        for fn in fns:
            fn()

    seconds = median(alternate({"mm": run}, reps, warmup=1, target_s=target_s)["mm"])
    return flops / seconds


def peak_rate(size: int = 1024, reps: int = 5, target_s: float = 0.2) -> float:
    rng = np.random.default_rng(0)
    a = rng.random((size, size), dtype=np.float32)
    b = rng.random((size, size), dtype=np.float32)
    out = np.empty((size, size), dtype=np.float32)
    return _rate([(lambda: np.matmul(a, b, out=out), 2 * size**3)], reps, target_s)


def conv_rate(m: int, k: int, f: int, with_dx: bool, reps: int = 5, target_s: float = 0.2) -> float:
    """FLOP/s of the im2col products for ``cols (m, k)`` and ``W (f, k)``."""
    rng = np.random.default_rng(0)
    cols = rng.random((m, k), dtype=np.float32)
    w = rng.random((f, k), dtype=np.float32)
    dy = rng.random((m, f), dtype=np.float32)
    work = [(lambda: cols @ w.T, 2 * m * k * f), (lambda: dy.T @ cols, 2 * m * k * f)]
    if with_dx:
        work.append((lambda: dy @ w, 2 * m * k * f))
    return _rate(work, reps, target_s)
