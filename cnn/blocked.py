"""im2col on 2x2 blocks of outputs: fewer columns for layers with few output channels.

A convolution's 2x2 block of outputs at ``(2i, 2j)`` reads one ``(kh + sh) x (kw + sw)`` window
of the input, at stride ``2 * sh``. Computing the four outputs of every block from that window
is itself a convolution, with ``4 F`` filters: filter ``(a, b, f)`` is ``W[f]`` placed at offset
``(a * sh, b * sw)`` in a zero ``(kh + sh) x (kw + sw)`` kernel. Its im2col matrix holds
``C (kh + sh)(kw + sw)`` entries per block where plain im2col holds ``4 C kh kw``: for a 7x7
kernel 64 against 196, for 3x3 16 against 36. The price: the product does
``(kh + sh)^2 / kh^2`` times the multiply-adds (the zeros), and the outputs come out as four
interleaved planes, copied into place (``y[:, a::2, b::2]``; ``dy`` gathered likewise). It pays
where the columns, not the products, are the cost: first layers with one input channel and few
filters, whose im2col matrix is written once and read twice per step at the memory's speed.

The backward is the inner convolution's, folded back: ``dW[f] = sum over (a, b)`` of the inner
``dW`` at offset ``(a * sh, b * sw)``; ``db`` the sum of the four; ``dx`` the inner's.
"""
from __future__ import annotations

import numpy as np

from .convbase import COPY, ConvAlgorithm, ConvShape
from .im2col import Im2colConv

PLANES = ((0, 0), (0, 1), (1, 0), (1, 1))


def inner_shape(s: ConvShape) -> ConvShape:
    """The convolution over 2x2 output blocks that computes ``s``."""
    oh, ow = -(-s.oh // 2), -(-s.ow // 2)
    kh, kw, sh, sw = s.kh + s.sh, s.kw + s.sw, 2 * s.sh, 2 * s.sw
    (top, bottom), (left, right) = s.pad
    bottom = max(bottom, (oh - 1) * sh + kh - s.h - top)
    right = max(right, (ow - 1) * sw + kw - s.w - left)
    return ConvShape(s.n, s.c, s.h, s.w, 4 * s.f, kh, kw, sh, sw, ((top, bottom), (left, right)), oh, ow, s.dtype)


class BlockedConv(ConvAlgorithm):
    name = family = "blocked"

    def __init__(self, shape: ConvShape):
        super().__init__(shape)
        self.inner = Im2colConv(inner_shape(shape))

    @classmethod
    def supports(cls, shape: ConvShape) -> bool:
        return shape.oh > 1 and shape.ow > 1

    @classmethod
    def estimate(cls, shape: ConvShape, phase: str) -> float:
        planes = 2 * COPY * shape.f * shape.oh * shape.ow * shape.n  # the outputs (or dy) to and from 4 planes
        return Im2colConv.estimate(inner_shape(shape), phase) + planes

    def _weights(self, w, b):
        s, i = self.shape, self.inner.shape
        w4, _ = self.buffer("w4", (4, s.f, s.c, i.kh, i.kw), w.dtype, zero=True)  # taps rewritten, zeros kept
        for p, (a, c) in enumerate(PLANES):
            w4[p, :, :, a * s.sh : a * s.sh + s.kh, c * s.sw : c * s.sw + s.kw] = w
        return w4.reshape(4 * s.f, s.c, i.kh, i.kw), np.tile(b, 4)

    def forward(self, xb, w, b, out=None, relu=False):
        s = self.shape
        w4, b4 = self._weights(w, b)
        planes, ctx = self.inner.forward(xb, w4, b4)
        planes = planes.reshape(4, s.f, *planes.shape[1:])
        y = np.empty((s.f, s.oh, s.ow, s.n), dtype=xb.dtype) if out is None else out
        for p, (a, c) in enumerate(PLANES):
            dst = y[:, a::2, c::2]
            src = planes[p, :, : dst.shape[1], : dst.shape[2]]
            if relu:
                np.maximum(src, 0, out=dst)
            else:
                dst[...] = src
        return y, (ctx, w4)

    def backward(self, dyb, xb, w, ctx, need_dx, dx_out=None):
        s, i = self.shape, self.inner.shape
        inner_ctx, w4 = (None, self._weights(w, np.zeros(s.f, w.dtype))[0]) if ctx is None else ctx
        dy4, _ = self.buffer("dy4", (4, s.f, i.oh, i.ow, s.n), dyb.dtype, zero=True)  # the unused edge stays 0
        for p, (a, c) in enumerate(PLANES):
            src = dyb[:, a::2, c::2]
            dy4[p, :, : src.shape[1], : src.shape[2]] = src
        dw4, db4, dx = self.inner.backward(dy4.reshape(4 * s.f, i.oh, i.ow, s.n), xb, w4, inner_ctx, need_dx, dx_out)
        dw4 = dw4.reshape(4, s.f, s.c, i.kh, i.kw)
        dw = np.zeros_like(w)
        for p, (a, c) in enumerate(PLANES):
            dw += dw4[p, :, :, a * s.sh : a * s.sh + s.kh, c * s.sw : c * s.sw + s.kw]
        return dw, db4.reshape(4, s.f).sum(axis=0), dx
