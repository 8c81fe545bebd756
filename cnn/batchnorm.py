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

The code keeps ``xc = x - mu`` (training) or ``x`` (evaluation) and folds every per-channel factor
into one multiply-add, ``y = xc * (gamma / std) + beta`` and ``dx = dy * a + xc * b + c``, so that
a step makes few passes over the activations; per-channel sums read each channel as one
contiguous run when the memory allows (batch-last after a convolution, see :mod:`cnn.layout`).
"""
from __future__ import annotations

import numpy as np

from .layer import Layer


def _runs(a: np.ndarray):
    """``a``'s values as a ``(C, M)`` view, one row per channel, when its memory allows; else None."""
    if a.ndim == 2:
        flat = a.T
        return flat if flat.flags.c_contiguous else None
    for axes in ((1, 2, 3, 0), (1, 0, 2, 3)):
        view = a.transpose(axes)
        if view.flags.c_contiguous:
            return view.reshape(view.shape[0], -1)
    return None


def channel_sum(a: np.ndarray) -> np.ndarray:
    """``sum(a)`` over every axis but 1."""
    flat = _runs(a)
    return flat.sum(axis=1) if flat is not None else a.sum(axis=(0,) if a.ndim == 2 else (0, 2, 3))


def channel_dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``sum(a * b)`` over every axis but 1, without the product's array."""
    fa, fb = _runs(a), _runs(b)
    if fa is not None and fb is not None and a.strides == b.strides:
        return np.einsum("cm,cm->c", fa, fb)
    return np.einsum("nc,nc->c" if a.ndim == 2 else "nchw,nchw->c", a, b)


class BatchNorm(Layer):
    """``BatchNorm(channels)``: normalises axis 1 of ``(N, C)`` or ``(N, C, H, W)`` inputs."""

    def __init__(self, channels: int, *, eps: float = 1e-5, momentum: float = 0.1, dtype=np.float32,
                 name: str = "bn"):
        super().__init__(name)
        self.channels, self.eps, self.momentum = int(channels), float(eps), float(momentum)
        self.params = {"gamma": np.ones(channels, dtype=dtype), "beta": np.zeros(channels, dtype=dtype)}
        self.buffers = {"running_mean": np.zeros(channels, dtype=dtype),
                        "running_var": np.ones(channels, dtype=dtype)}

    def _shape(self, x: np.ndarray) -> tuple:
        """The shape that broadcasts a per-channel vector against ``x``."""
        if x.ndim not in (2, 4) or x.shape[1] != self.channels:
            raise ValueError(f"{self.name}: expected input (N, {self.channels}) or (N, {self.channels}, H, W), "
                             f"got {x.shape}")
        return (self.channels,) if x.ndim == 2 else (self.channels, 1, 1)

    def forward(self, x: np.ndarray) -> np.ndarray:
        shape = self._shape(x)
        gamma, beta = self.params["gamma"], self.params["beta"]
        m = x.size // self.channels
        if self.training:
            mean = channel_sum(x) / m
            xc = x - mean.reshape(shape)  # keeps x's memory order
            var = channel_dot(xc, xc) / m
            rm, rv, mom = self.buffers["running_mean"], self.buffers["running_var"], self.momentum
            rm *= 1 - mom
            rm += mom * mean
            rv *= 1 - mom
            rv += mom * var * (m / (m - 1) if m > 1 else 1.0)
            inv = 1 / np.sqrt(var + self.eps)
            y = xc * (gamma * inv).reshape(shape)
            y += beta.reshape(shape)
        else:
            inv = 1 / np.sqrt(self.buffers["running_var"] + self.eps)
            scale = gamma * inv
            xc = x
            y = x * scale.reshape(shape)
            y += (beta - self.buffers["running_mean"] * scale).reshape(shape)
        self.cache = (xc, inv, self.training)
        return y

    def backward(self, dy: np.ndarray) -> np.ndarray:
        (xc, inv, training), self.cache = self.cache, None
        shape = self._shape(dy)
        gamma = self.params["gamma"]
        dbeta = channel_sum(dy)
        if training:  # xh = xc * inv
            dgamma = channel_dot(dy, xc) * inv
        else:  # xh = (x - running_mean) * inv
            dgamma = (channel_dot(dy, xc) - self.buffers["running_mean"] * dbeta) * inv
        self.grads = {"gamma": dgamma, "beta": dbeta}
        a = gamma * inv
        dx = dy * a.reshape(shape)
        if training:
            m = dy.size // self.channels
            dx += xc * (-a * inv * dgamma / m).reshape(shape)
            dx -= (a * dbeta / m).reshape(shape)
        return dx
