"""Memory order of the arrays layers hand each other.

Every layer takes and returns ``(N, C, H, W)`` arrays, as PyTorch does; only the memory behind
them differs. A convolution stores its output batch-last, ``(C, H, W, N)`` in memory, and returns
an ``(N, C, H, W)`` view of it (``y.strides`` are then those of ``y.transpose(3, 0, 1, 2)`` of a
contiguous array). Why: the im2col copy, its adjoint and the pooling reductions all take strided
slices along H and W; with N innermost each slice moves runs of N (stride > 1) or OW * N
(stride 1) contiguous floats instead of runs of OW floats (5-14 in the lecture's networks), which
made im2col 2-7x and col2im 2-7x faster in the benchmark's layers. Element-wise NumPy keeps the
order of its inputs (order "K"), so ReLU and sigmoid pass it on for free; the pooling layer and
``Flatten``'s backward allocate with :func:`empty_as` to do the same.
"""
from __future__ import annotations

import numpy as np

#: Memory order (outermost axis first) of a batch-last ``(N, C, H, W)`` array.
BATCH_LAST = (1, 2, 3, 0)


def memory_order(x: np.ndarray) -> tuple[int, ...]:
    """The axes of ``x`` from the outermost in memory to the innermost (largest stride first)."""
    return tuple(sorted(range(x.ndim), key=lambda a: -abs(x.strides[a])))


def empty_ordered(shape, order, dtype) -> np.ndarray:
    """An uninitialised array of ``shape`` whose memory runs in ``order`` (see :func:`memory_order`)."""
    buf = np.empty([shape[a] for a in order], dtype=dtype)
    return buf.transpose(np.argsort(order))


def empty_as(ref: np.ndarray, shape=None, dtype=None) -> np.ndarray:
    """Like ``np.empty_like(ref)``, for another ``shape`` of the same rank, in ``ref``'s memory order."""
    shape = ref.shape if shape is None else tuple(shape)
    return empty_ordered(shape, memory_order(ref), ref.dtype if dtype is None else dtype)


def zeros_as(ref: np.ndarray, shape=None, dtype=None) -> np.ndarray:
    out = empty_as(ref, shape, dtype)
    out.fill(0)
    return out


def batch_last(x: np.ndarray, pad=((0, 0), (0, 0))) -> np.ndarray:
    """``x (N, C, H, W)`` as a contiguous ``(C, Hp, Wp, N)``, zero-padded: pad and reorder in one copy.

    ``pad`` is ``((top, bottom), (left, right))``. Without padding, an input that is already
    batch-last comes back as a view, not a copy.
    """
    n, c, h, w = x.shape
    (top, bottom), (left, right) = pad
    mem = x.transpose(1, 2, 3, 0)
    if not top + bottom + left + right:
        return np.ascontiguousarray(mem)
    out = np.zeros((c, h + top + bottom, w + left + right, n), dtype=x.dtype)
    out[:, top : top + h, left : left + w] = mem
    return out
