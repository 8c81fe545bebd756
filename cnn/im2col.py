"""The lecture's A' transform: every kernel position as one row, so a convolution is one matmul.

For ``x`` of shape ``(N, C, H, W)``, a ``kh x kw`` kernel, stride ``(sh, sw)`` and padding ``P``:

    OH = (H + P_top + P_bottom - kh) // sh + 1        OW likewise
    im2col(x) -> (N * OH * OW, C * kh * kw)

Row ``(n * OH + i) * OW + j`` holds the window whose top-left corner is at ``(i * sh, j * sw)`` of
the padded image ``n``, flattened in ``(C, kh, kw)`` order: the same order as PyTorch's weight
``(F, C, kh, kw)``, so ``im2col(x) @ W.reshape(F, -1).T`` is the convolution. The lecture lists
positions and window entries in column order instead; its ``A'^T`` is ``im2col`` of ``A.T``.

The kernels build the transpose, ``im2col(x).T`` of shape ``(C * kh * kw, N * OH * OW)``, because
it is the layout that copies fastest: memory order ``(C, kh, kw, N, OH, OW)`` makes the piece of
every kernel offset ``(i, j)`` one contiguous block, filled from a strided slice of the input
whose rows are contiguous. (Gathering ``(kh, kw)`` innermost instead, as a window view does, moves
a handful of floats per step and was 2-3x slower.) The matmul takes either orientation for free.
"""
from __future__ import annotations

import numpy as np

from .geometry import PaddingArg, Padding4, output_hw, positive_pair, resolve_padding


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
    if not any(pad[0] + pad[1]):
        return x
    return np.pad(x, ((0, 0), (0, 0), pad[0], pad[1]), constant_values=value)


def _offsets(k, s, out_hw):
    """``(i, j, rows, cols)`` for every kernel offset: the strided slice of the padded input it reads."""
    (oh, ow) = out_hw
    return [(i, j, slice(i, i + s[0] * oh, s[0]), slice(j, j + s[1] * ow, s[1]))
            for i in range(k[0]) for j in range(k[1])]


def channels_first(x: np.ndarray, pad: Padding4) -> np.ndarray:
    """``x (N, C, H, W)`` as a padded, contiguous ``(C, N, Hp, Wp)``: the pad and transpose in one copy."""
    n, c, h, w = x.shape
    (top, bottom), (left, right) = pad
    out = np.zeros((c, n, h + top + bottom, w + left + right), dtype=x.dtype) if top + bottom + left + right \
        else np.empty((c, n, h, w), dtype=x.dtype)
    out[:, :, top : top + h, left : left + w] = x.transpose(1, 0, 2, 3)
    return out


def im2col_t(x: np.ndarray, k, s, pad: Padding4, out_hw, out: np.ndarray | None = None) -> np.ndarray:
    """``im2col(x).T`` as a contiguous ``(C * kh * kw, N * OH * OW)``: one block copy per kernel offset.

    ``out``, if given, is a buffer of that shape and dtype to fill instead of allocating one.
    """
    n, c = x.shape[:2]
    oh, ow = out_hw
    xp = channels_first(x, pad)
    shape = (c, k[0], k[1], n, oh, ow)
    cols = np.empty(shape, dtype=x.dtype) if out is None else out.reshape(shape)
    for i, j, rows, cs in _offsets(k, s, out_hw):
        cols[:, i, j] = xp[:, :, rows, cs]
    return cols.reshape(c * k[0] * k[1], n * oh * ow)


def col2im_t(cols_t: np.ndarray, x_shape, k, s, pad: Padding4, out_hw) -> np.ndarray:
    """The adjoint of :func:`im2col_t`: ``(C*kh*kw, N*OH*OW)`` -> ``(N, C, H, W)``, overlaps summed.

    Accumulates in the channels-first layout the columns come in (contiguous blocks, no gather),
    one strided-slice addition per kernel offset, then transposes back once.
    """
    n, c, h, w = x_shape
    (top, bottom), (left, right) = pad
    blocks = cols_t.reshape(c, k[0], k[1], n, out_hw[0], out_hw[1])
    dxp = np.zeros((c, n, h + top + bottom, w + left + right), dtype=cols_t.dtype)
    for i, j, rows, cs in _offsets(k, s, out_hw):
        dxp[:, :, rows, cs] += blocks[:, i, j]
    return np.ascontiguousarray(dxp[:, :, top : top + h, left : left + w].transpose(1, 0, 2, 3))


def im2col(x: np.ndarray, kernel_size, stride=1, padding: PaddingArg = 0) -> np.ndarray:
    """``(N, C, H, W)`` -> ``(N * OH * OW, C * kh * kw)``: one row per kernel position."""
    k, s, pad, out_hw = conv_geometry(x.shape, kernel_size, stride, padding)
    return im2col_t(x, k, s, pad, out_hw).T


def col2im(cols: np.ndarray, x_shape, kernel_size, stride=1, padding: PaddingArg = 0) -> np.ndarray:
    """The adjoint of :func:`im2col`: add every row back onto the pixels its window covers.

    ``cols`` has shape ``(N * OH * OW, C * kh * kw)``; the result has ``x_shape`` ``(N, C, H, W)``.
    Overlapping windows sum.
    """
    k, s, pad, out_hw = conv_geometry(x_shape, kernel_size, stride, padding)
    return col2im_t(np.ascontiguousarray(cols.T), x_shape, k, s, pad, out_hw)
