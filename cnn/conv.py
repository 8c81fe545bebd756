"""2-D convolution (cross-correlation, as in PyTorch), computed by the fastest of several algorithms.

Shapes: input ``x (N, C, H, W)``, weights ``W (F, C, kh, kw)``, bias ``b (F,)``, output
``y (N, F, OH, OW)`` with ``OH = (H + 2P - kh) // S + 1``:

    y[n, f, i, j] = b[f] + sum_{c, u, v} xp[n, c, i*S + u, j*S + v] W[f, c, u, v]     (xp: x padded)

The lecture's algorithm is im2col plus one matrix product (:mod:`cnn.im2col`): with
``cols = im2col(x)`` of shape ``(N*OH*OW, C*kh*kw)`` and ``Wm = W.reshape(F, -1)``,

    forward:   y  = cols @ Wm.T + b
    backward:  dW = dy2.T @ cols    db = dy2.sum(0)    dx = col2im(dy2 @ Wm)     (dy2: dy as N*OH*OW x F)

Others compute the same numbers with less work for some shapes: the Fourier transform, by FFTs
(:mod:`cnn.fftconv`) or by matrix products (:mod:`cnn.dftconv`) (stride 1; large kernels, many
channels, small maps), Winograd's F(2x2, 3x3)
(:mod:`cnn.winograd`, 3x3 stride 1), and, for the backward's ``dx``, one product per
kernel offset added onto shifted slices (``shift`` in :mod:`cnn.im2col`). Each layer shape
takes the fastest, measured on this machine (:mod:`cnn.autotune`); the forward and the backward
choose separately. ``Conv2D(..., algorithm="fft")`` (or ``"im2col/shift"``: forward/backward)
fixes the choice instead.

Every algorithm takes and returns batch-last memory (see :mod:`cnn.layout`): ``y`` is an
``(N, F, OH, OW)`` view of an ``(F, OH, OW, N)`` array, which element-wise layers and pooling
downstream keep, so the next convolution's input and ``dy`` here need no copy.
"""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import replace
from functools import partial

import numpy as np

from . import autotune, heap, threads
from .convbase import ConvShape, as_nchw, batch_last
from .blocked import BlockedConv
from .dftconv import DFTConv
from .fftconv import FFTConv
from .geometry import PaddingArg, pair, positive_pair
from .im2col import Im2colConv, ShiftConv, conv_geometry
from .layer import Layer
from .winograd import WinogradConv

ALGORITHMS = {a.name: a for a in (Im2colConv, ShiftConv, BlockedConv, FFTConv, DFTConv, WinogradConv)}
#: Candidates per phase (``shift`` differs from ``im2col`` only in the backward).
PHASES = {"forward": ("im2col", "blocked", "fft", "dft", "winograd"),
          "backward": ("im2col", "shift", "blocked", "fft", "dft", "winograd")}
#: Algorithm instances (and their scratch buffers) a layer keeps, for its most recent shapes.
KEEP = 6
#: Candidates estimated (ConvAlgorithm.estimate) above this multiple of the best are not measured.
PLAUSIBLE = 4.0
#: Layers of fewer forward FLOPs run im2col unmeasured: a measurement would cost more than any
#: gain, and the lecture's direct sums stay exact (integers in, integers out).
SMALL_FLOPS = 2_000_000
#: Forwards of each kind (split batch, whole batch) after the first, when choosing between them.
SPLIT_REPS = 4


