"""Peak memory of one training step against the bytes its buffers need in theory.

NumPy reports its array allocations to ``tracemalloc``, so the traced peak over two steps, minus
what was alive before them (parameters, the batch) and the optimizer's state, is the step's own
footprint, scratch buffers that layers keep from one step to the next included. The theoretical need of a step, for a batch of ``N``:

    kept for the backward:  every convolution's im2col matrix  N*OH*OW * C*kh*kw
                            every layer's output               N * prod(out_shape)
    largest transient:      one convolution's input-gradient columns (the same size as its
                            im2col matrix), the biggest over the convolutions that compute dx
"""
from __future__ import annotations

import tracemalloc

import numpy as np

import cnn


def theoretical_bytes(model: cnn.Model, n: int) -> dict:
    item = model.dtype.itemsize
    cols, outputs, transient = 0, 0, 0
    layers = {layer.name: layer for layer in model.layers}
    for info in model.shapes:
        outputs += n * int(np.prod(info.out_shape)) * item
        if info.kind == "conv":
            k, (oh, ow) = info.config["kernel_size"], info.out_shape[1:]
            size = n * oh * ow * info.in_shape[0] * k[0] * k[1] * item
            cols += size
            if layers[info.name].needs_input_grad:
                transient = max(transient, size)
    return {"im2col_bytes": cols, "activation_bytes": outputs, "transient_bytes": transient,
            "total_bytes": cols + outputs + transient}


def step_peak_bytes(make_step, x, y) -> int:
    """Bytes allocated at the peak of a training step, scratch buffers kept between steps included.

    ``make_step()`` builds the trainer (model and optimizer). Tracing starts before its first
    step, so buffers a layer allocates once and reuses count; the optimizer's own state (Adam's
    two moments) is not the step's working memory and is subtracted.
    """
    tracemalloc.start()
    try:
        step, optimizer_bytes = make_step()
        base, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        step(x, y)
        step(x, y)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak - base - optimizer_bytes()
