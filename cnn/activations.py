"""Element-wise activations. The lecture contrasts them: sigmoid's slope is at most 1/4, so deltas
shrink layer after layer (vanishing gradients); ReLU's slope is 1 wherever the unit is active.

    relu:     y = max(x, 0)              dx = dy * (x > 0)      (the gradient at 0 is 0, as in PyTorch)
    sigmoid:  y = 1 / (1 + exp(-x))      dx = dy * y * (1 - y)
"""
from __future__ import annotations

import numpy as np

from .layer import Layer


class ReLU(Layer):
    def __init__(self, *, name: str = "relu"):
        super().__init__(name)

    def forward(self, x: np.ndarray) -> np.ndarray:
        mask = x > 0
        self.cache = mask
        return np.multiply(x, mask, dtype=x.dtype)

    def backward(self, dy: np.ndarray) -> np.ndarray:
        mask, self.cache = self.cache, None
        return np.multiply(dy, mask, dtype=dy.dtype)


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
