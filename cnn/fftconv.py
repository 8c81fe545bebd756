"""Convolution as products of Fourier transforms: stride 1, any kernel size and padding.

Along one axis (W alike), an input ``x`` of length ``H``, padding ``(t, b)``, a kernel ``w`` of
length ``k`` and ``OH = H + t + b - k + 1`` outputs:

    y[i] = sum_u x[i + u - t] w[u]                 (x = 0 outside 0..H-1)

Taken circularly with a period ``L >= H + max(t, b)`` (and ``L >= OH, k``), every index
``i + u - t`` of a needed output lands on its pixel or on a zero, never on another pixel: the
``t`` rows of top padding are the wrapped end of the zero-padded input. With the kernel tap ``u``
stored at ``(u - t) mod L`` (``w'``), ``y`` is the circular cross-correlation of ``x`` and
``w'`` read at ``0..OH-1``. With hats for 2-D real DFTs of size ``Lh x Lw``, per frequency ``k``:

    forward   Y^[f, k]   = sum_c conj(W'^[f, c, k]) X^[c, k]       y  = irfft2(Y^)[:OH, :OW] + b
    backward  dX^[c, k]  = sum_f W'^[f, c, k] dY^[f, k]             dx = irfft2(dX^)[:H, :W]
              dW'^[f,c,k] = sum_n conj(dY^[f, k, n]) X^[c, k, n]     dW[u, v] = irfft2(dW'^)[u - t, v - l]
              db[f]      = sum_n dY^[f, 0, n]                       (frequency 0 is the sum)

Each ``sum_c`` is one complex matrix product per frequency: ``(F x C) @ (C x N)``, batched over
the ``Lh * (Lw // 2 + 1)`` frequencies. The transforms cost ``O(L^2 log L)`` per image and
channel instead of the direct ``OH OW kh kw`` per channel pair, which wins for large kernels and
many channels. The conjugates need no pass of their own: ``ihfft2(x, norm="forward")`` is
``conj(rfft2(x))`` and ``hfft2(P, norm="forward")`` is ``irfft2(conj(P))``, so the forward keeps
``conj(X^)`` and the products come out conjugated where the inverse transforms expect it.

Rounding: each output is a sum over ``L^2`` frequencies of products, error about
``eps * log2(L^2) * |x| |w|`` per term (float32: ~1e-6 relative, float64: ~1e-15).
Memory kept for the backward: ``conj(X^)``, ``C * Lh * (Lw//2+1) * N`` complex numbers, about
``2 Lh Lw / (H W)`` times the input (the im2col columns are ``kh kw`` times the output).
"""
from __future__ import annotations

import numpy as np
import scipy.fft as sfft

from . import threads
from .convbase import FFT_POINT, ConvAlgorithm, ConvShape


def period(size: int, pad: tuple[int, int], out: int, kernel: int) -> int:
    """The smallest fast transform length ``L >= size + max(pad), out, kernel`` (see the module doc)."""
    return sfft.next_fast_len(max(size + max(pad), out, kernel), real=True)


def fft_conv_naive(x, w, pad):
    """Reference: the same algorithm with NumPy's FFTs, one image and channel pair at a time.

    ``x (N, C, H, W)``, ``w (F, C, kh, kw)``, ``pad ((t, b), (l, r))`` -> ``y (N, F, OH, OW)``.
    """
    n, c, h, wd = x.shape
    f, _, kh, kw = w.shape
    (t, b), (l, r) = pad
    oh, ow = h + t + b - kh + 1, wd + l + r - kw + 1
    lh, lw = period(h, (t, b), oh, kh), period(wd, (l, r), ow, kw)
    y = np.zeros((n, f, oh, ow))
    for fi in range(f):
        for ci in range(c):
            wp = np.zeros((lh, lw))
            for u in range(kh):
                for v in range(kw):
                    wp[(u - t) % lh, (v - l) % lw] = w[fi, ci, u, v]
            for ni in range(n):
                z = np.fft.irfft2(np.conj(np.fft.rfft2(wp)) * np.fft.rfft2(x[ni, ci], (lh, lw)), (lh, lw))
                y[ni, fi] += z[:oh, :ow]
    return y


