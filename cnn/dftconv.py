"""Convolution as products of discrete Fourier transforms computed by matrix multiplication.

The same mathematics as :mod:`cnn.fftconv` (circular cross-correlation over a period ``L``, the
top padding being the wrapped end of the input), but each 2-D transform of an image is one
matrix product over its pixels instead of an FFT:

    X  = Dx @ x         Dx (2K x H*W): cos and -sin of every frequency at every input pixel
    Z[k] = B[k] @ X[k]   B[k] (2F x 2C): [[Wr, Wi], [-Wi, Wr]] = conj(W^[k]) as a real matrix
    y  = Dy @ Z + b     Dy (OH*OW x 2K): the inverse at the output pixels only (the crop)

with ``K = Lh * (Lw // 2 + 1)`` frequencies of the half spectrum, each a (real, imaginary) pair;
``Dy`` weighs the frequencies whose mirror image is left out twice. The backward is the exact
adjoint of these products: ``DY = Dy.T @ dy``, ``dB[k] = DY[k] @ X[k].T`` (dW: ``dWr = dB00 +
dB11``, ``dWi = dB01 - dB10``, back to the taps through the weight transform's transpose),
``dX[k] = B[k].T @ DY[k]``, ``dx = Dx.T @ dX``, ``db = L^2 * DY[frequency 0]`` summed.

An FFT needs ``O(L^2 log L)`` operations per image and channel, these products ``2K * H*W``, far
more; but they run as large matrix products at the BLAS's rate, where SciPy's FFTs run lengths
of 12-20 at a small fraction of it, and the matrices do the padding and the crop for free (any
``L`` works: no need for a fast length). It wins on small maps with many channels, the lecture's
second block; for large maps the matrices grow as the square of the pixels, and the cost model
(:meth:`estimate`) leaves it out. Memory kept for the backward: ``X``, ``2K * C * N`` floats.
"""
from __future__ import annotations

import numpy as np

from .convbase import ConvAlgorithm, ConvShape, view_as


