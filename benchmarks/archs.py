"""The fixed architecture set, drawn from the lecture's grid, and the identical PyTorch model.

Every architecture is the lecture's network on 1x28x28 images: two conv blocks (convolution ->
ReLU -> 2x2 pooling), the second block with twice the kernels of the first (the grid's "double"
depth rule), a 64-unit ReLU dense layer and 10 logits. Together they cover every grid value:
kernel 3/5/7, depth 8/16/32, stride 1/2, padding 0/"same", pooling max/avg/l2.
"""
from __future__ import annotations

import numpy as np

import cnn
from cnn.geometry import resolve_padding

# name -> (kernel, depth of block 1, stride, padding, pooling)
GRID = {
    "k3-d8-s1-p0-max": (3, 8, 1, 0, "max"),
    "k5-d16-s1-same-avg": (5, 16, 1, "same", "avg"),
    "k7-d32-s1-same-l2": (7, 32, 1, "same", "l2"),
    "k3-d16-s2-same-max": (3, 16, 2, "same", "max"),
    "k5-d32-s1-p0-max": (5, 32, 1, 0, "max"),
    "k7-d8-s1-p0-avg": (7, 8, 1, 0, "avg"),
    "k5-d8-s2-same-l2": (5, 8, 2, "same", "l2"),
    "k3-d32-s1-same-avg": (3, 32, 1, "same", "avg"),
}
QUICK = ("k3-d8-s1-p0-max", "k5-d8-s2-same-l2")


def spec_for(name: str) -> cnn.ModelSpec:
    k, depth, stride, padding, pooling = GRID[name]
    blocks = [cnn.ConvBlockSpec(d, k, stride, padding, "relu", pooling) for d in (depth, 2 * depth)]
    return cnn.ModelSpec(tuple(blocks), (1, 28, 28), dense=(64,), classes=10)


def torch_twin(model: cnn.Model):
    """A ``torch.nn.Module`` computing exactly what ``model`` computes, with a copy of its weights.

    cnn's Conv2D weight is (F, C, kh, kw) and Dense's is (out, in), the layouts of nn.Conv2d and
    nn.Linear, so weights copy over unchanged. cnn's "same" padding is TensorFlow's: for stride 2
    the odd pixel goes after, which nn.Conv2d cannot express, so such padding goes through F.pad.
    """
    import torch
    from torch import nn
    F = nn.functional

    class Pad(nn.Module):
        def __init__(self, pad4):
            super().__init__()
            (top, bottom), (left, right) = pad4
            self.pad = (left, right, top, bottom)

        def forward(self, x):
            return F.pad(x, self.pad)

    class Pool(nn.Module):
        def __init__(self, mode, size, stride):
            super().__init__()
            self.mode, self.size, self.stride = mode, size, stride

        def forward(self, x):
            if self.mode == "max":
                return F.max_pool2d(x, self.size, self.stride)
            if self.mode == "avg":
                return F.avg_pool2d(x, self.size, self.stride)
            # F.lp_pool2d(norm_type=2) computes the same sqrt(sum x^2) but its gradient at an
            # all-zero window (common after ReLU) is NaN; clamping the sum first gives 0 there, as
            # cnn does, at the same cost.
            s = F.avg_pool2d(x * x, self.size, self.stride) * (self.size[0] * self.size[1])
            return torch.sqrt(torch.clamp(s, min=1e-30))

    layers, pairs = [], []  # pairs: (our layer, its module) for every layer with state
    shapes = {info.name: info for info in model.shapes}
    for layer in model.layers:
        if isinstance(layer, cnn.Conv2D):
            info = shapes[layer.name]
            pad4 = resolve_padding(layer.padding, info.in_shape[1:], layer.kernel_size, layer.stride)
            symmetric = pad4[0][0] == pad4[0][1] and pad4[1][0] == pad4[1][1]
            conv = nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride,
                             padding=(pad4[0][0], pad4[1][0]) if symmetric else 0)
            if not symmetric:
                layers.append(Pad(pad4))
            layers.append(conv)
        elif isinstance(layer, cnn.Dense):
            layers.append(nn.Linear(layer.in_features, layer.out_features))
        elif isinstance(layer, cnn.BatchNorm):
            image = len(shapes[layer.name].out_shape) == 3
            layers.append((nn.BatchNorm2d if image else nn.BatchNorm1d)(layer.channels, layer.eps, layer.momentum))
        elif isinstance(layer, cnn.ReLU):
            layers.append(nn.ReLU())
        elif isinstance(layer, cnn.Sigmoid):
            layers.append(nn.Sigmoid())
        elif isinstance(layer, cnn.Pool2D):
            layers.append(Pool(layer.mode, layer.size, layer.stride))
        elif isinstance(layer, cnn.Flatten):
            layers.append(nn.Flatten())
        else:  # dropout among them: PyTorch draws its masks from its own generator
            raise TypeError(f"no PyTorch twin for {layer!r}")
        if layer.params:
            pairs.append((layer, layers[-1]))
    net = nn.Sequential(*layers)
    names = {"W": "weight", "b": "bias", "gamma": "weight", "beta": "bias"}
    with torch.no_grad():
        for ours, theirs in pairs:
            for key, value in {**ours.params, **ours.buffers}.items():
                getattr(theirs, names.get(key, key)).copy_(torch.from_numpy(np.ascontiguousarray(value)))
    return net.to(torch.float32)
