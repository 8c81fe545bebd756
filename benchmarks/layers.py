"""Each layer's forward and backward time and its share of a training step, for the NumPy model.

Convolution arithmetic rate: ``LayerInfo.flops`` is the forward FLOPs per image; the backward
does two matmuls of the same size (dW and dx), or one for the first convolution, which skips dx.
"""
from __future__ import annotations

import time


import cnn

from .timing import median


def profile_layers(model: cnn.Model, x, y, reps: int, lr: float = 1e-3) -> dict:
    """Median forward and backward seconds of every layer, plus the loss and the update."""
    opt = cnn.Adam(lr)
    names = [layer.name for layer in model.layers]
    fwd = {n: [] for n in names}
    bwd = {n: [] for n in names}
    extra = {"loss": [], "update": [], "step": []}
    for rep in range(reps + 1):  # the first pass warms caches and allocators; it is dropped
        t_step = time.perf_counter()
        h = x
        for layer in model.layers:
            t0 = time.perf_counter()
            h = layer.forward(h)
            fwd[layer.name].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        _, d = cnn.softmax_cross_entropy(h, y)
        extra["loss"].append(time.perf_counter() - t0)
        for layer in reversed(model.layers):
            t0 = time.perf_counter()
            d = layer.backward(d)
            bwd[layer.name].append(time.perf_counter() - t0)
            if d is None:
                break
        t0 = time.perf_counter()
        opt.step(model)
        extra["update"].append(time.perf_counter() - t0)
        extra["step"].append(time.perf_counter() - t_step)
        if rep == 0:
            for series in (*fwd.values(), *bwd.values(), *extra.values()):
                series.clear()
    step = median(extra["step"])
    infos = {info.name: info for info in model.shapes}
    n = x.shape[0]
    rows = []
    for layer in model.layers:
        f = median(fwd[layer.name])
        b = median(bwd[layer.name]) if bwd[layer.name] else 0.0
        row = {"layer": layer.name, "forward_s": f, "backward_s": b, "share": (f + b) / step}
        if isinstance(layer, cnn.Conv2D):
            info = infos[layer.name]
            flops = info.flops * n * (3 if layer.needs_input_grad else 2)
            row.update(channels=min(layer.in_channels, layer.out_channels), in_channels=layer.in_channels,
                       out_channels=layer.out_channels, computes_dx=layer.needs_input_grad, flops=flops, flops_per_s=flops / (f + b))
        rows.append(row)
    for key in ("loss", "update"):
        t = median(extra[key])
        rows.append({"layer": key, "forward_s": t, "backward_s": 0.0, "share": t / step})
    return {"step_s": step, "layers": rows}
