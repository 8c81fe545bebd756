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
