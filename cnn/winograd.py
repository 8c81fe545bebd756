"""Winograd's minimal filtering F(2x2, 3x3): 3x3 stride-1 convolutions in fewer multiplications.

The output is cut into 2x2 tiles; tile ``(ti, tj)`` reads the 4x4 input tile ``d`` at rows
``2*ti ..`` and columns ``2*tj ..`` of the padded input. For every 3x3 filter ``g`` and tile
``d`` (Lavin & Gray, 2016):

    Y = A^T [ (G g G^T) * (B^T d B) ] A          (* element-wise over the 4x4 points)

Summed over channels, the element-wise product is one matrix product per point ``p``:
``M[p] = U[p] (F x C) @ V[p] (C x tiles*N)`` with ``U = G g G^T`` and ``V = B^T d B``: 16
products of ``F C tiles N`` multiply-adds instead of the direct ``36 F C tiles N``, 2.25x fewer.
The transforms are matrix products too: gathering every tile's 16 pixels (16 strided copies,
like im2col's with stride 2) gives ``D (16, C*tiles*N)``, and ``V = kron(B^T, B^T) @ D``; the
outputs are ``kron(A^T, A^T) @ M``, scattered back with the bias added. The backward is the exact
adjoint of each step:

    dM = kron(A, A) @ dY_tiles     dU[p] = dM[p] @ V[p].T     dW = G^T dU G
                                   dV[p] = U[p].T @ dM[p]     dx = overlap-add of kron(B, B) @ dV
    db = dM[(1, 1)] summed: A^T's column 1 is all ones

Rounding: B^T, G and A^T hold only 0, +-1 and 1/2, exact in binary; measured in float32 over the
test grid the error is that of the direct sum (about 4e-7 of the largest output, docs/speed.md).
F(4x4, 3x3) (4x fewer multiplications) was tried and left out: its transforms multiply by up to
8 and divide by 24, and its float32 gradients missed the parity tests' 1e-4 by up to 5x at every
choice of interpolation points tried, for no measurable gain in time here.
"""
from __future__ import annotations

import numpy as np

from . import threads
from .convbase import COPY, ConvAlgorithm, ConvShape
from .im2col import clipped

BT = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], dtype=float)
G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])
AT = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], dtype=float)


def winograd_naive(x, w):
    """Reference: ``Y = A^T [(G g G^T) * (B^T d B)] A`` tile by tile, image by image, in float64.

    ``x (N, C, H, W)`` already padded, ``w (F, C, 3, 3)`` -> ``y (N, F, H-2, W-2)``.
    """
    bt, g, at, m = BT, G, AT, 2
    n, c, h, wd = x.shape
    oh, ow = h - 2, wd - 2
    y = np.zeros((n, w.shape[0], oh, ow))
    u = np.einsum("pi,fcij,qj->fcpq", g, w, g)
    for ni in range(n):
        for ti in range(0, oh, m):
            for tj in range(0, ow, m):
                d = np.zeros((c, m + 2, m + 2))
                patch = x[ni, :, ti : ti + m + 2, tj : tj + m + 2]
                d[:, : patch.shape[1], : patch.shape[2]] = patch
                v = bt @ d @ bt.T
                tile = at @ (u * v).sum(axis=1) @ at.T
                y[ni, :, ti : ti + m, tj : tj + m] = tile[:, : min(m, oh - ti), : min(m, ow - tj)]
    return y


