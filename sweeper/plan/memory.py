"""Memory of one trial, estimated from the network's shapes, against the memory of a worker.

A point whose trial cannot fit in a worker is better refused by the plan, with both numbers,
than killed by the kernel hours into a sweep. For a point of ``P`` parameters, ``b`` bytes per
float (4 or 8) and a network whose layers produce ``A`` activations and whose convolutions
unfold ``U`` im2col values per image (both from :func:`cnn.spec.infer_shapes`)::

    memory = base                               # interpreter, NumPy, the Ray worker
           + images x C x H x W                  # the data set, raw uint8, train + validation + test
           + P x b x (3 + 2 x slots)             # weights, gradients, optimizer slots, a checkpoint
           + max(batch x (2A + 2U),              # a training step: outputs, gradients, im2col and its gradient
                 eval_batch x (A + U)) x b       # evaluation in batches of 1000: outputs and im2col
             x workspace                         # other convolution algorithms' buffers, the autotune's tries

``slots`` is 2 for Adam, 1 for SGD. ``workspace`` (:data:`WORKSPACE`) covers what a layer's first
step holds beyond im2col's buffers: the autotune runs the candidate algorithms (FFT spectra,
Winograd tiles) on the layer's own input before choosing, and what it tries and picks depends on
timings. With it, the estimate without base and data came to 1.1-1.9 times the traced peak of
two training steps and one evaluation batch on quickstart points (about 1.0-2.3 on a loaded
machine, where the autotune picks differently); without it, down to 0.77. As an estimate, it is compared against the whole memory of a worker. The plan, the same on every
machine, compares against ``resources.worker_memory`` when the sweep file states it; a run then
compares the points it is about to train against the workers it has (:func:`worker_memory`: this
machine's, or its container's, memory, or ``SWEEPER_WORKER_MEMORY`` for a cluster's worker nodes)
and leaves out, naming them, the ones that cannot fit.
"""
from __future__ import annotations

import math
import os
from functools import lru_cache
from typing import Optional

from cnn.spec import infer_shapes
from sweeper.spec.fields import parse_bytes

#: What a trial's process holds before its data and model (Python, NumPy, Ray's worker).
BASE_BYTES = 200 * 2 ** 20
#: Batch of ``cnn.evaluate`` (validation every epoch).
EVAL_BATCH = 1000
OPTIMIZER_SLOTS = {"adam": 2, "sgd": 1}
#: The step's arrays times this: room for the convolution algorithms' and the autotune's buffers.
WORKSPACE = 1.6
ENV = "SWEEPER_WORKER_MEMORY"


def trial_memory(point, sizes: Optional[tuple[int, int, int]] = None) -> int:
    """Estimated peak bytes of one trial of ``point`` (formula above); ``sizes``: image counts."""
    train = point.config["train"]
    floats = 8 if train["dtype"] == "float64" else 4
    layers = infer_shapes(point.spec)
    params = sum(layer.params for layer in layers)
    activations = sum(math.prod(layer.out_shape) for layer in layers)
    unfolded = sum(math.prod(layer.out_shape[1:]) * layer.in_shape[0] * math.prod(layer.config["kernel_size"])
                   for layer in layers if layer.kind == "conv")
    images = sum(sizes or (0, 0, 0)) * math.prod(point.spec.input_shape)
    slots = OPTIMIZER_SLOTS.get(train["optimizer"], 2)
    step = max(train["batch_size"] * (2 * activations + 2 * unfolded), EVAL_BATCH * (activations + unfolded))
    return BASE_BYTES + images + params * floats * (3 + 2 * slots) + int(step * floats * WORKSPACE)


@lru_cache(maxsize=None)
def _machine_memory() -> int:
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path) as fh:
                limit = fh.read().strip()
        except OSError:
            continue
        if limit.isdigit():
            total = min(total, int(limit))
    return total


def worker_memory() -> tuple[int, str]:
    """``(bytes, where from)`` of the workers this run trains on: ``SWEEPER_WORKER_MEMORY`` when set
    and valid, else this machine's (a run-time fact: the plan never reads it)."""
    text = os.environ.get(ENV, "")
    if text:
        try:
            return parse_bytes(text), f"{ENV}={text}"
        except ValueError:
            pass
    return _machine_memory(), f"this machine's memory; {ENV} or resources.worker_memory sets a cluster worker's"


def gigabytes(n: int) -> str:
    return f"{n / 2 ** 30:.1f} GiB" if n >= 2 ** 28 else f"{n / 2 ** 20:.0f} MiB"


def memory_problem(point, sizes: Optional[tuple[int, int, int]], have: int, source: str) -> Optional[str]:
    """Why ``point`` cannot run in a worker of ``have`` bytes (both numbers), or None when it fits."""
    need = trial_memory(point, sizes)
    if need <= have:
        return None
    return (f"needs about {gigabytes(need)} of memory per trial (estimated from its shapes: weights, "
            f"optimizer state, a batch of {point.config['train']['batch_size']} and evaluation in batches of "
            f"{EVAL_BATCH}), more than the {gigabytes(have)} a worker has ({source})")


__all__ = ["trial_memory", "worker_memory", "memory_problem", "parse_bytes", "BASE_BYTES", "EVAL_BATCH", "ENV"]
