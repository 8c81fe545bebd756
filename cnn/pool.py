"""Pooling by max, average and L2 over ``kh x kw`` windows, vectorised over strided slices.

Shapes: ``x (N, C, H, W)`` -> ``y (N, C, OH, OW)``, ``OH = (H + 2P - kh) // S + 1``. Outputs and
gradients keep the memory order of the input (batch-last after a convolution, see :mod:`cnn.layout`).

    max:  y = max over the window     dx += dy at the window's first maximum (row-major order)
    avg:  y = sum over the window / (kh*kw)   dx += dy / (kh*kw)     (padded zeros count)
    l2:   y = sqrt(sum of squares)    dx += dy * x / y   (0 where y == 0, never NaN)

Every window reduction is separable: reduce each row of the window first (``kw`` strided slices
along W), then the rows (``kh`` strided slices along H). That is ``kh + kw`` whole-array steps
instead of ``kh * kw``, and the first pass reads the input in long runs (for a 2x2 window with
stride 2 every row slice is one strided sweep over the whole array), which made max pooling 4x
faster than reducing all ``kh * kw`` offsets at once. The first maximum survives separation:
strict ``>`` keeps the earliest column within a row and the earliest row among rows, which is the
earliest position in row-major window order. The backward spreads gradients the same way in
reverse; where windows do not overlap (stride == size) it writes each slice once instead of
zero-filling and adding.
"""
from __future__ import annotations

import numpy as np

from .geometry import pair, positive_pair
from .im2col import conv_geometry, pad_input
from .layer import Layer
from .layout import empty_as, zeros_as

MODES = ("max", "avg", "l2")


def _along(axis: int, start: int, stride: int, count: int) -> tuple:
    """Index of ``count`` entries from ``start`` with ``stride`` along ``axis`` (2: H, 3: W)."""
    sl = slice(start, start + stride * (count - 1) + 1, stride)
    return (slice(None), slice(None), sl) if axis == 2 else (slice(None), slice(None), slice(None), sl)


def _max_along(a: np.ndarray, k: int, s: int, out: int, axis: int):
    """Window maxima along one axis and the offset of each window's first maximum."""
    first = a[_along(axis, 0, s, out)]
    if k == 1:
        return first.copy(order="K"), zeros_as(first, dtype=np.uint8)
    second = a[_along(axis, 1, s, out)]
    hit = np.greater(second, first)  # strict: an earlier offset keeps a tie
    m = np.maximum(first, second)
    # For the common k == 2 the comparison is the offset itself (False/True as 0/1): no copy.
    arg = hit.view(np.uint8) if k == 2 else hit.astype(np.uint8 if k < 256 else np.int32)
    for t in range(2, k):
        window = a[_along(axis, t, s, out)]
        np.greater(window, m, out=hit)
        np.copyto(arg, t, where=hit)
        np.maximum(m, window, out=m)
    return m, arg


def _sum_along(a: np.ndarray, k: int, s: int, out: int, axis: int) -> np.ndarray:
    total = a[_along(axis, 0, s, out)].copy(order="K")
    for t in range(1, k):
        total += a[_along(axis, t, s, out)]
    return total


def _spread(g: np.ndarray, k: int, s: int, size: int, axis: int, arg=None) -> np.ndarray:
    """The adjoint of a reduction along ``axis``: every window's gradient back onto its ``k`` inputs.

    With ``arg`` (max pooling) only the offset ``arg`` names receives it; otherwise all do.
    """
    out_n = g.shape[axis]
    shape = list(g.shape)
    shape[axis] = size
    # In g's memory order (batch-last after a convolution): every slice below then moves long runs.
    dx = empty_as(g, shape) if k == s else zeros_as(g, shape)  # k == s: every input is written once
    hit = None if arg is None else empty_as(arg, dtype=bool)
    for t in range(k):
        target = dx[_along(axis, t, s, out_n)]
        if arg is None:
            part = g
        else:
            np.equal(arg, t, out=hit)
            if k == s:
                np.multiply(g, hit, out=target)
                continue
            part = g * hit
        if k == s:
            target[...] = part
        else:
            target += part
    return dx


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

    def forward(self, x: np.ndarray) -> np.ndarray:
        (kh, kw), (sh, sw), pad, (oh, ow) = conv_geometry(x.shape, self.size, self.stride, self.padding)
        xp = pad_input(x, pad, -np.inf if self.mode == "max" else 0.0)
        # Only the rows and columns some window reads; the rest gets a zero gradient.
        used = ((oh - 1) * sh + kh, (ow - 1) * sw + kw)
        xp = xp[:, :, : used[0], : used[1]]
        rows = cols = None
        if self.mode == "max":
            row_max, cols = _max_along(xp, kw, sw, ow, axis=3)
            y, rows = _max_along(row_max, kh, sh, oh, axis=2)
        elif self.mode == "avg":
            y = _sum_along(_sum_along(xp, kw, sw, ow, axis=3), kh, sh, oh, axis=2)
            y /= kh * kw
        else:
            y = _sum_along(_sum_along(np.square(xp), kw, sw, ow, axis=3), kh, sh, oh, axis=2)
            np.sqrt(y, out=y)
        self.cache = (x.shape, pad, used, rows, cols, xp if self.mode == "l2" else None, y if self.mode == "l2" else None)
        return y

    def backward(self, dy: np.ndarray) -> np.ndarray:
        x_shape, pad, used, rows, cols, xp, y = self.cache
        self.cache = None
        (kh, kw), (sh, sw) = self.size, self.stride
        if self.mode == "max":
            g = dy
        elif self.mode == "avg":
            g = dy / (kh * kw)
        else:
            # d sqrt(sum x^2) / dx = x / y; an all-zero window has y == 0 and gets 0, not NaN.
            g = np.divide(dy, y, out=np.zeros_like(dy), where=y > 0)
        d_rows = _spread(g, kh, sh, used[0], axis=2, arg=rows)
        dxu = _spread(d_rows, kw, sw, used[1], axis=3, arg=cols)
        if self.mode == "l2":
            dxu *= xp
        n, c, h, w = x_shape
        (top, bottom), (left, right) = pad
        full = (h + top + bottom, w + left + right)
        if used == full and not (top or left):
            return dxu
        dxp = zeros_as(dxu, (n, c) + full)
        dxp[:, :, : used[0], : used[1]] = dxu
        return dxp[:, :, top : top + h, left : left + w]