class WinogradConv(ConvAlgorithm):
    """F(2x2, 3x3) for 3x3 stride-1 convolutions."""

    m = 2
    family = name = "winograd"

    def __init__(self, shape: ConvShape):
        super().__init__(shape)
        s, m = shape, self.m
        self.a = a = m + 2
        self.th, self.tw = -(-s.oh // m), -(-s.ow // m)
        bt, g, at = (t.astype(s.dtype) for t in (BT, G, AT))
        self.kb, self.ka, self.kg = np.kron(bt, bt), np.kron(at, at), np.kron(g, g)  # (a2, a2), (m2, a2), (a2, 9)
        # Tile offset (i, j) of every tile: the output tiles it feeds and the input pixels it reads.
        (top, _), (left, _) = s.pad
        self.taps = []
        for i in range(a):
            r0, r1, rows = clipped(self.th, m, i, top, s.h)
            for j in range(a):
                c0, c1, cols = clipped(self.tw, m, j, left, s.w)
                if r1 > r0 and c1 > c0:
                    self.taps.append((i * a + j, slice(r0, r1), slice(c0, c1), rows, cols))

    @classmethod
    def supports(cls, shape: ConvShape) -> bool:
        return shape.stride_one and shape.kh == 3 and shape.kw == 3

    @classmethod
    def estimate(cls, shape: ConvShape, phase: str) -> float:
        s, m, a2 = shape, cls.m, (cls.m + 2) ** 2
        t = -(-s.oh // m) * -(-s.ow // m) * s.n
        inputs = (a2 + COPY) * a2 * s.c * t  # gather, then kron(B^T, B^T)
        outputs = (a2 + COPY) * m * m * s.f * t
        product = a2 * s.f * s.c * t
        if phase == "forward":
            return inputs + product + outputs
        return outputs + product + (product + inputs if phase == "backward" else 0)

    def _transform_input(self, xb):
        """``V (a^2, C, tiles*N)``: B^T d B for every tile, via the gathered tiles ``D``."""
        s, a2 = self.shape, self.a * self.a
        d, _ = self.buffer("d", (a2, s.c, self.th, self.tw, s.n), xb.dtype, zero=True)  # padding stays zero

        def part(c0, c1):
            for p, trows, tcols, rows, cols in self.taps:
                d[p, c0:c1, trows, tcols] = xb[c0:c1, rows, cols]

        threads.split(part, s.c, d.size)
        return (self.kb @ d.reshape(a2, -1)).reshape(a2, s.c, -1)

    def _weights(self, w):
        """``U (a^2, F, C)``: G g G^T for every filter."""
        s = self.shape
        return (self.kg @ w.reshape(s.f * s.c, 9).T).reshape(self.a * self.a, s.f, s.c)

    def forward(self, xb, w, b, out=None, relu=False):
        s, m = self.shape, self.m
        v, u = self._transform_input(xb), self._weights(w)
        mm = np.matmul(u, v)
        yt = (self.ka @ mm.reshape(self.a * self.a, -1)).reshape(m, m, s.f, self.th, self.tw, s.n)
        y = np.empty((s.f, s.oh, s.ow, s.n), dtype=xb.dtype) if out is None else out
        bias = b.reshape(-1, 1, 1, 1)

        def part(f0, f1):
            for i in range(m):
                for j in range(m):
                    out = y[f0:f1, i::m, j::m]
                    np.add(yt[i, j, f0:f1, : out.shape[1], : out.shape[2]], bias[f0:f1], out=out)
                    if relu:
                        np.maximum(out, 0, out=out)

        threads.split(part, s.f, y.size)
        return y, (v, u)

    def backward(self, dyb, xb, w, ctx, need_dx, dx_out=None):
        s, m, a2 = self.shape, self.m, self.a * self.a
        v, u = (self._transform_input(xb), self._weights(w)) if ctx is None else ctx
        dyt, _ = self.buffer("dyt", (m, m, s.f, self.th, self.tw, s.n), dyb.dtype, zero=True)

        def part(f0, f1):
            for i in range(m):
                for j in range(m):
                    src = dyb[f0:f1, i::m, j::m]
                    dyt[i, j, f0:f1, : src.shape[1], : src.shape[2]] = src

        threads.split(part, s.f, dyt.size)
        dm = (self.ka.T @ dyt.reshape(m * m, -1)).reshape(a2, s.f, -1)
        db = dm[self.a + 1].sum(axis=1)
        du = np.matmul(dm, v.transpose(0, 2, 1))
        dw = np.ascontiguousarray((self.kg.T @ du.reshape(a2, -1)).reshape(3, 3, s.f, s.c).transpose(2, 3, 0, 1))
        if not need_dx:
            return dw, db, None
        dv = np.matmul(u.transpose(0, 2, 1), dm)
        dd = (self.kb.T @ dv.reshape(a2, -1)).reshape(a2, s.c, self.th, self.tw, s.n)
        dx = np.zeros((s.c, s.h, s.w, s.n), dtype=dyb.dtype) if dx_out is None else dx_out
        if dx_out is not None:
            dx.fill(0)

        def scatter(c0, c1):
            for p, trows, tcols, rows, cols in self.taps:
                dx[c0:c1, rows, cols] += dd[p, c0:c1, trows, tcols]

        threads.split(scatter, s.c, dd.size)
        return dw, db, dx
