"""Per-channel standardisation of raw pixels, fitted on a training split and saved with the model.

``x_norm[n, c] = (x[n, c] - mean[c]) / std[c]`` with ``mean`` and ``std`` in the units of the raw
pixels (0..255 for uint8). Training keeps the images raw (uint8: 4x smaller than float32) and
standardises one batch at a time, so no float copy of the whole set is ever made.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Normalizer:
    """Per-channel ``mean`` and ``std`` (tuples of C floats) of raw pixels."""

    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __post_init__(self):
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        if len(self.mean) != len(self.std) or not self.mean:
            raise ValueError(f"mean and std need one value per channel, got {self.mean} and {self.std}")
        if not all(np.isfinite(self.mean)) or not all(np.isfinite(s) and s > 0 for s in self.std):
            raise ValueError(f"mean must be finite and std finite and > 0, got {self.mean} and {self.std}")

    @classmethod
    def fit(cls, x: np.ndarray, chunk: int = 256) -> "Normalizer":
        """Mean and standard deviation of every channel of ``x`` (N, C, H, W), in float64 chunks
        (of ``chunk`` images: a float64 copy of the whole set would be 8x its uint8 size).

        A constant channel gets std 1 (it is only centred) rather than a division by zero.
        """
        if x.ndim != 4 or x.shape[0] == 0:
            raise ValueError(f"x must have shape (N, C, H, W) with N >= 1, got {x.shape}")
        total = np.zeros(x.shape[1])
        squares = np.zeros(x.shape[1])
        for i in range(0, x.shape[0], chunk):
            part = x[i : i + chunk].astype(np.float64)
            total += part.sum(axis=(0, 2, 3))
            squares += np.square(part).sum(axis=(0, 2, 3))
        count = x.shape[0] * x.shape[2] * x.shape[3]
        mean = total / count
        std = np.sqrt(np.maximum(squares / count - mean ** 2, 0.0))
        return cls(tuple(mean), tuple(np.where(std > 1e-6 * max(1.0, float(np.abs(mean).max())), std, 1.0)))

    def __call__(self, x: np.ndarray, dtype=np.float32) -> np.ndarray:
        """``(x - mean) / std`` per channel, as a new ``dtype`` array of x's shape (N, C, H, W)."""
        if x.ndim != 4 or x.shape[1] != len(self.mean):
            raise ValueError(f"expected images (N, {len(self.mean)}, H, W), got {x.shape}")
        out = x.astype(dtype)
        out -= np.asarray(self.mean, dtype)[:, None, None]
        out /= np.asarray(self.std, dtype)[:, None, None]
        return out

    def undo(self, x: np.ndarray, dtype=np.float32) -> np.ndarray:
        """Raw pixels back from ``x`` (N, C, H, W) standardised by this normaliser: ``x * std + mean``."""
        if x.ndim != 4 or x.shape[1] != len(self.mean):
            raise ValueError(f"expected images (N, {len(self.mean)}, H, W), got {x.shape}")
        out = x.astype(dtype)
        out *= np.asarray(self.std, dtype)[:, None, None]
        out += np.asarray(self.mean, dtype)[:, None, None]
        return out

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {"mean": np.array(self.mean), "std": np.array(self.std)}
