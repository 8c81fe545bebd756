"""The lecture's A' transform: every kernel position as one row, so a convolution is one matmul.

For ``x`` of shape ``(N, C, H, W)``, a ``kh x kw`` kernel, stride ``(sh, sw)`` and padding ``P``:

    OH = (H + P_top + P_bottom - kh) // sh + 1        OW likewise
    im2col(x) -> (N * OH * OW, C * kh * kw)

Row ``(n * OH + i) * OW + j`` holds the window whose top-left corner is at ``(i * sh, j * sw)`` of
the padded image ``n``, flattened in ``(C, kh, kw)`` order: the same order as PyTorch's weight
``(F, C, kh, kw)``, so ``im2col(x) @ W.reshape(F, -1).T`` is the convolution. The lecture lists
positions and window entries in column order instead; its ``A'^T`` is ``im2col`` of ``A.T``.

The kernels (``im2col_t``, ``col2im_t``) build the transpose with the batch innermost: shape
``(C * kh * kw, OH * OW * N)``, memory order ``(C, kh, kw, OH, OW, N)``. The piece of every
kernel offset ``(i, j)`` is then one contiguous block, filled from a strided slice of the
batch-last input ``(C, Hp, Wp, N)`` (see :mod:`cnn.layout`) that moves runs of N floats (stride
> 1) or OW * N floats (stride 1). Gathering ``(kh, kw)`` innermost instead, as a window view
does, moves a handful of floats per step and was 2-3x slower; batch-first blocks ``(C, N, OH,
OW)`` move runs of OW floats and were 2-7x slower in the benchmark's layers. The matmul takes
either orientation for free. ``im2col``/``col2im`` are the row-per-window form the lecture draws,
built from the kernels.
"""
from __future__ import annotations

import numpy as np

from . import threads
from .convbase import COPY, ConvAlgorithm, ConvShape
from .geometry import Padding4, PaddingArg, output_hw, positive_pair, resolve_padding
from .layout import batch_last, empty_as


def conv_geometry(x_shape, kernel_size, stride=1, padding: PaddingArg = 0):
    """Resolve ``(kernel, stride, padding4, (OH, OW))`` for an input of shape ``(N, C, H, W)``."""
    k = positive_pair(kernel_size, "kernel_size")
    s = positive_pair(stride, "stride")
    pad = resolve_padding(padding, tuple(x_shape[2:]), k, s)
    oh, ow = output_hw(tuple(x_shape[2:]), k, s, pad)
    if oh < 1 or ow < 1:
        raise ValueError(
            f"input of spatial size {x_shape[2]}x{x_shape[3]} with kernel {k}, stride {s} and padding "
            f"{pad} gives an output of {oh}x{ow}: out = (H + 2P - K) // S + 1 must be >= 1"
        )
    return k, s, pad, (oh, ow)


def pad_input(x: np.ndarray, pad: Padding4, value=0.0) -> np.ndarray:
    """``x (N, C, H, W)`` padded along H and W with ``value``, in ``x``'s memory order."""
    if not any(pad[0] + pad[1]):
        return x
    (top, bottom), (left, right) = pad
    n, c, h, w = x.shape
    out = empty_as(x, (n, c, h + top + bottom, w + left + right))
    out.fill(value)
    out[:, :, top : top + h, left : left + w] = x
    return out


def _offsets(k, s, out_hw):
    """``(i, j, rows, cols)`` for every kernel offset: the strided slice of the padded input it reads."""
    (oh, ow) = out_hw
    return [(i, j, slice(i, i + s[0] * oh, s[0]), slice(j, j + s[1] * ow, s[1]))
            for i in range(k[0]) for j in range(k[1])]


def im2col_t(x: np.ndarray, k, s, pad: Padding4, out_hw, out: np.ndarray | None = None) -> np.ndarray:
    """The columns, batch innermost: ``(C * kh * kw, OH * OW * N)``, one block copy per kernel offset.

    Column ``(i * OW + j) * N + n`` holds image ``n``'s window at output pixel ``(i, j)``.
    ``out``, if given, is a buffer of that shape and dtype to fill instead of allocating one.
    """
    n, c = x.shape[:2]
    oh, ow = out_hw
    xb = batch_last(x, pad)
    shape = (c, k[0], k[1], oh, ow, n)
    cols = np.empty(shape, dtype=x.dtype) if out is None else out.reshape(shape)
    for i, j, rows, cs in _offsets(k, s, out_hw):
        cols[:, i, j] = xb[:, rows, cs]
    return cols.reshape(c * k[0] * k[1], oh * ow * n)


