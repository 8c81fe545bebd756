"""Fully connected layers and the flatten between the conv blocks and them.

    Dense: x (N, in) -> y = x @ W.T + b (N, out); W (out, in) as in PyTorch's nn.Linear
           dW = dy.T @ x    db = dy.sum(0)    dx = dy @ W

With more than one kernel thread the batch's rows are split over them, each part's products on
one BLAS thread (see :mod:`cnn.threads`): these products are small, and the BLAS's own threads
would meet at every one of them.
"""
from __future__ import annotations

from functools import partial

import numpy as np

from . import threads
from .layer import Layer
from .layout import empty_ordered, memory_order


class Flatten(Layer):
    """``(N, C, H, W)`` -> ``(N, C*H*W)`` in C order, as ``torch.flatten(x, 1)``."""

    def __init__(self, *, name: str = "flatten"):
        super().__init__(name)

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.cache = (x.shape, memory_order(x))
        return x.reshape(x.shape[0], -1)

    def backward(self, dy: np.ndarray) -> np.ndarray:
        (shape, order), self.cache = self.cache, None
        # Back in the input's memory order (batch-last after a convolution): the layers below
        # then work on long contiguous runs instead of mixing two orders.
        dx = empty_ordered(shape, order, dy.dtype)
        dx[...] = dy.reshape(shape)
        return dx


class Dense(Layer):
    """``Dense(in_features, out_features)`` with He-initialised weights and zero bias."""

    def __init__(self, in_features: int, out_features: int, *, rng=None, dtype=np.float32, name: str = "dense"):
        super().__init__(name)
        self.in_features, self.out_features = int(in_features), int(out_features)
        rng = np.random.default_rng(0) if rng is None else rng
        w = rng.standard_normal((out_features, in_features)) * np.sqrt(2.0 / in_features)
        self.params = {"W": w.astype(dtype), "b": np.zeros(out_features, dtype=dtype)}

    def forward(self, x: np.ndarray) -> np.ndarray:
        if x.ndim != 2 or x.shape[1] != self.in_features:
            raise ValueError(f"{self.name}: expected input (N, {self.in_features}), got {x.shape}")
        self.cache = x
        w, b = self.params["W"], self.params["b"]
        parts = threads.batch_parts(x.shape[0], threads.kernel_threads())
        if len(parts) == 1:
            y = x @ w.T
            y += b
            return y
        y = np.empty((x.shape[0], self.out_features), dtype=np.result_type(x, w))

        def part(a, z):
            np.matmul(x[a:z], w.T, out=y[a:z])
            y[a:z] += b

        with threads.serial_blas():
            threads.run_all([partial(part, a, z) for a, z in parts])
        return y

    def backward(self, dy: np.ndarray) -> np.ndarray:
        x, self.cache = self.cache, None
        w = self.params["W"]
        parts = threads.batch_parts(x.shape[0], threads.kernel_threads())
        if len(parts) == 1:
            self.grads = {"W": dy.T @ x, "b": dy.sum(axis=0)}
            return dy @ w
        dx = np.empty(x.shape, dtype=np.result_type(dy, w))

        def part(a, z):
            np.matmul(dy[a:z], w, out=dx[a:z])
            return dy[a:z].T @ x[a:z], dy[a:z].sum(axis=0)

        with threads.serial_blas():
            done = threads.run_all([partial(part, a, z) for a, z in parts])
        self.grads = {"W": sum(d[0] for d in done[1:]) + done[0][0], "b": sum(d[1] for d in done[1:]) + done[0][1]}
        return dx