class Conv2D(Layer):
    """``Conv2D(in_channels, out_channels, kernel_size, stride=1, padding=0, algorithm=None)``.

    ``kernel_size`` and ``stride``: an int or a pair ``(h, w)``; ``padding``: an int, a pair or
    ``"same"`` (output ``ceil(H / S)``; for stride 1, PyTorch's ``padding="same"``).
    ``algorithm``: None (measured per shape), a name of :data:`ALGORITHMS` for both phases, or
    ``"FORWARD/BACKWARD"``; a named algorithm must support the layer's shape.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding: PaddingArg = 0,
                 *, rng=None, dtype=np.float32, name: str = "conv", algorithm: str | None = None):
        super().__init__(name)
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size = positive_pair(kernel_size, f"{name} kernel_size")
        self.stride = positive_pair(stride, f"{name} stride")
        if not isinstance(padding, str):
            pair(padding, f"{name} padding")
        self.padding = padding
        self.algorithm = self._requested(algorithm)
        self.needs_input_grad = True  # the first layer of a model turns this off
        #: "relu": apply max(y, 0) to the output (cnn.fuse links the ReLU layer after).
        self.activation: str | None = None
        self._algos: dict[tuple, object] = {}
        self._chosen: dict[tuple, str] = {}
        #: The algorithm of the latest forward and backward: ``{"forward": name, "backward": name}``.
        self.chosen: dict[str, str] = {}
        kh, kw = self.kernel_size
        fan_in = in_channels * kh * kw
        rng = np.random.default_rng(0) if rng is None else rng
        # He initialisation for ReLU: std = sqrt(2 / fan_in). Drawn in float64 so that float32 and
        # float64 models with the same seed start from the same weights.
        w = rng.standard_normal((out_channels, in_channels, kh, kw)) * np.sqrt(2.0 / fan_in)
        self.params = {"W": w.astype(dtype), "b": np.zeros(out_channels, dtype=dtype)}

    def __getstate__(self):
        # Scratch buffers and the forward's context are working memory, not the layer: never copied.
        state = self.__dict__.copy()
        state.update(_algos={}, cache=None)
        return state

    def _requested(self, algorithm):
        if algorithm is None:
            return None
        fwd, _, bwd = str(algorithm).partition("/")
        bwd = bwd or fwd
        fwd = "im2col" if fwd == "shift" else fwd  # shift's forward is im2col's
        for phase, chosen in (("forward", fwd), ("backward", bwd)):
            if chosen not in PHASES[phase]:
                raise ValueError(f"{self.name}: {phase} algorithm must be one of {', '.join(PHASES[phase])}, "
                                 f"got {chosen!r}")
        return {"forward": fwd, "backward": bwd}

    def shape_of(self, x_shape, dtype) -> ConvShape:
        """The :class:`ConvShape` of this layer applied to an input of ``x_shape``."""
        n, c = x_shape[:2]
        if c != self.in_channels:
            raise ValueError(f"{self.name}: expected {self.in_channels} input channels, got input of shape {x_shape}")
        (kh, kw), (sh, sw), pad, (oh, ow) = conv_geometry(x_shape, self.kernel_size, self.stride, self.padding)
        return ConvShape(n, c, x_shape[2], x_shape[3], self.out_channels, kh, kw, sh, sw, pad, oh, ow,
                         np.dtype(dtype).name)

    def _instance(self, shape: ConvShape, name: str, part: int = 0):
        """The algorithm object (its scratch buffers) for ``shape``; one per batch part, as parts run at once."""
        key = (shape, name, part)
        algo = self._algos.pop(key, None) or ALGORITHMS[name](shape)
        self._algos[key] = algo  # most recent last
        while len(self._algos) > KEEP:
            self._algos.pop(next(iter(self._algos)))
        return algo

    def _pick(self, phase: str, shape: ConvShape, trials) -> str:
        """The algorithm for ``phase`` of ``shape``: requested, remembered, cached or measured.

        ``trials(names, n)``: ``name -> callable`` running the phase on the first ``n`` images.
        """
        base = phase.split("-")[0]
        names = [n for n in PHASES[base] if ALGORITHMS[n].supports(shape)]
        if self.algorithm is not None:
            wanted = self.algorithm[base]
            if wanted not in names:
                raise ValueError(f"{self.name}: algorithm {wanted!r} does not support kernel {self.kernel_size}, "
                                 f"stride {self.stride} (supported here: {', '.join(names)})")
            return wanted
        env = autotune.forced(base)
        if env in names:
            return env
        if phase == "backward-dw":  # without dx, shift's backward is im2col's: nothing to measure
            names.remove("shift")
        if shape.flops < SMALL_FLOPS:
            return "im2col"
        memo = (phase, shape, threads.kernel_threads())
        if memo not in self._chosen:
            cost = {n: ALGORITHMS[n].estimate(shape, phase) for n in names}
            plausible = [n for n in names if cost[n] <= PLAUSIBLE * min(cost.values())]
            self._chosen[memo] = autotune.choose(phase, shape, memo[2], plausible, trials)
        return self._chosen[memo]

    def _algorithm(self, shape: ConvShape, name: str, n: int):
        """The layer's own instance at its real batch; a throwaway one for a trial on fewer images."""
        return self._instance(shape, name) if n == shape.n else ALGORITHMS[name](replace(shape, n=n))

    def _parts(self, shape: ConvShape, xb: np.ndarray, t: int):
        """``[(start, stop, part shape)]``: the batch split over ``t`` kernel threads (see
        cnn.threads), or one part when the split does not pay for this shape (:meth:`_split_pays`)."""
        bounds = threads.batch_parts(shape.n, t)
        if len(bounds) > 1 and not self._split_pays(shape, xb, t):
            bounds = [(0, shape.n)]
        return [(a, b, replace(shape, n=b - a)) for a, b in bounds]

    def _split_pays(self, shape: ConvShape, xb: np.ndarray, t: int) -> bool:
        """At ``t`` threads, split the batch (each part on a thread of its own), or run it whole on
        this thread as one thread would? Measured once per shape and thread count (the median of
        a few forwards each way, in wall time): on small layers handing parts to threads costs
        more than it gains, and on a busy machine a part may wait for a core. So a layer at two
        threads is not slower than at one, within that measurement's noise."""
        forced = autotune.forced_split()
        if forced is not None:
            return forced
        if shape.flops < SMALL_FLOPS:
            return False
        memo = ("split", shape, t)
        if memo not in self._chosen:
            self._chosen[memo] = autotune.choose("split", shape, t, ["split", "whole"],
                                                 partial(self._split_trials, shape, xb, t),
                                                 reps=SPLIT_REPS, typical=True)
        return self._chosen[memo] == "split"

    def _split_trials(self, shape: ConvShape, xb: np.ndarray, t: int, names, n: int) -> dict:
        s, xs = replace(shape, n=n), _first(xb, n)
        out = {}
        for name in names:
            bounds = threads.batch_parts(n, t) if name == "split" else [(0, n)]
            parts = [(a, z, replace(s, n=z - a)) for a, z in bounds]
            algos = [ALGORITHMS[self._pick_forward(p, xs[..., a:z])](p) for a, z, p in parts]
            out[name] = partial(self._forward_parts, xs, parts, algos)
        return out

    def _forward_parts(self, xb: np.ndarray, parts, algos):
        """``(y, [(y part, context)])``: each part's forward on a thread of its own, into one ``y``."""
        w, b = self.params["W"], self.params["b"]
        whole = len(parts) == 1
        _, n, s = parts[-1]
        y = None if whole else np.empty((s.f, s.oh, s.ow, n), dtype=w.dtype)

        def run(i):
            a, z, _ = parts[i]
            return algos[i].forward(xb[..., a:z], w, b, out=None if whole else y[..., a:z],
                                    relu=self.activation == "relu")

        done = threads.run_all([partial(run, i) for i in range(len(parts))])
        return (done[0][0] if whole else y), done

    def forward(self, x: np.ndarray) -> np.ndarray:
        heap.keep_freed_memory()
        w = self.params["W"]
        shape = self.shape_of(x.shape, w.dtype)
        xb = batch_last(x.astype(w.dtype, copy=False))
        t = threads.kernel_threads()
        # At more threads than one the BLAS stays at one: the threads are the batch parts'.
        with nullcontext() if t == 1 else threads.serial_blas():
            parts = self._parts(shape, xb, t)
            names = [self._pick_forward(s, xb[..., a:z]) for a, z, s in parts]
            y, done = self._forward_parts(xb, parts, [self._instance(s, names[i], i)
                                                      for i, (_, _, s) in enumerate(parts)])
        self.chosen["forward"] = names[0]
        self.cache = (shape, xb, parts, names, [ctx for _, ctx in done], t)
        return as_nchw(y)

    def _pick_forward(self, shape: ConvShape, xb: np.ndarray) -> str:
        w, b = self.params["W"], self.params["b"]

        def trials(names, n):
            xs = _first(xb, n)
            return {name: partial(self._algorithm(shape, name, n).forward, xs, w, b) for name in names}

        return self._pick("forward", shape, trials)

    def _pick_backward(self, shape, xb, dyb, forward_name, ctx) -> str:
        w, need = self.params["W"], self.needs_input_grad
        family = ALGORITHMS[forward_name].family

        def trials(names, n):
            xs, dys, own = _first(xb, n), _first(dyb, n), ctx
            if n != shape.n and any(ALGORITHMS[name].family == family for name in names):
                own = self._algorithm(shape, forward_name, n).forward(xs, w, self.params["b"])[1]
            return {name: partial(self._algorithm(shape, name, n).backward, dys, xs, w,
                                  own if ALGORITHMS[name].family == family else None, need) for name in names}

        return self._pick("backward" if need else "backward-dw", shape, trials)

    def backward(self, dy: np.ndarray) -> np.ndarray | None:
        shape, xb, parts, forward_names, ctxs, t = self.cache
        w, need = self.params["W"], self.needs_input_grad
        dyb = batch_last(dy.astype(w.dtype, copy=False))
        whole = len(parts) == 1
        with nullcontext() if t == 1 else threads.serial_blas():
            names = [self._pick_backward(s, xb[..., a:z], dyb[..., a:z], forward_names[i], ctxs[i])
                     for i, (a, z, s) in enumerate(parts)]
            dx = None if whole or not need else np.empty((shape.c, shape.h, shape.w, shape.n), dtype=w.dtype)

            def run(i):
                a, z, s = parts[i]
                algo = self._instance(s, names[i], i)
                own = ctxs[i] if algo.family == ALGORITHMS[forward_names[i]].family else None
                return algo.backward(dyb[..., a:z], xb[..., a:z], w, own, need,
                                     dx_out=None if dx is None else dx[..., a:z])

            done = threads.run_all([partial(run, i) for i in range(len(parts))])
        self.chosen["backward"] = names[0]
        dw, db = done[0][0], done[0][1]
        for part in done[1:]:
            dw = dw + part[0]
            db = db + part[1]
        self.grads = {"W": dw, "b": db}
        self.cache = None
        dx = done[0][2] if whole else dx
        return None if dx is None else as_nchw(dx)


def _first(b: np.ndarray, n: int) -> np.ndarray:
    """The first ``n`` images of a batch-last array, contiguous."""
    return b if n == b.shape[-1] else np.ascontiguousarray(b[..., :n])
