"""2-D convolution (cross-correlation, as in PyTorch) as im2col plus one matrix product.

Shapes: input ``x (N, C, H, W)``, weights ``W (F, C, kh, kw)``, bias ``b (F,)``, output
``y (N, F, OH, OW)`` with ``OH = (H + 2P - kh) // S + 1``. With ``cols = im2col(x)`` of shape
``(N*OH*OW, C*kh*kw)`` and ``Wm = W.reshape(F, -1)``:

    forward:   y    = cols @ Wm.T + b              (reshaped to N, F, OH, OW)
    backward:  dW   = dy2.T @ cols                  dy2 = dy as (N*OH*OW, F)
               db   = dy2.sum(0)
               dx   = col2im(dy2 @ Wm)             (the lecture's rotated-kernel convolution)

The code computes the same products transposed, on ``cols.T (C*kh*kw, OH*OW*N)`` with the batch
innermost (see :mod:`cnn.im2col` and :mod:`cnn.layout` for why): ``y.T = Wm @ cols.T`` comes out
as ``(F, OH, OW, N)``, which is returned as an ``(N, F, OH, OW)`` view rather than copied;
element-wise layers and pooling downstream keep that memory order, so the next convolution's
batch-last copy and ``dy.T`` here are plain reshapes.
"""
from __future__ import annotations

import numpy as np

from .geometry import PaddingArg, pair, positive_pair
from .im2col import col2im_t, conv_geometry, im2col_t
from .layer import Layer


class Conv2D(Layer):
    """``Conv2D(in_channels, out_channels, kernel_size, stride=1, padding=0)``.

    ``kernel_size`` and ``stride``: an int or a pair ``(h, w)``; ``padding``: an int, a pair or
    ``"same"`` (output ``ceil(H / S)``; for stride 1, PyTorch's ``padding="same"``).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding: PaddingArg = 0,
                 *, rng=None, dtype=np.float32, name: str = "conv"):
        super().__init__(name)
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size = positive_pair(kernel_size, f"{name} kernel_size")
        self.stride = positive_pair(stride, f"{name} stride")
        if not isinstance(padding, str):
            pair(padding, f"{name} padding")
        self.padding = padding
        self.needs_input_grad = True  # the first layer of a model turns this off
        self._scratch: dict[str, np.ndarray] = {}
        kh, kw = self.kernel_size
        fan_in = in_channels * kh * kw
        rng = np.random.default_rng(0) if rng is None else rng
        # He initialisation for ReLU: std = sqrt(2 / fan_in). Drawn in float64 so that float32 and
        # float64 models with the same seed start from the same weights.
        w = rng.standard_normal((out_channels, in_channels, kh, kw)) * np.sqrt(2.0 / fan_in)
        self.params = {"W": w.astype(dtype), "b": np.zeros(out_channels, dtype=dtype)}

    def _buffer(self, key: str, shape, dtype) -> np.ndarray:
        """A scratch array kept from step to step. Allocating tens of megabytes anew every step
        costs page faults and the kernel's zero-filling of fresh pages; reuse costs neither."""
        buf = self._scratch.get(key)
        if buf is None or buf.shape != shape or buf.dtype != dtype:
            buf = self._scratch[key] = np.empty(shape, dtype=dtype)
        return buf

    def forward(self, x: np.ndarray) -> np.ndarray:
        n = x.shape[0]
        k, s, pad, (oh, ow) = conv_geometry(x.shape, self.kernel_size, self.stride, self.padding)
        shape = (self.in_channels * k[0] * k[1], oh * ow * n)
        cols_t = im2col_t(x, k, s, pad, (oh, ow), out=self._buffer("cols", shape, x.dtype))  # the lecture's A'^T
        y = self.params["W"].reshape(self.out_channels, -1) @ cols_t
        y += self.params["b"][:, None]
        self.cache = (x.shape, cols_t, (k, s, pad, (oh, ow)))
        return y.reshape(self.out_channels, oh, ow, n).transpose(3, 0, 1, 2)

    def backward(self, dy: np.ndarray) -> np.ndarray | None:
        x_shape, cols_t, geometry = self.cache
        f = self.out_channels
        dy_t = dy.transpose(1, 2, 3, 0).reshape(f, -1)  # (F, OH*OW*N); no copy when dy is batch-last
        w = self.params["W"]
        self.grads = {"W": (dy_t @ cols_t.T).reshape(w.shape), "b": dy_t.sum(axis=1)}
        self.cache = None
        if not self.needs_input_grad:
            return None
        dcols = np.matmul(w.reshape(f, -1).T, dy_t, out=self._buffer("dcols", cols_t.shape, cols_t.dtype))
        return col2im_t(dcols, x_shape, *geometry)
