"""Naive loop references for the fast kernels: slow, obvious, and used only by tests.

Each follows the textbook definition pixel by pixel:
    conv:  y[n, f, i, j] = b[f] + sum_{c,u,v} xp[n, c, i*sh + u, j*sw + v] * W[f, c, u, v]
    pool:  y[n, c, i, j] = reduce_{u,v} xp[n, c, i*sh + u, j*sw + v]
"""
import numpy as np

from cnn.geometry import output_hw, positive_pair, resolve_padding


def conv2d_naive(x, w, b, stride=1, padding=0):
    n, c, h, wd = x.shape
    f, _, kh, kw = w.shape
    s = positive_pair(stride, "stride")
    pad = resolve_padding(padding, (h, wd), (kh, kw), s)
    xp = np.pad(x, ((0, 0), (0, 0), pad[0], pad[1]))
    oh, ow = output_hw((h, wd), (kh, kw), s, pad)
    y = np.zeros((n, f, oh, ow), dtype=x.dtype)
    for ni in range(n):
        for fi in range(f):
            for i in range(oh):
                for j in range(ow):
                    window = xp[ni, :, i * s[0] : i * s[0] + kh, j * s[1] : j * s[1] + kw]
                    y[ni, fi, i, j] = np.sum(window * w[fi]) + b[fi]
    return y


def pool2d_naive(x, mode, size=2, stride=None, padding=0):
    k = positive_pair(size, "size")
    s = k if stride is None else positive_pair(stride, "stride")
    pad = resolve_padding(padding, x.shape[2:], k, s)
    fill = -np.inf if mode == "max" else 0.0
    xp = np.pad(x, ((0, 0), (0, 0), pad[0], pad[1]), constant_values=fill)
    oh, ow = output_hw(x.shape[2:], k, s, pad)
    y = np.zeros(x.shape[:2] + (oh, ow), dtype=x.dtype)
    for ni in range(x.shape[0]):
        for ci in range(x.shape[1]):
            for i in range(oh):
                for j in range(ow):
                    window = xp[ni, ci, i * s[0] : i * s[0] + k[0], j * s[1] : j * s[1] + k[1]]
                    if mode == "max":
                        y[ni, ci, i, j] = window.max()
                    elif mode == "avg":
                        y[ni, ci, i, j] = window.sum() / window.size
                    else:
                        y[ni, ci, i, j] = np.sqrt(np.sum(window * window))
    return y


def max_pool_grad_naive(x, dy, size=2, stride=None, padding=0):
    """Route each output's gradient to its window's first maximum in row-major order."""
    k = positive_pair(size, "size")
    s = k if stride is None else positive_pair(stride, "stride")
    pad = resolve_padding(padding, x.shape[2:], k, s)
    xp = np.pad(x, ((0, 0), (0, 0), pad[0], pad[1]), constant_values=-np.inf)
    dxp = np.zeros_like(xp)
    for ni, ci, i, j in np.ndindex(*dy.shape):
        window = xp[ni, ci, i * s[0] : i * s[0] + k[0], j * s[1] : j * s[1] + k[1]]
        u, v = np.unravel_index(np.argmax(window), window.shape)  # argmax returns the first maximum
        dxp[ni, ci, i * s[0] + u, j * s[1] + v] += dy[ni, ci, i, j]
    return dxp[:, :, pad[0][0] : pad[0][0] + x.shape[2], pad[1][0] : pad[1][0] + x.shape[3]]


def check_gradients(model, loss, eps: float = 1e-6, tol: float = 1e-6, samples: int = 12) -> int:
    """Central differences of ``loss()`` against ``model``'s gradients (already computed by a
    backward pass of the same loss) at about ``samples`` entries of every parameter: each agrees
    within ``tol`` relative (absolute below 1). Returns how many entries were checked."""
    checked = 0
    for name, layer, key in model.named_parameters():
        p, g = layer.params[key], layer.grads[key]
        for idx in list(np.ndindex(p.shape))[:: max(1, p.size // samples)]:
            old = p[idx]
            p[idx] = old + eps
            up = loss()
            p[idx] = old - eps
            down = loss()
            p[idx] = old
            numeric = (up - down) / (2 * eps)
            assert abs(numeric - g[idx]) <= tol * max(1.0, abs(numeric)), (name, idx, numeric, g[idx])
            checked += 1
    return checked
