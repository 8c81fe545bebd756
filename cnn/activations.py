"""Element-wise activations. The lecture contrasts them: sigmoid's slope is at most 1/4, so deltas
shrink layer after layer (vanishing gradients); ReLU's slope is 1 wherever the unit is active.

    relu:     y = max(x, 0)              dx = dy * (x > 0)      (the gradient at 0 is 0, as in PyTorch)
    sigmoid:  y = 1 / (1 + exp(-x))      dx = dy * y * (1 - y)
"""
from __future__ import annotations

import numpy as np

from .layer import Layer


class ReLU(Layer):
    """``fused`` (set by :func:`cnn.fuse.fuse_activations`): None, a layer of its own; ``"mask"``,
    the convolution before applied it (forward: identity, backward: the mask); ``"pool"``, the
    pooling after applies the backward too (both ways: identity)."""

    def __init__(self, *, name: str = "relu"):
        super().__init__(name)
        self.fused: str | None = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        if self.fused:
            self.cache = x if self.fused == "mask" else None
            return x
        y = np.maximum(x, 0)  # keeps x's memory order (ufuncs default to order "K")
        self.cache = y
        return y

    def backward(self, dy: np.ndarray) -> np.ndarray:
        y, self.cache = self.cache, None
        if self.fused == "pool":
            return dy
        return relu_backward(dy, y)


def relu_backward(dy: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``dy * (y > 0)`` for ReLU's output ``y``, in ``y``'s memory order."""
    return np.multiply(dy, y > 0, dtype=dy.dtype)


def sigmoid(x: np.ndarray) -> np.ndarray:
    # exp of -|x| never overflows, and e / (1 + e) keeps full relative precision for x << 0.
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(x.dtype, copy=False)


class Sigmoid(Layer):
    def __init__(self, *, name: str = "sigmoid"):
        super().__init__(name)

    def forward(self, x: np.ndarray) -> np.ndarray:
        y = sigmoid(x)
        self.cache = y
        return y

    def backward(self, dy: np.ndarray) -> np.ndarray:
        y, self.cache = self.cache, None
        return dy * y * (1 - y)


ACTIVATIONS = {"relu": ReLU, "sigmoid": Sigmoid}
