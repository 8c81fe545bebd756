"""2-D convolution (cross-correlation, as in PyTorch) as im2col plus one matrix product.

Shapes: input ``x (N, C, H, W)``, weights ``W (F, C, kh, kw)``, bias ``b (F,)``, output
``y (N, F, OH, OW)`` with ``OH = (H + 2P - kh) // S + 1``. With ``cols = im2col(x)`` of shape
``(N*OH*OW, C*kh*kw)`` and ``Wm = W.reshape(F, -1)``:

    forward:   y    = cols @ Wm.T + b              (reshaped to N, F, OH, OW)
    backward:  dW   = dy2.T @ cols                  dy2 = dy as (N*OH*OW, F)
               db   = dy2.sum(0)
               dx   = col2im(dy2 @ Wm)             (the lecture's rotated-kernel convolution)
"""
from __future__ import annotations

import numpy as np

from .geometry import PaddingArg, pair, positive_pair
from .im2col import col2im, conv_geometry, pad_input, windows
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
        kh, kw = self.kernel_size
        fan_in = in_channels * kh * kw
        rng = np.random.default_rng(0) if rng is None else rng
        # He initialisation for ReLU: std = sqrt(2 / fan_in). Drawn in float64 so that float32 and
        # float64 models with the same seed start from the same weights.
        w = rng.standard_normal((out_channels, in_channels, kh, kw)) * np.sqrt(2.0 / fan_in)
        self.params = {"W": w.astype(dtype), "b": np.zeros(out_channels, dtype=dtype)}

    def forward(self, x: np.ndarray) -> np.ndarray:
        n = x.shape[0]
        k, s, pad, (oh, ow) = conv_geometry(x.shape, self.kernel_size, self.stride, self.padding)
        # (N, OH, OW, C, kh, kw) in one copy; its rows are the lecture's A' rows.
        cols = windows(pad_input(x, pad), k, s, (oh, ow)).transpose(0, 2, 3, 1, 4, 5).reshape(n * oh * ow, -1)
        w = self.params["W"].reshape(self.out_channels, -1)
        y = cols @ w.T
        y += self.params["b"]
        self.cache = (x.shape, cols)
        return y.reshape(n, oh, ow, self.out_channels).transpose(0, 3, 1, 2)

    def backward(self, dy: np.ndarray) -> np.ndarray | None:
        x_shape, cols = self.cache
        f = self.out_channels
        dy2 = dy.transpose(0, 2, 3, 1).reshape(-1, f)
        w = self.params["W"]
        self.grads = {"W": (dy2.T @ cols).reshape(w.shape), "b": dy2.sum(axis=0)}
        self.cache = None
        if not self.needs_input_grad:
            return None
        return col2im(dy2 @ w.reshape(f, -1), x_shape, self.kernel_size, self.stride, self.padding)
