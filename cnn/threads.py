"""How many threads the kernels may use, and NumPy work split across them.

The BLAS thread limit is the kernels' whole budget: a trial that runs under
``threadpool_limits(1)`` (as every sweep trial does, with its CPU count) gets single-threaded
kernels everywhere, FFTs, copies and element-wise passes included, not only in the matmuls. With
``T > 1`` threads, work NumPy runs on one core (strided copies, ufunc passes) is split into ``T``
chunks along an outer axis and run on a small thread pool: NumPy releases the GIL inside its
loops (matrix products and SciPy's FFTs too), so the chunks run in parallel.

A convolution splits its batch instead (:func:`batch_parts`): each part runs the whole layer on
one thread with the BLAS held to one thread (:func:`serial_blas`), so the threads meet once per
layer, not at every matrix product. Measured here on a loaded machine, two threads that way ran
a 7x7 layer 5x faster than the BLAS's own two threads, whose every product waits for both.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from concurrent.futures import ThreadPoolExecutor

#: Below this many elements a pass is not worth splitting: handing a chunk to a thread costs
#: tens of microseconds, a pass over 64k floats about as much.
MIN_SPLIT = 1 << 16

_state: dict = {"blas": None, "pool": None, "pid": None, "forced": None}


def _blas_controllers():
    if _state["blas"] is None:
        from threadpoolctl import ThreadpoolController

        libs = [lc for lc in ThreadpoolController().lib_controllers if lc.user_api == "blas"]
        # NumPy's own BLAS (the one its matmul calls) when it can be told apart, else all of them.
        own = [lc for lc in libs if "numpy" in str(lc.filepath)]
        _state["blas"] = own or libs
    return _state["blas"]


def kernel_threads() -> int:
    """Threads the kernels may use now: the BLAS's current limit (1 when none is loaded).

    ``CNN_THREADS`` (an int >= 1) caps it; :func:`force` overrides it (tests).
    """
    if _state["forced"] is not None:
        return _state["forced"]
    libs = _blas_controllers()
    n = min((lc.num_threads for lc in libs), default=1) if libs else 1
    cap = os.environ.get("CNN_THREADS", "")
    if cap.isdigit() and int(cap) >= 1:
        n = min(n, int(cap))
    return max(1, int(n))


def force(threads: int | None) -> None:
    """Pin :func:`kernel_threads` to ``threads`` (None: follow the BLAS again)."""
    _state["forced"] = None if threads is None else max(1, int(threads))


def _pool(workers: int) -> ThreadPoolExecutor:
    # A pool made before a fork is dead in the child: make a new one per process.
    if _state["pool"] is None or _state["pid"] != os.getpid() or _state["pool"]._max_workers < workers:
        _state["pool"] = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cnn-kernel")
        _state["pid"] = os.getpid()
    return _state["pool"]


def chunks(n: int, parts: int) -> list[tuple[int, int]]:
    """``parts`` (or fewer) contiguous ``(start, stop)`` ranges covering ``range(n)``, sizes within one."""
    parts = max(1, min(parts, n))
    bounds = [n * i // parts for i in range(parts + 1)]
    return [(a, b) for a, b in zip(bounds, bounds[1:]) if b > a]


#: A batch part smaller than this is not worth a thread of its own.
MIN_PART = 8


def batch_parts(n: int, threads: int) -> list[tuple[int, int]]:
    """``(start, stop)`` of each thread's share of a batch of ``n`` (one part: no split)."""
    return chunks(n, min(threads, max(1, n // MIN_PART)))


@contextmanager
def serial_blas():
    """The BLAS held to one thread for the block (then back to its limit), and
    :func:`kernel_threads` 1 inside it: for work that runs on threads of its own."""
    libs = _blas_controllers()
    before = [lc.num_threads for lc in libs]
    forced = _state["forced"]
    try:
        for lc in libs:
            lc.set_num_threads(1)
        _state["forced"] = 1
        yield
    finally:
        _state["forced"] = forced
        for lc, n in zip(libs, before):
            lc.set_num_threads(n)


def run_all(fns: list) -> list:
    """Call every function of ``fns`` on a thread of its own (the first on this one); their results."""
    if len(fns) == 1:
        return [fns[0]()]
    futures = [_pool(len(fns) - 1).submit(fn) for fn in fns[1:]]
    first = fns[0]()
    return [first] + [f.result() for f in futures]


def split(fn, n: int, size: int, threads: int | None = None) -> None:
    """Run ``fn(start, stop)`` over ``range(n)`` in chunks, one per thread.

    ``size`` is the number of elements the whole call touches; small calls run inline. ``fn``
    must write disjoint outputs per chunk.
    """
    threads = kernel_threads() if threads is None else threads
    if threads <= 1 or n < 2 or size < MIN_SPLIT:
        fn(0, n)
        return
    parts = chunks(n, threads)
    futures = [_pool(threads - 1).submit(fn, a, b) for a, b in parts[1:]]
    fn(*parts[0])
    for fut in futures:
        fut.result()
