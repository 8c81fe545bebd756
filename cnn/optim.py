"""Optimizers, with PyTorch's update rules so a parity test can compare step by step.

    SGD:   v = mu * v + (g + wd * p);                  p -= lr * v
    Adam:  m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
           p -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
Parameters are updated in place; optimizer state is keyed by the parameter's qualified name.
"""
from __future__ import annotations

import numpy as np


class Optimizer:
    def __init__(self, lr: float, weight_decay: float = 0.0):
        if not lr > 0:
            raise ValueError(f"learning rate must be > 0, got {lr}")
        if weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
        self.lr, self.weight_decay = float(lr), float(weight_decay)
        self.state: dict[str, np.ndarray] = {}
        self.t = 0

    def step(self, model) -> None:
        self.t += 1
        for name, layer, key in model.named_parameters():
            g = layer.grads[key]
            p = layer.params[key]
            if self.weight_decay:
                g = g + self.weight_decay * p
            self._update(name, p, g.astype(p.dtype, copy=False))

    def _slot(self, name: str, like: np.ndarray) -> np.ndarray:
        if name not in self.state:
            self.state[name] = np.zeros_like(like)
        return self.state[name]

    def state_dict(self) -> dict[str, np.ndarray]:
        return {"t": np.array(self.t), **{f"state/{k}": v for k, v in self.state.items()}}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        self.t = int(state["t"])
        self.state = {k[len("state/"):]: np.array(v) for k, v in state.items() if k.startswith("state/")}


class SGD(Optimizer):
    def __init__(self, lr: float = 0.01, momentum: float = 0.9, weight_decay: float = 0.0):
        super().__init__(lr, weight_decay)
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        self.momentum = float(momentum)

    def _update(self, name, p, g):
        if self.momentum:
            v = self._slot(name, p)
            v *= self.momentum
            v += g
            g = v
        p -= self.lr * g


class Adam(Optimizer):
    def __init__(self, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0):
        super().__init__(lr, weight_decay)
        self.b1, self.b2 = map(float, betas)
        self.eps = float(eps)

    def _update(self, name, p, g):
        m = self._slot("m/" + name, p)
        v = self._slot("v/" + name, p)
        m *= self.b1
        m += (1 - self.b1) * g
        v *= self.b2
        v += (1 - self.b2) * np.square(g)
        step = self.lr / (1 - self.b1 ** self.t)
        denom = np.sqrt(v / (1 - self.b2 ** self.t))
        denom += self.eps
        p -= (step * m / denom).astype(p.dtype, copy=False)


OPTIMIZERS = {"sgd": SGD, "adam": Adam}


def make_optimizer(name: str, lr: float, momentum: float = 0.9, weight_decay: float = 0.0) -> Optimizer:
    if name == "sgd":
        return SGD(lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adam":
        return Adam(lr, weight_decay=weight_decay)
    raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {name!r}")