def col2im_t(cols_t: np.ndarray, x_shape, k, s, pad: Padding4, out_hw) -> np.ndarray:
    """The adjoint of :func:`im2col_t`: ``(C*kh*kw, OH*OW*N)`` -> ``(N, C, H, W)``, overlaps summed.

    Accumulates batch-last, one strided-slice addition per kernel offset, and returns an
    ``(N, C, H, W)`` view of that batch-last memory (no copy back).
    """
    n, c, h, w = x_shape
    (top, bottom), (left, right) = pad
    blocks = cols_t.reshape(c, k[0], k[1], out_hw[0], out_hw[1], n)
    dxb = np.zeros((c, h + top + bottom, w + left + right, n), dtype=cols_t.dtype)
    for i, j, rows, cs in _offsets(k, s, out_hw):
        dxb[:, rows, cs] += blocks[:, i, j]
    return dxb[:, top : top + h, left : left + w].transpose(3, 0, 1, 2)


def im2col(x: np.ndarray, kernel_size, stride=1, padding: PaddingArg = 0) -> np.ndarray:
    """``(N, C, H, W)`` -> ``(N * OH * OW, C * kh * kw)``: one row per kernel position."""
    k, s, pad, (oh, ow) = conv_geometry(x.shape, kernel_size, stride, padding)
    cols_t = im2col_t(x, k, s, pad, (oh, ow))
    return cols_t.reshape(-1, oh * ow, x.shape[0]).transpose(2, 1, 0).reshape(x.shape[0] * oh * ow, -1)


def col2im(cols: np.ndarray, x_shape, kernel_size, stride=1, padding: PaddingArg = 0) -> np.ndarray:
    """The adjoint of :func:`im2col`: add every row back onto the pixels its window covers.

    ``cols`` has shape ``(N * OH * OW, C * kh * kw)``; the result has ``x_shape`` ``(N, C, H, W)``.
    Overlapping windows sum.
    """
    k, s, pad, (oh, ow) = conv_geometry(x_shape, kernel_size, stride, padding)
    n = x_shape[0]
    cols_t = np.ascontiguousarray(cols.reshape(n, oh * ow, -1).transpose(2, 1, 0)).reshape(-1, oh * ow * n)
    return np.ascontiguousarray(col2im_t(cols_t, x_shape, k, s, pad, (oh, ow)))


