"""Fold a ReLU into the layers around it, so that it costs no pass over the activations of its own.

A conv block is convolution -> ReLU -> pooling. Run as three layers, the ReLU reads and writes
the whole activation twice forward (its mask, then the product) and once backward. Fused:

- the convolution applies ``max(y, 0)`` to its own fresh output, in the pass that writes it (or
  right after, while it is in cache): the ReLU layer's forward is the identity;
- the pooling layer applies ReLU's backward, where it costs least: max pooling masks the pooled
  gradient (a window's maximum after ReLU is > 0 exactly when the unit it picks was active:
  ``k*k`` times fewer elements); L2 pooling needs nothing (its gradient ``dy * x / y`` is already 0
  where ReLU zeroed ``x``); average pooling multiplies by ``x > 0`` in the pass that spreads the
  gradient. The ReLU layer's backward is then the identity too.

A convolution followed by a ReLU but no pooling still applies the ReLU itself; the ReLU layer
then keeps only the mask for its backward. Results are identical to the unfused layers (the same
operations on the same numbers). The layers stay in the model under their names, so profiles,
state dicts and checkpoints do not change.
"""
from __future__ import annotations

from .activations import ReLU
from .conv import Conv2D
from .pool import Pool2D


def fuse_activations(layers: list) -> int:
    """Link every ``Conv2D -> ReLU [-> Pool2D]`` run of ``layers`` (in place); the number linked."""
    linked = 0
    for i in range(len(layers) - 1):
        conv, relu = layers[i], layers[i + 1]
        if not (isinstance(conv, Conv2D) and type(relu) is ReLU):
            continue
        pool = layers[i + 2] if i + 2 < len(layers) and type(layers[i + 2]) is Pool2D else None
        conv.activation = "relu"
        relu.fused = "pool" if pool is not None else "mask"
        if pool is not None:
            pool.relu_input = True
        linked += 1
    return linked
