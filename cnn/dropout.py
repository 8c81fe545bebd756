"""Inverted dropout: in training, each unit is zeroed with probability ``p`` and the survivors are
scaled by ``1 / (1 - p)``, so evaluation (the identity) needs no rescaling, as PyTorch's ``nn.Dropout``.

    train:  m = (u >= p) / (1 - p),  u ~ U[0, 1) per unit     y = x * m      dx = dy * m
    eval:   y = x                                                             dx = dy

The mask is drawn from ``rng``, which :meth:`cnn.Model.train` sets (:func:`cnn.fit` hands every
epoch its own generator), so a run is reproducible and a resumed run draws what an uninterrupted
one would have.
"""
from __future__ import annotations

import numpy as np

from .layer import Layer


class Dropout(Layer):
    """``Dropout(p)`` with ``0 <= p < 1``; works on any shape, keeping the input's memory order."""

    def __init__(self, p: float = 0.5, *, rng=None, name: str = "dropout"):
        super().__init__(name)
        if not 0 <= p < 1:
            raise ValueError(f"{name}: dropout probability must be in [0, 1), got {p!r}")
        self.p = float(p)
        self.rng = np.random.default_rng(0) if rng is None else rng

    def forward(self, x: np.ndarray) -> np.ndarray:
        if not self.training or self.p == 0:
            self.cache = None
            return x
        keep = self.rng.random(x.shape, dtype=x.dtype if x.dtype in (np.float32, np.float64) else np.float64)
        mask = np.multiply(keep >= self.p, 1 / (1 - self.p), dtype=x.dtype)
        self.cache = mask
        return x * mask

    def backward(self, dy: np.ndarray) -> np.ndarray:
        mask, self.cache = self.cache, None
        return dy if mask is None else dy * mask
