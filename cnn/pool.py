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
zero-filling and adding, and for average and L2 pooling it writes each of the ``kh * kw``
offsets' slices of ``dx`` directly from the pooled gradient (one pass over ``dx``).

``relu_input`` (set by :func:`cnn.fuse.fuse_activations`): the input is a ReLU's output and this
layer applies the ReLU's backward too (see :mod:`cnn.fuse`). Passes are split over channels
across the kernel threads (:mod:`cnn.threads`).
"""
from __future__ import annotations

import numpy as np

from . import threads
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


def _spread(g: np.ndarray, k: int, s: int, size: int, axis: int, arg=None, out=None) -> np.ndarray:
    """The adjoint of a reduction along ``axis``: every window's gradient back onto its ``k`` inputs.

    With ``arg`` (max pooling) only the offset ``arg`` names receives it; otherwise all do.
    ``out``: the array to write (its shape along ``axis`` is ``size``), else a new one.
    """
    out_n = g.shape[axis]
    shape = list(g.shape)
    shape[axis] = size
    # In g's memory order (batch-last after a convolution): every slice below then moves long runs.
    if out is None:
        dx = empty_as(g, shape) if k == s else zeros_as(g, shape)  # k == s: every input is written once
    else:
        dx = out
        if k != s:
            dx.fill(0)
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
        self.relu_input = False

    def forward(self, x: np.ndarray) -> np.ndarray:
        (kh, kw), (sh, sw), pad, (oh, ow) = conv_geometry(x.shape, self.size, self.stride, self.padding)
        xp = pad_input(x, pad, -np.inf if self.mode == "max" else 0.0)
        # Only the rows and columns some window reads; the rest gets a zero gradient.
        used = ((oh - 1) * sh + kh, (ow - 1) * sw + kw)
        xp = xp[:, :, : used[0], : used[1]]
        n, c = xp.shape[:2]
        y = empty_as(xp, (n, c, oh, ow))
        if self.mode == "max":
            index = np.uint8 if max(kh, kw) < 256 else np.int32
            rows, cols = empty_as(xp, (n, c, oh, ow), index), empty_as(xp, (n, c, used[0], ow), index)
        else:
            rows = cols = None

        def part(c0, c1):
            a, out = xp[:, c0:c1], y[:, c0:c1]
            if self.mode == "max":
                row_max, col_arg = _max_along(a, kw, sw, ow, axis=3)
                m, row_arg = _max_along(row_max, kh, sh, oh, axis=2)
                out[...], rows[:, c0:c1], cols[:, c0:c1] = m, row_arg, col_arg
            elif (kh, kw) == (sh, sw):
                _reduce_tiles(a, out, kh, kw, self.mode)
            elif self.mode == "avg":
                np.multiply(_sum_along(_sum_along(a, kw, sw, ow, axis=3), kh, sh, oh, axis=2), 1.0 / (kh * kw),
                            out=out)
            else:
                np.sqrt(_sum_along(_sum_along(np.square(a), kw, sw, ow, axis=3), kh, sh, oh, axis=2), out=out)

        threads.split(part, xp.shape[1], xp.size)
        keep = xp if self.mode == "l2" or (self.mode == "avg" and self.relu_input) else None
        self.cache = (x.shape, pad, used, rows, cols, keep, y if self.mode != "avg" else None)
        return y

    def backward(self, dy: np.ndarray) -> np.ndarray:
        x_shape, pad, used, rows, cols, xp, y = self.cache
        self.cache = None
        (kh, kw), (sh, sw) = self.size, self.stride
        n, c, h, w = x_shape
        (top, bottom), (left, right) = pad
        full = (h + top + bottom, w + left + right)
        tiled = (kh, kw) == (sh, sw)
        dxu = (empty_as if used == full else zeros_as)(dy, (n, c) + full)

        def part(c0, c1):
            g = self._pooled_grad(dy[:, c0:c1], None if y is None else y[:, c0:c1])
            out = dxu[:, c0:c1, : used[0], : used[1]]
            if tiled and self.mode != "max":
                _spread_tiles(g, out, kh, kw, None if xp is None else xp[:, c0:c1], self.mode)
                return
            d_rows = _spread(g, kh, sh, used[0], axis=2, arg=None if rows is None else rows[:, c0:c1])
            _spread(d_rows, kw, sw, used[1], axis=3, arg=None if cols is None else cols[:, c0:c1], out=out)
            if self.mode == "l2":
                out *= xp[:, c0:c1]
            elif self.mode == "avg" and self.relu_input:
                out *= xp[:, c0:c1] > 0

        threads.split(part, c, dxu.size)
        if used == full and not (top or left):
            return dxu
        return dxu[:, :, top : top + h, left : left + w]

    def _pooled_grad(self, dy, y):
        """The gradient at the pooled level: ``dy`` (max: masked where ReLU killed the unit), ``dy/(kh*kw)``
        (avg), ``dy / y`` (l2; 0 where ``y == 0``, never NaN)."""
        (kh, kw) = self.size
        if self.mode == "max":
            return np.multiply(dy, y > 0, dtype=dy.dtype) if self.relu_input else dy
        if self.mode == "avg":
            return np.multiply(dy, 1.0 / (kh * kw), dtype=dy.dtype)
        # d sqrt(sum x^2) / dx = x / y; an all-zero window has y == 0 and gets 0, not NaN.
        return np.divide(dy, y, out=np.zeros_like(dy), where=y > 0)


def _reduce_tiles(x, out, kh, kw, mode):
    """Non-overlapping windows, average or L2: ``out`` from the ``kh * kw`` offsets' slices of ``x``
    directly (each read once, no intermediate row sums)."""
    views = [x[:, :, i::kh, j::kw][:, :, : out.shape[2], : out.shape[3]] for i in range(kh) for j in range(kw)]
    if mode == "avg":
        np.copyto(out, views[0])
        for v in views[1:]:
            out += v
        out *= 1.0 / (kh * kw)
        return
    np.square(views[0], out=out)
    tmp = empty_as(out)
    for v in views[1:]:
        np.square(v, out=tmp)
        out += tmp
    np.sqrt(out, out=out)


def _tiles(a: np.ndarray, kh: int, kw: int) -> np.ndarray:
    """``a (N, C, OH*kh, OW*kw)`` as the view ``(N, C, OH, kh, OW, kw)``: each window's entries on
    axes 3 and 5 (any memory order; no copy)."""
    n, c, h, w = a.shape
    s = a.strides
    return np.lib.stride_tricks.as_strided(a, (n, c, h // kh, kh, w // kw, kw),
                                           (s[0], s[1], s[2] * kh, s[2], s[3] * kw, s[3]), writeable=True)


def _spread_tiles(g, dx, kh, kw, x, mode):
    """Non-overlapping windows: ``dx`` in one broadcast pass from the pooled ``g``: ``g`` (avg),
    ``g * x`` (l2), ``g * (x > 0)`` (avg after a fused ReLU, ``x`` given). One ufunc call over the
    whole array instead of one per window offset: half the time on the lecture's first blocks."""
    d6, g6 = _tiles(dx, kh, kw), g[:, :, :, None, :, None]
    if mode == "l2":
        np.multiply(g6, _tiles(x, kh, kw), out=d6)
    elif x is not None:
        np.multiply(g6, _tiles(x, kh, kw) > 0, out=d6)
    else:
        np.copyto(d6, g6)
