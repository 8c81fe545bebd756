"""Each convolution's forward + backward rate as a fraction of the matmul rate, the two timed in turn.

On a machine shared with busy neighbours a matmul rate measured once, before the layers, is not the
rate the layers later ran against: the fraction is taken pair by pair instead. For every conv layer
of an architecture: its forward and backward on a real input (the model's earlier layers applied to
a random batch, in the batch-last memory the layers hand each other) alternated with a square
float32 matmul, ``reps`` pairs; the fraction is the median over pairs of
``(layer FLOPs / layer seconds) / (matmul FLOPs / matmul seconds)``.
Layer FLOPs: forward ``2 x OH x OW x F x C x kh x kw`` per image, backward twice that (dW and dx),
or once for the first layer (no dx).
"""
from __future__ import annotations

import numpy as np

import cnn
from cnn.layout import empty_as

from . import archs
from .steps import random_batch
from .timing import calibrate, time_calls


def conv_layers(name: str, n: int):
    """``(layer, input, output gradient, FLOPs of forward + backward)`` for each conv of ``name``."""
    model = cnn.Model(archs.spec_for(name), seed=0)
    infos = {i.name: i for i in model.shapes}
    x, _ = random_batch(n)
    rng = np.random.default_rng(1)
    out = []
    for layer in model.layers:
        if isinstance(layer, cnn.Conv2D):
            y = layer.forward(x)
            dy = empty_as(y)
            dy[...] = rng.standard_normal(y.shape, dtype=np.float32)
            flops = infos[layer.name].flops * n * (3 if layer.needs_input_grad else 2)
            out.append((layer, x, dy, flops))
            x = y
        else:
            x = layer.forward(x)
    return out


def alternated_fractions(names, n: int, reps: int = 7, size: int = 512, target_s: float = 0.2) -> list[dict]:
    rng = np.random.default_rng(0)
    a, b = (rng.random((size, size), dtype=np.float32) for _ in range(2))
    c = np.empty((size, size), dtype=np.float32)
    mm = lambda: np.matmul(a, b, out=c)  # noqa: E731
    mm_flops = 2 * size ** 3
    rows = []
    for name in names:
        for layer, x, dy, flops in conv_layers(name, n):
            def step(layer=layer, x=x, dy=dy):
                layer.forward(x)
                layer.backward(dy)
            step(), mm()
            calls = {"layer": calibrate(step, target_s), "mm": calibrate(mm, target_s)}
            ratios = []
            for rep in range(reps):
                order = ("layer", "mm") if rep % 2 == 0 else ("mm", "layer")
                t = {k: time_calls(step if k == "layer" else mm, calls[k]) for k in order}
                ratios.append((flops / t["layer"]) / (mm_flops / t["mm"]))
            rows.append({"arch": name, "layer": layer.name, "in_channels": layer.in_channels,
                         "algorithms": f"{layer.chosen.get('forward')}/{layer.chosen.get('backward')}",
                         "out_channels": layer.out_channels, "fraction": float(np.median(ratios)),
                         "fraction_min": float(min(ratios)), "fraction_max": float(max(ratios)),
                         "target_applies": layer.in_channels >= 8})
    return rows
