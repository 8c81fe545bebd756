"""One training step (forward, softmax cross-entropy, backward, Adam update) in each framework.

Both sides use the sweeps' defaults: Adam with learning rate 1e-3, float32, random MNIST-shaped
batches (the data's values do not change the arithmetic, only its shape does).
"""
from __future__ import annotations

import numpy as np

import cnn


def random_batch(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.random((n, 1, 28, 28), dtype=np.float32)
    y = rng.integers(0, 10, n)
    return x, y


def numpy_trainer(model: cnn.Model, lr: float = 1e-3, with_optimizer: bool = False):
    """A closure running one training step of ``model`` on ``(x, y)``; returns the loss.

    ``with_optimizer``: return ``(step, optimizer)`` instead.
    """
    opt = cnn.Adam(lr)

    def step(x, y):
        loss, dlogits = cnn.softmax_cross_entropy(model.forward(x), y)
        model.backward(dlogits)
        opt.step(model)
        return loss

    return (step, opt) if with_optimizer else step


def torch_trainer(net, lr: float = 1e-3):
    import torch
    F = torch.nn.functional
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    cache = {}

    def step(x, y):
        # Converting the batch once (not every step) keeps the comparison about the network.
        key = (id(x), id(y))
        if key not in cache:
            cache.clear()
            cache[key] = (torch.from_numpy(x), torch.from_numpy(y))
        xt, yt = cache[key]
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(net(xt), yt)
        loss.backward()
        opt.step()
        return loss.item()

    return step
