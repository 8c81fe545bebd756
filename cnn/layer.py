"""The layer protocol: ``y = forward(x)`` caches what ``dx = backward(dy)`` needs.

A layer with parameters keeps them in ``params`` (name -> array) and, after ``backward``, their
gradients in ``grads`` under the same names. Optimizers update ``params`` in place. State that
is saved with the model but not learned by gradients (batch norm's running statistics) lives in
``buffers``. ``training`` selects the training or the evaluation behaviour of the layers whose
two differ (dropout, batch norm); :meth:`cnn.Model.train` and :meth:`cnn.Model.eval` set it.
"""
from __future__ import annotations

import numpy as np


class Layer:
    def __init__(self, name: str = ""):
        self.name = name
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}
        self.buffers: dict[str, np.ndarray] = {}
        self.training = True
        self.cache = None

    def forward(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    def backward(self, dy: np.ndarray) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.forward(x)

    def __repr__(self) -> str:
        shapes = ", ".join(f"{k}={tuple(v.shape)}" for k, v in self.params.items())
        return f"{type(self).__name__}({self.name}{': ' + shapes if shapes else ''})"
