"""A worker's memory: read the shared data set batch by batch without keeping all of it resident.

The driver puts the sweep's data into Ray's object store once per node; a worker's ``ray.get``
maps it without copying (``MAP_SHARED`` pages of ``/dev/shm``). Every page a worker reads stays in
its resident set, so after one epoch each worker's RSS holds the whole data set, although the node
holds it once. :class:`PagedArray` copies each batch out and then hands the shared pages it read
back to the kernel (``madvise(MADV_DONTNEED)``): the data stays in the object store, and the next
read of a page maps it again from there (a minor fault, no I/O). A worker then needs its own
memory plus one window of data pages, not the data set.

Only a buffer that lies inside one shared mapping is ever released: for private memory
``MADV_DONTNEED`` would zero the data, so any other array is read as it is.
"""
from __future__ import annotations

import ctypes
import mmap
import sys
from typing import Optional

import numpy as np

MADV_DONTNEED = 4  # Linux
WINDOW = 16 * 2**20  # bytes copied out between two releases: what a worker keeps of the data set
# Paging costs a minor page fault per image read (a few microseconds; benchmarks/paging.py), so a
# data set smaller than this simply stays mapped: it adds at most this much to a worker.
MIN_BYTES = 64 * 2**20


def _libc():
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


_LIBC = _libc() if sys.platform.startswith("linux") else None


def shared_span(array: np.ndarray) -> Optional[tuple[int, int]]:
    """The whole pages ``[start, end)`` inside ``array``'s buffer when that buffer lies in one shared
    mapping of this process (Linux ``/proc/self/maps``, flag ``s``), else None."""
    if _LIBC is None or not isinstance(array, np.ndarray) or not array.flags.c_contiguous or array.nbytes == 0:
        return None
    start = array.ctypes.data
    end = start + array.nbytes
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                fields = line.split()
                lo, hi = (int(v, 16) for v in fields[0].split("-"))
                if lo <= start < hi:
                    if end > hi or fields[1][3] != "s":
                        return None
                    page = mmap.PAGESIZE
                    first, last = -(-start // page) * page, end // page * page
                    return (first, last) if last > first else None
    except OSError:
        return None
    return None


def release(span: tuple[int, int]) -> bool:
    """Drop this process's mappings of the shared pages in ``span``; their content stays in the store."""
    first, last = span
    return _LIBC.madvise(ctypes.c_void_p(first), ctypes.c_size_t(last - first), MADV_DONTNEED) == 0


def trim_heap() -> None:
    """Give the C heap's free pages back to the system (glibc ``malloc_trim``), so that a reused worker
    starts a trial from what it holds, not from the high-water mark of the trials before."""
    trim = getattr(_LIBC, "malloc_trim", None)
    if trim is not None:
        trim(0)


class PagedArray:
    """A read-only array indexed like a NumPy array, whose every read returns a private copy; once
    ``window`` bytes have been read, the shared pages behind it are released (see the module).

    Stands for ``Dataset.x`` of shape ``(N, C, H, W)``: ``shape``, ``dtype``, ``ndim``, ``len`` and
    indexing by slices or index arrays are what training and evaluation use.
    """

    def __init__(self, array: np.ndarray, window: int = WINDOW, span: Optional[tuple[int, int]] = None):
        self.array, self.window = array, window
        self.span = span if span is not None else shared_span(array)  # paged() found it already
        self.read_since_release = 0
        self.releases = 0
        if self.span is not None:  # what an earlier trial of this worker left mapped
            self.releases += release(self.span)

    shape = property(lambda self: self.array.shape)
    dtype = property(lambda self: self.array.dtype)
    ndim = property(lambda self: self.array.ndim)
    nbytes = property(lambda self: self.array.nbytes)

    def __len__(self) -> int:
        return len(self.array)

    def __array__(self, dtype=None, copy=None):
        return np.asarray(self.array, dtype=dtype)

    def __getitem__(self, index) -> np.ndarray:
        out = self.array[index]
        if np.may_share_memory(out, self.array):  # a view (slice): copy it out before its pages go
            out = np.array(out)
        if self.span is not None:
            # Scattered rows (a shuffled batch) each map a whole fault-around block (64 KiB on
            # Linux), not just their own bytes: such a read is released at once.
            self.read_since_release += out.nbytes if isinstance(index, slice) else self.window
            if self.read_since_release >= self.window:
                self.releases += release(self.span)
                self.read_since_release = 0
        return out


def threshold(mode: str) -> Optional[int]:
    """The bytes of data from which ``resources.page_data`` ``mode`` pages it (None: never)."""
    return {"auto": MIN_BYTES, "always": 0}.get(mode)


def release_all(*datasets) -> None:
    """Hand back the shared pages still mapped for these datasets' paged images (a trial's end)."""
    for dataset in datasets:
        x = getattr(dataset, "x", None)
        if isinstance(x, PagedArray) and x.span is not None:
            x.releases += release(x.span)
            x.read_since_release = 0


def paged(*datasets, window: int = WINDOW, min_bytes: int = MIN_BYTES) -> tuple:
    """``datasets`` (:class:`cnn.Dataset` or None) with their images read through a :class:`PagedArray`
    where they lie in shared memory, when all of them together hold at least ``min_bytes``."""
    if sum(d.x.nbytes for d in datasets if d is not None) < min_bytes:
        return datasets
    out = []
    for d in datasets:
        span = None if d is None else shared_span(d.x)
        out.append(d if span is None else type(d)(PagedArray(d.x, window, span), d.y))
    return tuple(out)
