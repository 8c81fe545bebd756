"""The lecture's A' transform: every kernel position as one row, so a convolution is one matmul.

For ``x`` of shape ``(N, C, H, W)``, a ``kh x kw`` kernel, stride ``(sh, sw)`` and padding ``P``:

    OH = (H + P_top + P_bottom - kh) // sh + 1        OW likewise
    im2col(x) -> (N * OH * OW, C * kh * kw)

Row ``(n * OH + i) * OW + j`` holds the window whose top-left corner is at ``(i * sh, j * sw)`` of
the padded image ``n``, flattened in ``(C, kh, kw)`` order: the same order as PyTorch's weight
``(F, C, kh, kw)``, so ``im2col(x) @ W.reshape(F, -1).T`` is the convolution. The lecture lists
positions and window entries in column order instead; its ``A'^T`` is ``im2col`` of ``A.T``.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

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


def windows(xp: np.ndarray, k, s, out_hw) -> np.ndarray:
    """A strided view ``(N, C, OH, OW, kh, kw)`` of the padded input; no copy."""
    view = sliding_window_view(xp, k, axis=(2, 3))
    return view[:, :, : (out_hw[0] - 1) * s[0] + 1 : s[0], : (out_hw[1] - 1) * s[1] + 1 : s[1]]


def im2col(x: np.ndarray, kernel_size, stride=1, padding: PaddingArg = 0) -> np.ndarray:
    """``(N, C, H, W)`` -> ``(N * OH * OW, C * kh * kw)``: one row per kernel position."""
    k, s, pad, out_hw = conv_geometry(x.shape, kernel_size, stride, padding)
    return windows(pad_input(x, pad), k, s, out_hw).transpose(0, 2, 3, 1, 4, 5).reshape(
        x.shape[0] * out_hw[0] * out_hw[1], -1
    )


def col2im(cols: np.ndarray, x_shape, kernel_size, stride=1, padding: PaddingArg = 0) -> np.ndarray:
    """The adjoint of :func:`im2col`: add every row back onto the pixels its window covers.

    ``cols`` has shape ``(N * OH * OW, C * kh * kw)``; the result has ``x_shape`` ``(N, C, H, W)``.
    Overlapping windows sum. One strided slice addition per kernel offset (``kh * kw`` of them):
    several times faster than ``np.add.at``.
    """
    n, c, h, w = x_shape
    k, s, pad, (oh, ow) = conv_geometry(x_shape, kernel_size, stride, padding)
    blocks = cols.reshape(n, oh, ow, c, k[0], k[1])
    xp = np.zeros((n, c, h + pad[0][0] + pad[0][1], w + pad[1][0] + pad[1][1]), dtype=cols.dtype)
    for i in range(k[0]):
        for j in range(k[1]):
            xp[:, :, i : i + s[0] * oh : s[0], j : j + s[1] * ow : s[1]] += blocks[:, :, :, :, i, j].transpose(0, 3, 1, 2)
    return xp[:, :, pad[0][0] : pad[0][0] + h, pad[1][0] : pad[1][0] + w]
