"""Pooling by max, average and L2 over ``kh x kw`` windows, vectorised over strided slices.

Shapes: ``x (N, C, H, W)`` -> ``y (N, C, OH, OW)``, ``OH = (H + 2P - kh) // S + 1``. Every window
is the sum over its ``kh * kw`` offsets ``(i, j)`` of the strided slice
``xp[:, :, i : i + S*OH : S, j : j + S*OW : S]``; looping over offsets (not pixels) keeps each step
one whole-array operation, which is ~30x faster than reducing over a window view.

    max:  y = max_ij xp_ij            dx_ij += dy where (i, j) is the window's first maximum
    avg:  y = sum_ij xp_ij / (kh*kw)  dx_ij += dy / (kh*kw)     (padded zeros count)
    l2:   y = sqrt(sum_ij xp_ij^2)    dx_ij += dy * xp_ij / y   (0 where y == 0, never NaN)
"""
from __future__ import annotations

import numpy as np

from .geometry import pair, positive_pair
from .im2col import conv_geometry, pad_input
from .layer import Layer

MODES = ("max", "avg", "l2")


class Pool2D(Layer):
    """``Pool2D(mode, size=2, stride=None, padding=0)``; ``stride`` defaults to ``size``.

    Max pooling pads with ``-inf``, average and L2 with zeros. ``padding`` may be at most half the
    window, as in PyTorch, so every window holds at least one real pixel.
    """

    def __init__(self, mode: str, size=2, stride=None, padding=0, *, name: str = "pool"):
        super().__init__(name)
        if mode not in MODES:
            raise ValueError(f"{name}: pooling mode must be one of {', '.join(MODES)}, got {mode!r}")
        self.mode = mode
        self.size = positive_pair(size, f"{name} size")
        self.stride = self.size if stride is None else positive_pair(stride, f"{name} stride")
        self.padding = pair(padding, f"{name} padding")
        if any(p < 0 or p > k // 2 for p, k in zip(self.padding, self.size)):
            raise ValueError(f"{name}: padding {padding!r} must be between 0 and half the window {self.size}")

    def _slices(self, out_hw):
        (kh, kw), (sh, sw) = self.size, self.stride
        oh, ow = out_hw
        return [(slice(i, i + sh * oh, sh), slice(j, j + sw * ow, sw)) for i in range(kh) for j in range(kw)]

    def forward(self, x: np.ndarray) -> np.ndarray:
        k, s, pad, out_hw = conv_geometry(x.shape, self.size, self.stride, self.padding)
        xp = pad_input(x, pad, -np.inf if self.mode == "max" else 0.0)
        slices = self._slices(out_hw)
        first = xp[:, :, slices[0][0], slices[0][1]]
        if self.mode == "max":
            y = first.copy()
            # Index of the first maximum in row-major window order; strict ">" keeps earlier ties.
            arg = np.zeros(y.shape, dtype=np.uint8 if len(slices) < 256 else np.int32)
            for idx, (rs, cs) in enumerate(slices[1:], start=1):
                window = xp[:, :, rs, cs]
                np.copyto(arg, idx, where=window > y)
                np.maximum(y, window, out=y)
            self.cache = (x.shape, pad, out_hw, arg, None, None)
            return y
        if self.mode == "avg":
            y = first.copy()
            for rs, cs in slices[1:]:
                y += xp[:, :, rs, cs]
            y /= k[0] * k[1]
            self.cache = (x.shape, pad, out_hw, None, None, None)
            return y
        y = np.square(first)
        for rs, cs in slices[1:]:
            y += np.square(xp[:, :, rs, cs])
        np.sqrt(y, out=y)
        self.cache = (x.shape, pad, out_hw, None, xp, y)
        return y

    def backward(self, dy: np.ndarray) -> np.ndarray:
        x_shape, pad, out_hw, arg, xp, y = self.cache
        self.cache = None
        n, c, h, w = x_shape
        dxp = np.zeros((n, c, h + pad[0][0] + pad[0][1], w + pad[1][0] + pad[1][1]), dtype=dy.dtype)
        slices = self._slices(out_hw)
        if self.mode == "max":
            zero = np.zeros((), dtype=dy.dtype)
            for idx, (rs, cs) in enumerate(slices):
                dxp[:, :, rs, cs] += np.where(arg == idx, dy, zero)
        elif self.mode == "avg":
            g = dy / (self.size[0] * self.size[1])
            for rs, cs in slices:
                dxp[:, :, rs, cs] += g
        else:
            # d sqrt(sum x^2) / dx = x / y; an all-zero window has y == 0 and gets 0, not NaN.
            g = np.divide(dy, y, out=np.zeros_like(dy), where=y > 0)
            for rs, cs in slices:
                dxp[:, :, rs, cs] += g * xp[:, :, rs, cs]
        return dxp[:, :, pad[0][0] : pad[0][0] + h, pad[1][0] : pad[1][0] + w]