def _angles(lh: int, lw: int, rows, cols) -> np.ndarray:
    """``(K, P)`` phase ``2 pi (kh r / Lh + kw c / Lw)`` of every half-spectrum frequency at points ``(r, c)``."""
    kh = np.repeat(np.arange(lh), lw // 2 + 1)
    kw = np.tile(np.arange(lw // 2 + 1), lh)
    return 2 * np.pi * (np.outer(kh, rows) / lh + np.outer(kw, cols) / lw)


def _grid(h: int, w: int, dh: int = 0, dw: int = 0, lh: int = 0, lw: int = 0):
    """Row and column of every point of an ``h x w`` grid, shifted by ``(dh, dw)`` modulo ``(lh, lw)``."""
    r, c = np.meshgrid(np.arange(h) + dh, np.arange(w) + dw, indexing="ij")
    if lh:
        r, c = r % lh, c % lw
    return r.ravel(), c.ravel()


class DFTConv(ConvAlgorithm):
    name = family = "dft"

    def __init__(self, shape: ConvShape):
        super().__init__(shape)
        s = shape
        (t, b), (l, r) = s.pad
        self.lh, self.lw = max(s.h + max(t, b), s.oh, s.kh), max(s.w + max(l, r), s.ow, s.kw)
        lh, lw = self.lh, self.lw
        self.k = lh * (lw // 2 + 1)
        dtype = np.dtype(s.dtype)
        theta = _angles(lh, lw, *_grid(s.h, s.w))
        self.dx = np.stack([np.cos(theta), -np.sin(theta)], axis=1).reshape(2 * self.k, -1).astype(dtype)
        taps = _angles(lh, lw, *_grid(s.kh, s.kw, -t, -l, lh, lw))  # tap (u, v) sits at (u - t, v - l) mod L
        self.w_cos, self.w_sin = np.cos(taps).astype(dtype), (-np.sin(taps)).astype(dtype)
        kw = np.tile(np.arange(lw // 2 + 1), lh)
        twice = np.where((kw == 0) | ((lw % 2 == 0) & (kw == lw // 2)), 1.0, 2.0)[:, None] / (lh * lw)
        out = _angles(lh, lw, *_grid(s.oh, s.ow))
        dy = np.stack([twice * np.cos(out), -twice * np.sin(out)], axis=1).reshape(2 * self.k, -1)
        self.dy = np.ascontiguousarray(dy.T).astype(dtype)  # (OH*OW, 2K)
        self.dy_t = np.ascontiguousarray(dy).astype(dtype)  # (2K, OH*OW)

    @classmethod
    def supports(cls, shape: ConvShape) -> bool:
        return shape.stride_one

    @classmethod
    def estimate(cls, shape: ConvShape, phase: str) -> float:
        s, (t, b), (l, r) = shape, *shape.pad
        k = max(s.h + max(t, b), s.oh, s.kh) * (max(s.w + max(l, r), s.ow, s.kw) // 2 + 1)
        inputs, outputs = 2 * k * s.h * s.w * s.c * s.n, 2 * k * s.oh * s.ow * s.f * s.n
        weights, product = 2 * k * s.kh * s.kw * s.f * s.c, 4 * k * s.f * s.c * s.n
        if phase == "forward":
            return inputs + weights + product + outputs
        return outputs + weights + product + (product + inputs if phase == "backward" else 0)

    def _blocks(self, w):
        """``B (K, 2F, 2C)``: ``conj(W^[k])`` of every frequency as a real 2x2 block matrix."""
        s, k = self.shape, self.k
        taps = w.reshape(s.f * s.c, -1).T
        b, _ = self.buffer("blocks", (k, 2 * s.f, 2 * s.c), w.dtype)
        wr = (self.w_cos @ taps).reshape(k, s.f, s.c)
        wi = (self.w_sin @ taps).reshape(k, s.f, s.c)
        b[:, : s.f, : s.c] = wr
        b[:, : s.f, s.c :] = wi
        np.negative(wi, out=b[:, s.f :, : s.c])
        b[:, s.f :, s.c :] = wr
        return b

    def _pixels_first(self, key, a):
        """``a (D, pixels, N)`` copied to a ``(pixels, D*N)`` matrix: one large product then
        transforms every channel and image at once (faster than one product per channel)."""
        d, p, n = a.shape
        t, _ = self.buffer(key, (p, d, n), a.dtype)
        np.copyto(t, a.transpose(1, 0, 2))
        return t.reshape(p, d * n)

    def _transform(self, xb):
        """``X (K, 2C, N)``: the input's spectrum, (real, imaginary) of each channel per frequency."""
        s = self.shape
        x, _ = self.buffer("x", (2 * self.k, s.c * s.n), xb.dtype)
        np.matmul(self.dx, self._pixels_first("x_t", xb.reshape(s.c, -1, s.n)), out=x)
        return x.reshape(self.k, 2 * s.c, s.n)

    def _inverse(self, d, spectrum, out, key, relu=False):
        """``out (D, pixels, N)`` = ``d (pixels x 2K)`` applied to ``spectrum (2K, D, N)``, by one product
        (``relu``: ``max(., 0)`` in the copy back)."""
        t, _ = self.buffer(key, (d.shape[0], spectrum.shape[1] * spectrum.shape[2]), spectrum.dtype)
        np.matmul(d, spectrum.reshape(d.shape[1], -1), out=t)
        t = t.reshape(d.shape[0], spectrum.shape[1], -1).transpose(1, 0, 2)
        if relu:
            np.maximum(t, 0, out=out)
        else:
            np.copyto(out, t)

    def forward(self, xb, w, b, out=None, relu=False):
        s = self.shape
        x, blocks = self._transform(xb), self._blocks(w)
        z, _ = self.buffer("z", (self.k, 2 * s.f, s.n), xb.dtype)
        np.matmul(blocks, x, out=z)
        z[0, : s.f] += (self.lh * self.lw) * b[:, None]  # frequency 0 reaches every output with weight 1/L^2
        y = np.empty((s.f, s.oh, s.ow, s.n), dtype=xb.dtype) if out is None else out
        # A batch part's view merges its pixels without a copy: (F, OH*OW, N) with strides.
        self._inverse(self.dy, z.reshape(2 * self.k, s.f, s.n), view_as(y, (s.f, -1, s.n)), "y_t", relu)
        return y, (x, blocks)

    def backward(self, dyb, xb, w, ctx, need_dx, dx_out=None):
        s, k = self.shape, self.k
        if ctx is None:
            ctx = (self._transform(xb), self._blocks(w))
        x, blocks = ctx
        dz, _ = self.buffer("dz", (2 * k, s.f * s.n), dyb.dtype)
        np.matmul(self.dy_t, self._pixels_first("dy_t", dyb.reshape(s.f, -1, s.n)), out=dz)
        dz = dz.reshape(k, 2 * s.f, s.n)
        db = (self.lh * self.lw) * dz[0, : s.f].sum(axis=1)
        db_blocks = np.matmul(dz, x.transpose(0, 2, 1))  # (K, 2F, 2C)
        f, c = s.f, s.c
        d_wr = (db_blocks[:, :f, :c] + db_blocks[:, f:, c:]).reshape(k, -1)
        d_wi = (db_blocks[:, :f, c:] - db_blocks[:, f:, :c]).reshape(k, -1)
        dw = self.w_cos.T @ d_wr
        dw += self.w_sin.T @ d_wi
        dw = np.ascontiguousarray(dw.T).reshape(f, c, s.kh, s.kw)
        if not need_dx:
            return dw, db, None
        dxs, _ = self.buffer("dxs", (k, 2 * c, s.n), dyb.dtype)
        np.matmul(blocks.transpose(0, 2, 1), dz, out=dxs)
        dx = np.empty((c, s.h, s.w, s.n), dtype=dyb.dtype) if dx_out is None else dx_out
        self._inverse(self.dx.T, dxs.reshape(2 * k, c, s.n), view_as(dx, (c, -1, s.n)), "dx_t")
        return dw, db, dx