class FFTConv(ConvAlgorithm):
    name = family = "fft"

    def __init__(self, shape: ConvShape):
        super().__init__(shape)
        s = shape
        self.lh = period(s.h, s.pad[0], s.oh, s.kh)
        self.lw = period(s.w, s.pad[1], s.ow, s.kw)
        self.k = self.lh * (self.lw // 2 + 1)
        # Where kernel tap (u, v) sits in the period: (u - t) mod Lh, (v - l) mod Lw.
        self.rows = ((np.arange(s.kh) - s.pad[0][0]) % self.lh)[:, None]
        self.cols = ((np.arange(s.kw) - s.pad[1][0]) % self.lw)[None, :]

    @classmethod
    def supports(cls, shape: ConvShape) -> bool:
        return shape.stride_one

    @classmethod
    def estimate(cls, shape: ConvShape, phase: str) -> float:
        s = shape
        lh, lw = period(s.h, s.pad[0], s.oh, s.kh), period(s.w, s.pad[1], s.ow, s.kw)
        points, freqs = lh * lw, lh * (lw // 2 + 1)
        product = 8 * freqs * s.f * s.c * s.n  # a complex multiply-add is 4 real ones, at about half the rate
        if phase == "forward":
            return FFT_POINT * points * (s.n * (s.c + s.f) + s.f * s.c) + product
        cost = FFT_POINT * points * (s.n * s.f + s.f * s.c) + product
        return cost + (FFT_POINT * points * s.n * s.c + product if phase == "backward" else 0)

    def _weights(self, w, workers):
        """``W'^`` as ``(K, F, C)``: each frequency's ``F x C`` matrix contiguous."""
        s = self.shape
        wbuf, _ = self.buffer("w", (self.lh, self.lw, s.f, s.c), w.dtype, zero=True)  # taps only ever rewritten
        wbuf[self.rows, self.cols] = w.transpose(2, 3, 0, 1)
        return sfft.rfft2(wbuf, axes=(0, 1), workers=workers).reshape(self.k, s.f, s.c)

    def _input(self, xb, workers):
        """``conj(X^)`` as ``(C, Lh, Lw//2+1, N)``."""
        return sfft.ihfft2(xb, s=(self.lh, self.lw), axes=(1, 2), norm="forward", workers=workers)

    def _per_frequency(self, a):
        """``(D, Lh, Lw//2+1, N)`` -> its ``(K, D, N)`` view: frequency-major matrices for matmul."""
        return a.reshape(a.shape[0], self.k, a.shape[-1]).transpose(1, 0, 2)

    def forward(self, xb, w, b, out=None, relu=False):
        s, workers = self.shape, threads.kernel_threads()
        wk = self._weights(w, workers)
        xc = self._input(xb, workers)
        p = np.empty((s.f, self.lh, self.lw // 2 + 1, s.n), dtype=xc.dtype)
        np.matmul(wk, self._per_frequency(xc), out=self._per_frequency(p))  # conj(Y^)
        z = sfft.hfft2(p, s=(self.lh, self.lw), axes=(1, 2), norm="forward", workers=workers)
        y = np.empty((s.f, s.oh, s.ow, s.n), dtype=xb.dtype) if out is None else out
        bias = b.reshape(-1, 1, 1, 1)
        def crop(f0, f1):
            np.add(z[f0:f1, : s.oh, : s.ow], bias[f0:f1], out=y[f0:f1])
            if relu:
                np.maximum(y[f0:f1], 0, out=y[f0:f1])

        threads.split(crop, s.f, y.size, workers)
        return y, (xc, wk)

    def backward(self, dyb, xb, w, ctx, need_dx, dx_out=None):
        s, workers = self.shape, threads.kernel_threads()
        xc, wk = (self._input(xb, workers), self._weights(w, workers)) if ctx is None else ctx
        dy_hat = sfft.rfft2(dyb, s=(self.lh, self.lw), axes=(1, 2), workers=workers)
        dyk = self._per_frequency(dy_hat)
        db = dy_hat[:, 0, 0, :].real.sum(axis=1).astype(dyb.dtype)
        # conj(dW'^)[k] = dY^[k] @ conj(X^)[k].T; hfft2 of the conjugate is irfft2 of dW'^.
        g = np.matmul(dyk, self._per_frequency(xc).transpose(0, 2, 1))
        dw_full = sfft.hfft2(g.reshape(self.lh, -1, s.f, s.c), s=(self.lh, self.lw), axes=(0, 1), norm="forward",
                             workers=workers)
        dw = np.ascontiguousarray(dw_full[self.rows, self.cols].transpose(2, 3, 0, 1))
        if not need_dx:
            return dw, db, None
        dx_hat = np.empty((s.c, self.lh, self.lw // 2 + 1, s.n), dtype=dy_hat.dtype)
        np.matmul(wk.transpose(0, 2, 1), dyk, out=self._per_frequency(dx_hat))
        dxc = sfft.irfft2(dx_hat, s=(self.lh, self.lw), axes=(1, 2), workers=workers)
        dx = np.empty((s.c, s.h, s.w, s.n), dtype=dyb.dtype) if dx_out is None else dx_out
        threads.split(lambda c0, c1: np.copyto(dx[c0:c1], dxc[c0:c1, : s.h, : s.w]), s.c, dx.size, workers)
        return dw, db, dx
