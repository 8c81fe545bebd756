"""Batch normalisation over the batch (and, for images, every pixel) of each channel, as PyTorch's
``nn.BatchNorm1d`` (input ``(N, C)``, after a dense layer) and ``nn.BatchNorm2d`` (``(N, C, H, W)``,
after a convolution). With ``m`` values per channel (N, or N*H*W), ``eps = 1e-5``, ``momentum = 0.1``:

    train:  mu = mean(x),  var = mean((x - mu)^2)               (biased, over the m values)
            xh = (x - mu) / sqrt(var + eps)                      y = gamma * xh + beta
            running_mean <- (1 - momentum) running_mean + momentum mu
            running_var  <- (1 - momentum) running_var  + momentum var * m / (m - 1)   (unbiased)
            dgamma = sum(dy * xh)    dbeta = sum(dy)
            dx = gamma / (m sqrt(var + eps)) * (m dy - dbeta - xh dgamma)
    eval:   xh = (x - running_mean) / sqrt(running_var + eps)    y = gamma * xh + beta
            dx = dy * gamma / sqrt(running_var + eps)             (the same dgamma, dbeta)

``gamma`` and ``beta`` are parameters (initialised to 1 and 0); the running statistics are buffers
(saved with the model, not trained by gradients). A single value per channel in training (a last
batch of one image after a dense layer) has no unbiased variance: it normalises to ``beta`` and
updates the running variance with the biased 0, where PyTorch raises.
"""
from __future__ import annotations

import numpy as np

from .layer import Layer


class BatchNorm(Layer):
    """``BatchNorm(channels)``: normalises axis 1 of ``(N, C)`` or ``(N, C, H, W)`` inputs."""

    def __init__(self, channels: int, *, eps: float = 1e-5, momentum: float = 0.1, dtype=np.float32,
                 name: str = "bn"):
        super().__init__(name)
        self.channels, self.eps, self.momentum = int(channels), float(eps), float(momentum)
        self.params = {"gamma": np.ones(channels, dtype=dtype), "beta": np.zeros(channels, dtype=dtype)}
        self.buffers = {"running_mean": np.zeros(channels, dtype=dtype),
                        "running_var": np.ones(channels, dtype=dtype)}

    def _axes(self, x: np.ndarray):
        """The reduced axes and the shape that broadcasts a per-channel vector against ``x``."""
        if x.ndim not in (2, 4) or x.shape[1] != self.channels:
            raise ValueError(f"{self.name}: expected input (N, {self.channels}) or (N, {self.channels}, H, W), "
                             f"got {x.shape}")
        return ((0,), (self.channels,)) if x.ndim == 2 else ((0, 2, 3), (self.channels, 1, 1))

    def forward(self, x: np.ndarray) -> np.ndarray:
        axes, shape = self._axes(x)
        gamma, beta = self.params["gamma"], self.params["beta"]
        if self.training:
            m = x.size // self.channels
            mean = x.mean(axis=axes)
            xc = x - mean.reshape(shape)
            var = np.square(xc).mean(axis=axes)
            inv = 1 / np.sqrt(var + self.eps)
            xh = np.multiply(xc, inv.reshape(shape), out=xc)
            rm, rv, mom = self.buffers["running_mean"], self.buffers["running_var"], self.momentum
            rm *= 1 - mom
            rm += mom * mean
            rv *= 1 - mom
            rv += mom * var * (m / (m - 1) if m > 1 else 1.0)
        else:
            inv = 1 / np.sqrt(self.buffers["running_var"] + self.eps)
            xh = (x - self.buffers["running_mean"].reshape(shape)) * inv.reshape(shape)
        self.cache = (xh, inv, self.training)
        y = xh * gamma.reshape(shape)
        y += beta.reshape(shape)
        return y

    def backward(self, dy: np.ndarray) -> np.ndarray:
        (xh, inv, training), self.cache = self.cache, None
        axes, shape = self._axes(dy)
        dbeta = dy.sum(axis=axes)
        dgamma = (dy * xh).sum(axis=axes)
        self.grads = {"gamma": dgamma, "beta": dbeta}
        scale = (self.params["gamma"] * inv).reshape(shape)
        if not training:
            return dy * scale
        m = dy.size // self.channels
        dx = xh * (dgamma / m).reshape(shape)
        np.subtract(dy, dx, out=dx)
        dx -= (dbeta / m).reshape(shape)
        dx *= scale
        return dx
