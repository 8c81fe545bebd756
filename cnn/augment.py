"""Training-time augmentation of raw image batches: random crop with zero padding, horizontal flip.

Deterministic: :func:`cnn.fit` draws epoch ``e``'s augmentation from ``default_rng([seed, e, 1])``,
so a run resumed at epoch ``e`` augments exactly as an uninterrupted one.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Augment:
    """``crop_padding`` P > 0: pad every image by P zero pixels on each side and cut a random HxW
    window out of the (H + 2P) x (W + 2P) result; ``hflip``: mirror each image with probability 1/2."""

    crop_padding: int = 0
    hflip: bool = False

    def __post_init__(self):
        if not isinstance(self.crop_padding, int) or self.crop_padding < 0:
            raise ValueError(f"crop_padding must be an int >= 0, got {self.crop_padding!r}")

    def __bool__(self) -> bool:
        return self.crop_padding > 0 or self.hflip

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """A new batch (N, C, H, W) of ``x``'s dtype; ``x`` itself is never written."""
        n, c, h, w = x.shape
        if self.crop_padding:
            p = self.crop_padding
            padded = np.zeros((n, c, h + 2 * p, w + 2 * p), x.dtype)
            padded[:, :, p : p + h, p : p + w] = x
            top = rng.integers(0, 2 * p + 1, n)
            left = rng.integers(0, 2 * p + 1, n)
            rows = (top[:, None] + np.arange(h))[:, None, :, None]  # (N, 1, H, 1)
            cols = (left[:, None] + np.arange(w))[:, None, None, :]  # (N, 1, 1, W)
            x = padded[np.arange(n)[:, None, None, None], np.arange(c)[None, :, None, None], rows, cols]
        if self.hflip:
            flip = rng.random(n) < 0.5
            x = x.copy() if not self.crop_padding else x
            x[flip] = x[flip, :, :, ::-1]
        return x
