"""What every convolution algorithm shares: the layer's shape and the interface they implement.

A convolution ``x (N, C, H, W)``, weights ``W (F, C, kh, kw)``, bias ``b (F,)`` -> ``y (N, F, OH,
OW)`` (cross-correlation, as PyTorch's ``conv2d``) can be computed several ways with the same
result up to rounding: im2col + one matrix product (:mod:`cnn.im2col`), products of Fourier
transforms (:mod:`cnn.fftconv`), Winograd's minimal filtering (:mod:`cnn.winograd`). Each is a
:class:`ConvAlgorithm`: ``forward`` returns the output batch-last, ``(F, OH, OW, N)`` contiguous
(see :mod:`cnn.layout`), and a context; ``backward`` takes that context, or ``None`` when the
forward ran another algorithm, and returns ``dW, db, dx``. Which algorithm runs where is decided
per :class:`ConvShape` by :mod:`cnn.autotune`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .geometry import Padding4


@dataclass(frozen=True)
class ConvShape:
    """Everything an algorithm's speed depends on: sizes, stride, padding, dtype.

    ``pad`` is ``((top, bottom), (left, right))``; ``(oh, ow)`` the output's spatial size.
    """

    n: int
    c: int
    h: int
    w: int
    f: int
    kh: int
    kw: int
    sh: int
    sw: int
    pad: Padding4
    oh: int
    ow: int
    dtype: str

    @property
    def stride_one(self) -> bool:
        return self.sh == 1 and self.sw == 1

    @property
    def flops(self) -> int:
        """Forward FLOPs of the direct convolution: ``2 N F OH OW C kh kw`` (bias not counted)."""
        return 2 * self.n * self.f * self.oh * self.ow * self.c * self.kh * self.kw

    def key(self) -> str:
        """A stable text key for caches: every field, in order."""
        (t, b), (l, r) = self.pad
        return (f"n{self.n}-c{self.c}-h{self.h}-w{self.w}-f{self.f}-k{self.kh}x{self.kw}-s{self.sh}x{self.sw}"
                f"-p{t},{b},{l},{r}-{self.dtype}")


def batch_last(a: np.ndarray) -> np.ndarray:
    """``a (N, C, H, W)`` as its batch-last ``(C, H, W, N)`` view (a copy only if that view is not
    C-contiguous, e.g. for the model's NCHW input)."""
    return np.ascontiguousarray(a.transpose(1, 2, 3, 0))


def view_as(a: np.ndarray, shape) -> np.ndarray:
    """``a`` with ``shape``, never a copy (an ``AttributeError`` if the strides do not allow it):
    for outputs written through the view, where a silent copy would drop the results."""
    v = a.view()
    v.shape = shape
    return v


def as_nchw(b: np.ndarray) -> np.ndarray:
    """The ``(N, C, H, W)`` view of a batch-last ``(C, H, W, N)`` array."""
    return b.transpose(3, 0, 1, 2)


#: Rough costs in multiply-adds of a large matrix product, for :meth:`ConvAlgorithm.estimate`:
#: moving one float through a strided copy, and one point of a small 2-D FFT (measured on an
#: AVX-512 Xeon: ~0.2 ns and ~5 ns against ~0.01 ns per multiply-add). Only used to skip
#: candidates that cannot win; the autotune measures the rest.
COPY, FFT_POINT = 20, 250


class ConvAlgorithm:
    """One way to compute a convolution of a fixed :class:`ConvShape`.

    Subclasses set ``name`` and implement :meth:`supports`, :meth:`forward`, :meth:`backward`.
    An instance may keep scratch buffers from call to call (reuse saves page faults and the
    kernel's zero-filling of fresh pages); contexts returned by ``forward`` may point into them,
    so a context is valid until the next ``forward`` of the same instance.
    """

    name = ""

    def __init__(self, shape: ConvShape):
        self.shape = shape
        self._scratch: dict[str, np.ndarray] = {}

    @classmethod
    def supports(cls, shape: ConvShape) -> bool:  # pragma: no cover - interface
        raise NotImplementedError

    @classmethod
    def estimate(cls, shape: ConvShape, phase: str) -> float:  # pragma: no cover - interface
        """Rough cost of ``phase`` (``forward``, ``backward``, ``backward-dw``) in multiply-adds."""
        raise NotImplementedError

    def forward(self, xb: np.ndarray, w: np.ndarray, b: np.ndarray, out=None, relu=False):  # pragma: no cover
        """``xb (C, H, W, N)`` batch-last (any strides) -> ``(y (F, OH, OW, N), context)``.

        ``out``: an ``(F, OH, OW, N)`` array or view (one part of a larger batch) to write ``y``
        into; else ``y`` is a new contiguous array. ``relu``: return ``max(y, 0)`` instead, in
        the pass that writes ``y`` where the algorithm has one (see :mod:`cnn.fuse`).
        """
        raise NotImplementedError

    def backward(self, dyb: np.ndarray, xb: np.ndarray, w: np.ndarray, ctx, need_dx: bool,
                 dx_out=None):  # pragma: no cover - interface
        """``dyb (F, OH, OW, N)`` -> ``(dW (F, C, kh, kw), db (F,), dx (C, H, W, N) or None)``.

        ``ctx`` is what this algorithm's ``forward`` returned, or ``None`` (another algorithm ran
        the forward: recompute what is needed from ``xb``). ``dx_out``: where to write ``dx``.
        """
        raise NotImplementedError

    @staticmethod
    def finish(y: np.ndarray, relu: bool) -> np.ndarray:
        """``y`` with the fused ReLU applied in place, for algorithms with no output pass to fold it into."""
        if relu:
            from . import threads

            threads.split(lambda f0, f1: np.maximum(y[f0:f1], 0, out=y[f0:f1]), y.shape[0], y.size)
        return y

    def buffer(self, key: str, shape, dtype, zero: bool = False) -> tuple[np.ndarray, bool]:
        """A scratch array kept between calls, and whether it is new (``zero``: new ones start zeroed)."""
        shape = tuple(shape)
        buf = self._scratch.get(key)
        if buf is not None and buf.shape == shape and buf.dtype == dtype:
            return buf, False
        buf = self._scratch[key] = (np.zeros if zero else np.empty)(shape, dtype=dtype)
        return buf, True