def clipped(out: int, stride: int, offset: int, before: int, size: int):
    """For kernel ``offset`` along one axis: ``(lo, hi, source)``, the output positions
    ``lo..hi-1`` whose input ``o * stride + offset - before`` lies inside ``0..size-1``, and the
    slice of the unpadded input they read. Positions outside read padding (zeros)."""
    lo = max(0, -((offset - before) // stride))
    hi = min(out, (size - 1 + before - offset) // stride + 1)
    if hi <= lo:
        return lo, lo, slice(0, 0)
    start = lo * stride + offset - before
    return lo, hi, slice(start, start + stride * (hi - lo - 1) + 1, stride)


def _windows(shape: ConvShape):
    """``(i, j, out_rows, out_cols, in_rows, in_cols)`` for every kernel offset that reads any pixel."""
    (top, _), (left, _) = shape.pad
    out = []
    for i in range(shape.kh):
        r0, r1, rows = clipped(shape.oh, shape.sh, i, top, shape.h)
        for j in range(shape.kw):
            c0, c1, cols = clipped(shape.ow, shape.sw, j, left, shape.w)
            if r1 > r0 and c1 > c0:
                out.append((i, j, slice(r0, r1), slice(c0, c1), rows, cols))
    return out


def fill_cols(xb: np.ndarray, shape: ConvShape, cols: np.ndarray) -> None:
    """Write ``xb (C, H, W, N)``'s windows into ``cols (C*kh*kw[+1], OH*OW*N)`` without padding it first.

    Entries that read padding are not written: ``cols`` must hold zeros there (a buffer zeroed
    once and reused for the same shape does). Split over channels across the kernel threads.
    """
    s = shape
    blocks = cols[: s.c * s.kh * s.kw].reshape(s.c, s.kh, s.kw, s.oh, s.ow, s.n)
    wins = _windows(s)

    def part(c0, c1):
        for i, j, orows, ocols, rows, cs in wins:
            blocks[c0:c1, i, j, orows, ocols] = xb[c0:c1, rows, cs]

    threads.split(part, s.c, cols.size)


def add_cols(dcols: np.ndarray, shape: ConvShape, dx: np.ndarray, c0: int = 0, c1: int | None = None) -> None:
    """The adjoint of :func:`fill_cols`: add each window of ``dcols (C*kh*kw, OH*OW*N)`` onto
    ``dx (C, H, W, N)`` (channels ``c0:c1``), skipping the entries that read padding."""
    s = shape
    blocks = dcols.reshape(s.c, s.kh, s.kw, s.oh, s.ow, s.n)
    c1 = s.c if c1 is None else c1
    for i, j, orows, ocols, rows, cs in _windows(s):
        dx[c0:c1, rows, cs] += blocks[c0:c1, i, j, orows, ocols]


def _zeros(shape: ConvShape, dtype, out=None) -> np.ndarray:
    """``dx (C, H, W, N)`` zeroed: ``out`` if given, else a new array."""
    if out is None:
        return np.zeros((shape.c, shape.h, shape.w, shape.n), dtype=dtype)
    out.fill(0)
    return out


class Im2colConv(ConvAlgorithm):
    """im2col + one matrix product; the backward's dx by one product and the col2im scatter.

    The bias rides in the product: the columns carry an extra row of ones and the weights an
    extra column ``b``, so ``y = [W | b] @ [cols; 1]`` and ``[dW | db] = dy @ [cols; 1].T``: no
    separate pass adds the bias or sums ``dy``. Padding is never materialised (see
    :func:`fill_cols`). Memory: the columns ``(C*kh*kw + 1) x OH*OW*N`` kept for the backward.
    """

    name = family = "im2col"

    @classmethod
    def supports(cls, shape: ConvShape) -> bool:
        return True

    @classmethod
    def estimate(cls, shape: ConvShape, phase: str) -> float:
        k, m = shape.c * shape.kh * shape.kw, shape.oh * shape.ow * shape.n
        product, copy = shape.f * k * m, COPY * k * m
        if phase == "forward":
            return product + copy
        return product + copy + (product + 1.5 * copy if phase == "backward" else 0)

    def _cols(self, xb):
        s = self.shape
        k = s.c * s.kh * s.kw
        cols, new = self.buffer("cols", (k + 1, s.oh * s.ow * s.n), xb.dtype, zero=True)
        if new:
            cols[k] = 1
        fill_cols(xb, s, cols)
        return cols

    def forward(self, xb, w, b, out=None, relu=False):
        s = self.shape
        cols = self._cols(xb)
        wext, _ = self.buffer("wext", (s.f, cols.shape[0]), w.dtype)
        wext[:, :-1] = w.reshape(s.f, -1)
        wext[:, -1] = b
        if out is None:
            return self.finish(np.matmul(wext, cols).reshape(s.f, s.oh, s.ow, s.n), relu), cols
        y, _ = self.buffer("y", (s.f, cols.shape[1]), w.dtype)  # a part of a batch: then into its place
        np.matmul(wext, cols, out=y)
        if relu:
            np.maximum(y.reshape(out.shape), 0, out=out)
        else:
            out[...] = y.reshape(out.shape)
        return out, cols

    def backward(self, dyb, xb, w, ctx, need_dx, dx_out=None):
        s = self.shape
        cols = self._cols(xb) if ctx is None else ctx
        dy_t = dyb.reshape(s.f, -1)
        g = dy_t @ cols.T
        dw, db = np.ascontiguousarray(g[:, :-1]).reshape(w.shape), g[:, -1].copy()
        return dw, db, (self._dx(dy_t, w, _zeros(s, dy_t.dtype, dx_out)) if need_dx else None)

    def _dx(self, dy_t, w, dx):
        s = self.shape
        dcols, _ = self.buffer("dcols", (s.c * s.kh * s.kw, dy_t.shape[1]), dy_t.dtype)
        np.matmul(w.reshape(s.f, -1).T, dy_t, out=dcols)
        threads.split(lambda c0, c1: add_cols(dcols, s, dx, c0, c1), s.c, dcols.size)
        return dx


class ShiftConv(Im2colConv):
    """im2col's forward and dW; dx by one product per kernel offset, each added at once onto its
    shifted slice of ``dx`` (no ``C*kh*kw x OH*OW*N`` buffer: every product's ``C x OH*OW*N``
    result is still in cache when it is added)."""

    name = "shift"

    def _dx(self, dy_t, w, dx):
        s = self.shape
        part, _ = self.buffer("part", (s.c, dy_t.shape[1]), dy_t.dtype)
        blocks = part.reshape(s.c, s.oh, s.ow, s.n)
        taps = np.ascontiguousarray(w.transpose(2, 3, 1, 0))  # (kh, kw, C, F): each tap's W.T contiguous
        for i, j, orows, ocols, rows, cs in _windows(s):
            np.matmul(taps[i, j], dy_t, out=part)

            def add(c0, c1):
                dx[c0:c1, rows, cs] += blocks[c0:c1, orows, ocols]

            threads.split(add, s.c, part.size)
        return dx
