"""Softmax cross-entropy, fused so the gradient is the stable ``(softmax(z) - onehot(y)) / N``."""
from __future__ import annotations

import numpy as np


def log_softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise ``log(softmax(z))`` for ``z (N, K)``, shifted by the row max so exp never overflows."""
    shifted = z - z.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def softmax_cross_entropy(logits: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean cross-entropy of ``logits (N, K)`` against integer ``labels (N,)``, and d loss / d logits.

    ``loss = -mean_n log softmax(z_n)[y_n]``;  ``dz = (softmax(z) - onehot(y)) / N``.
    """
    n = logits.shape[0]
    if labels.shape != (n,):
        raise ValueError(f"labels must have shape ({n},), got {labels.shape}")
    logp = log_softmax(logits)
    rows = np.arange(n)
    loss = float(-logp[rows, labels].mean())
    grad = np.exp(logp)
    grad[rows, labels] -= 1
    grad /= n
    return loss, grad
