"""Every op against PyTorch through one helper, forward and backward, float64 and float32.

``helper_test_op`` runs a NumPy layer and the same op in torch on the same input, then pushes the
same random upstream gradient through both and compares the input and parameter gradients.
"""
import itertools

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

import cnn  # noqa: E402
from cnn.conv import ALGORITHMS  # noqa: E402
from cnn.fuse import fuse_activations  # noqa: E402
from cnn.geometry import positive_pair, resolve_padding  # noqa: E402

TOL = {np.float64: dict(rtol=1e-10, atol=1e-12), np.float32: dict(rtol=1e-4, atol=1e-5)}
OBSERVED: dict = {}  # worst errors seen per dtype, printed at the end of the session by conftest


def _record(dtype, name, got, want):
    err = np.abs(got - want)
    scale = np.maximum(np.abs(want), 1e-30)
    worst = OBSERVED.setdefault(np.dtype(dtype).name, {"abs": 0.0, "rel": 0.0})
    worst["abs"] = max(worst["abs"], float(err.max(initial=0)))
    mask = np.abs(want) > 1e-3
    if mask.any():
        worst["rel"] = max(worst["rel"], float((err[mask] / scale[mask]).max()))


def _batch_last(a):
    """The same values with batch-last memory ``(C, H, W, N)``, as a convolution hands them on."""
    return np.ascontiguousarray(a.transpose(1, 2, 3, 0)).transpose(3, 0, 1, 2) if a.ndim == 4 else a


def helper_test_op(layer, torch_fn, x, dtype, params=(), seed=0, before=None):
    """Compare ``layer`` with ``torch_fn(x_t, *params_t)``: output, dx and each named param grad.

    4-D inputs run twice, C-contiguous and batch-last (see cnn.layout): the kernels take strided
    slices whose shapes depend on the memory order, and both orders reach every layer in a model.
    ``before()`` runs before each forward of ``layer`` (a layer with state resets it there).
    """
    x = x.astype(dtype)
    rng = np.random.default_rng(seed)
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    pt = [torch.from_numpy(layer.params[p].copy()).requires_grad_(True) for p in params]
    yt = torch_fn(xt, *pt)
    dy = rng.standard_normal(tuple(yt.shape)).astype(dtype)
    yt.backward(torch.from_numpy(dy))
    for order, to in (("C", np.ascontiguousarray), ("batch-last", _batch_last)):
        if before is not None:
            before()
        y = layer.forward(to(x))
        assert y.dtype == dtype, f"{type(layer).__name__} returned {y.dtype} for {dtype} input"
        np.testing.assert_allclose(y, yt.detach().numpy(), **TOL[dtype], err_msg=f"forward ({order})")
        _record(dtype, "forward", y, yt.detach().numpy())
        dx = layer.backward(to(dy))
        assert dx.dtype == dtype
        np.testing.assert_allclose(dx, xt.grad.numpy(), **TOL[dtype], err_msg=f"dx ({order})")
        _record(dtype, "dx", dx, xt.grad.numpy())
        for name, p in zip(params, pt):
            np.testing.assert_allclose(layer.grads[name], p.grad.numpy(), **TOL[dtype], err_msg=f"d{name} ({order})")
            _record(dtype, "d" + name, layer.grads[name], p.grad.numpy())
        if x.ndim != 4:
            break


DTYPES = [np.float64, np.float32]


def _torch_conv(stride, padding, kernel, hw):
    s = positive_pair(stride, "stride")
    if padding == "same" and s == (1, 1):
        return lambda x, w, b: F.conv2d(x, w, b, stride=s, padding="same")
    (top, bottom), (left, right) = resolve_padding(padding, hw, kernel, s)
    return lambda x, w, b: F.conv2d(F.pad(x, (left, right, top, bottom)), w, b, stride=s)


CONV_GRID = [
    (k, s, p)
    for k, s, p in itertools.product([1, 2, 3, 5, (1, 3), (3, 2)], [1, 2, 3, (1, 2)], [0, 1, 2, "same", (0, 1)])
]


def _supported(algorithm, kernel, stride, padding, hw):
    """Whether ``algorithm`` (``auto``: the autotune's pick, or FORWARD/BACKWARD names) runs this shape."""
    if algorithm == "auto":
        return True
    shape = cnn.Conv2D(3, 4, kernel, stride, padding).shape_of((2, 3) + hw, np.float64)
    return all(ALGORITHMS[name].supports(shape) for name in algorithm.split("/"))


CONV_HW = (9, 11)  # H != W catches a swapped axis
#: Every algorithm on every shape of the grid it supports; then forward and backward of different
#: families (the backward recomputes what the forward of its own family would have kept).
CONV_ALGOS = ["auto", "im2col", "shift", "blocked", "fft", "dft", "winograd", "fft/im2col", "im2col/fft",
              "winograd/shift", "fft/winograd", "winograd/fft", "dft/shift", "im2col/dft", "blocked/shift",
              "im2col/blocked"]
CONV_CASES = [(a, k, s, p) for a in CONV_ALGOS for k, s, p in CONV_GRID if _supported(a, k, s, p, CONV_HW)]


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("algorithm,kernel,stride,padding", CONV_CASES, ids=str)
def test_conv2d_matches_torch(algorithm, kernel, stride, padding, dtype):
    hw = CONV_HW
    algo = None if algorithm == "auto" else algorithm
    layer = cnn.Conv2D(3, 4, kernel, stride, padding, rng=np.random.default_rng(1), dtype=dtype, algorithm=algo)
    layer.params["b"] = np.random.default_rng(2).standard_normal(4).astype(dtype)
    x = np.random.default_rng(3).standard_normal((2, 3) + hw)
    helper_test_op(layer, _torch_conv(stride, padding, positive_pair(kernel, "k"), hw), x, dtype, ("W", "b"))


def _torch_pool(mode, size, stride, padding):
    k = positive_pair(size, "size")
    s = k if stride is None else positive_pair(stride, "stride")
    p = positive_pair(padding, "padding") if padding else (0, 0)
    if mode == "max":
        return lambda x: F.max_pool2d(x, k, s, p)
    if mode == "avg":
        return lambda x: F.avg_pool2d(x, k, s, p, count_include_pad=True)
    # lp_pool2d has no padding argument; zero padding first is the same thing for an L2 norm.
    return lambda x: F.lp_pool2d(F.pad(x, (p[1], p[1], p[0], p[0])), 2, k, s)


POOL_GRID = [
    (mode, size, stride, padding)
    for mode in ("max", "avg", "l2")
    for size, stride, padding in [(2, None, 0), (3, None, 0), (2, 1, 0), (3, 2, 0), (2, 3, 0), (3, 2, 1),
                                  (2, 1, 1), ((2, 3), (1, 2), 0), (3, 3, 1)]
]


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("mode,size,stride,padding", POOL_GRID, ids=str)
def test_pool2d_matches_torch(mode, size, stride, padding, dtype):
    x = np.random.default_rng(4).standard_normal((2, 3, 9, 10))
    if mode == "l2":
        x = np.abs(x)
    helper_test_op(cnn.Pool2D(mode, size, stride, padding), _torch_pool(mode, size, stride, padding), x, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("size,stride", [(2, None), (3, 1), (3, 2)])
def test_max_pool_ties_go_to_first_maximum(size, stride, dtype):
    # Values from {0, 1, 2}: most windows hold ties; overlapping windows (stride < size) share them.
    x = np.random.default_rng(5).integers(0, 3, size=(2, 2, 8, 9)).astype(float)
    helper_test_op(cnn.Pool2D("max", size, stride), _torch_pool("max", size, stride, 0), x, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("size,stride,padding", [(2, None, 0), (3, 2, 1), (2, 1, 0)])
def test_l2_pool_all_zero_windows_have_zero_gradient(size, stride, padding, dtype):
    x = np.random.default_rng(6).standard_normal((2, 2, 8, 8))
    x[:, :, :4, :4] = 0.0  # whole windows of zeros
    layer = cnn.Pool2D("l2", size, stride, padding)
    helper_test_op(layer, _torch_pool("l2", size, stride, padding), x, dtype)
    layer.forward(x.astype(dtype))
    dx = layer.backward(np.ones(layer.forward(x.astype(dtype)).shape, dtype=dtype))
    assert np.isfinite(dx).all()
    assert (dx[:, :, :3, :3] == 0).all()


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_relu_matches_torch_including_zero(dtype):
    x = np.random.default_rng(7).standard_normal((3, 2, 5, 4))
    x[0, 0, 0, :] = 0.0  # PyTorch's ReLU gradient at exactly 0 is 0
    helper_test_op(cnn.ReLU(), torch.relu, x, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_sigmoid_matches_torch_over_wide_range(dtype):
    x = np.linspace(-40, 40, 2 * 3 * 7 * 5).reshape(2, 3, 7, 5)
    helper_test_op(cnn.Sigmoid(), torch.sigmoid, x, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("n,fin,fout", [(1, 5, 3), (7, 12, 10), (64, 100, 32)])
def test_dense_matches_torch(n, fin, fout, dtype):
    layer = cnn.Dense(fin, fout, rng=np.random.default_rng(8), dtype=dtype)
    layer.params["b"] = np.random.default_rng(9).standard_normal(fout).astype(dtype)
    x = np.random.default_rng(10).standard_normal((n, fin))
    helper_test_op(layer, lambda x, w, b: F.linear(x, w, b), x, dtype, ("W", "b"))


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_flatten_matches_torch(dtype):
    x = np.random.default_rng(11).standard_normal((3, 2, 4, 5))
    helper_test_op(cnn.Flatten(), lambda x: torch.flatten(x, 1), x, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("scale", [1.0, 30.0, 1000.0])
def test_softmax_cross_entropy_matches_torch(scale, dtype):
    rng = np.random.default_rng(12)
    logits = (rng.standard_normal((16, 10)) * scale).astype(dtype)
    labels = rng.integers(0, 10, 16)
    loss, grad = cnn.softmax_cross_entropy(logits, labels)
    lt = torch.from_numpy(logits.copy()).requires_grad_(True)
    ref = F.cross_entropy(lt, torch.from_numpy(labels))
    ref.backward()
    np.testing.assert_allclose(loss, ref.item(), **TOL[dtype])
    np.testing.assert_allclose(grad, lt.grad.numpy(), **TOL[dtype])
    assert grad.dtype == dtype


@pytest.mark.parametrize("mode", cnn.pool.MODES)
def test_batch_last_memory_passes_through_a_block(mode):
    # The speed of the kernels rests on this (cnn.layout): a conv's output, and everything an
    # element-wise layer, a pooling layer or Flatten's backward makes from it, stays batch-last.
    from cnn.layout import BATCH_LAST, memory_order

    x = np.random.default_rng(0).standard_normal((4, 3, 12, 10)).astype(np.float32)
    layers = [cnn.Conv2D(3, 5, 3, 1, "same"), cnn.ReLU(), cnn.Pool2D(mode, 2), cnn.Sigmoid(),
              cnn.Conv2D(5, 6, 3, 2, 1), cnn.Pool2D(mode, 3, 1, 1)]
    h = x
    for layer in layers:
        h = layer.forward(h)
        assert memory_order(h) == BATCH_LAST, f"{layer!r} output"
    flat = cnn.Flatten()
    d = flat.backward(np.ones_like(flat.forward(h)))
    assert memory_order(d) == BATCH_LAST, "Flatten backward"
    for layer in reversed(layers[1:]):
        d = layer.backward(d)
        assert memory_order(d) == BATCH_LAST, f"{layer!r} input gradient"


def _torch_batch_norm(layer, training):
    """``F.batch_norm`` with the layer's own running statistics (as copies: torch updates them)."""
    rm = torch.from_numpy(layer.buffers["running_mean"].copy())
    rv = torch.from_numpy(layer.buffers["running_var"].copy())
    return lambda x, g, b: F.batch_norm(x, rm, rv, g, b, training=training, momentum=layer.momentum, eps=layer.eps)


BN_SHAPES = [(6, 5), (2, 3, 4, 5), (7, 2, 1, 1), (1, 3, 3, 2)]


def _batch_norm_layer(shape, dtype, seed=13):
    rng = np.random.default_rng(seed)
    layer = cnn.BatchNorm(shape[1], dtype=dtype)
    layer.params = {"gamma": rng.uniform(0.5, 2, shape[1]).astype(dtype), "beta": rng.standard_normal(shape[1]).astype(dtype)}
    layer.buffers = {"running_mean": rng.standard_normal(shape[1]).astype(dtype),
                     "running_var": rng.uniform(0.2, 3, shape[1]).astype(dtype)}
    return layer


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("shape", BN_SHAPES, ids=str)
def test_batch_norm_matches_torch(shape, training, dtype):
    """Training mode normalises with the batch's statistics, evaluation with the running ones."""
    layer = _batch_norm_layer(shape, dtype)
    layer.training = training
    x = np.random.default_rng(14).standard_normal(shape) * 3 + 1
    saved = {k: v.copy() for k, v in layer.buffers.items()}

    def restore():  # each forward in training mode moves the running statistics
        layer.buffers = {k: v.copy() for k, v in saved.items()}

    helper_test_op(layer, _torch_batch_norm(layer, training), x, dtype, ("gamma", "beta"), before=restore)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("shape", BN_SHAPES, ids=str)
def test_batch_norm_running_statistics_match_torch(shape, dtype):
    """Five training batches, then the running mean and (unbiased) variance and an eval forward."""
    if shape[0] * (shape[2] * shape[3] if len(shape) == 4 else 1) == 1:
        pytest.skip("one value per channel: PyTorch refuses to train on it")
    layer = _batch_norm_layer(shape, dtype)
    module = torch.nn.BatchNorm1d(shape[1]) if len(shape) == 2 else torch.nn.BatchNorm2d(shape[1])
    module = module.to(torch.float64 if dtype == np.float64 else torch.float32)
    with torch.no_grad():
        module.weight.copy_(torch.from_numpy(layer.params["gamma"]))
        module.bias.copy_(torch.from_numpy(layer.params["beta"]))
        module.running_mean.copy_(torch.from_numpy(layer.buffers["running_mean"]))
        module.running_var.copy_(torch.from_numpy(layer.buffers["running_var"]))
    rng = np.random.default_rng(15)
    for step in range(5):
        x = (rng.standard_normal(shape) * (step + 1) + step).astype(dtype)
        y = layer.forward(_batch_last(x) if step % 2 else x)
        with torch.no_grad():
            yt = module(torch.from_numpy(x))
        np.testing.assert_allclose(y, yt.numpy(), **TOL[dtype], err_msg=f"forward, step {step}")
        for key in ("running_mean", "running_var"):
            want = getattr(module, key).numpy()
            np.testing.assert_allclose(layer.buffers[key], want, **TOL[dtype], err_msg=f"{key}, step {step}")
            _record(dtype, key, layer.buffers[key], want)
    layer.training = False
    module.eval()
    x = rng.standard_normal(shape).astype(dtype)
    with torch.no_grad():
        np.testing.assert_allclose(layer.forward(x), module(torch.from_numpy(x)).numpy(), **TOL[dtype])


def test_batch_norm_keeps_batch_last_memory():
    from cnn.layout import BATCH_LAST, memory_order

    layer = cnn.BatchNorm(3)
    x = _batch_last(np.random.default_rng(16).standard_normal((4, 3, 5, 6)).astype(np.float32))
    for training in (True, False):
        layer.training = training
        y = layer.forward(x)
        assert memory_order(y) == BATCH_LAST
        assert memory_order(layer.backward(_batch_last(np.ones_like(y)))) == BATCH_LAST


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("p", [0.0, 0.25, 0.5, 0.9])
@pytest.mark.parametrize("shape", [(8, 20), (3, 2, 4, 5)], ids=str)
def test_dropout_matches_torch_with_the_same_mask(shape, p, dtype):
    """PyTorch's dropout draws its mask from its own generator: the reference applies ours,
    ``x * (u >= p) / (1 - p)``, with the same ``u``; the survivors' scaling and the gradient are checked."""
    layer = cnn.Dropout(p)
    u = np.random.default_rng(17).random(shape, dtype=dtype)
    mask = torch.from_numpy(((u >= p) / (1 - p)).astype(dtype))

    def reseed():
        layer.rng = np.random.default_rng(17)

    x = np.random.default_rng(18).standard_normal(shape)
    helper_test_op(layer, lambda xt: xt * mask, x, dtype, before=reseed)


@pytest.mark.parametrize("p", [0.0, 0.3])
def test_dropout_in_eval_mode_is_the_identity_as_in_torch(p):
    layer = cnn.Dropout(p)
    layer.training = False
    x = np.random.default_rng(19).standard_normal((4, 6))
    helper_test_op(layer, lambda xt: F.dropout(xt, p, training=False), x, np.float64)


def test_dropout_drops_p_and_keeps_the_mean():
    layer = cnn.Dropout(0.3, rng=np.random.default_rng(20))
    y = layer.forward(np.ones((400, 500)))
    assert abs((y == 0).mean() - 0.3) < 0.005
    assert np.allclose(y[y != 0], 1 / 0.7) and abs(y.mean() - 1) < 0.01
    t = F.dropout(torch.ones(400, 500, dtype=torch.float64), 0.3, training=True).numpy()
    assert abs((t == 0).mean() - 0.3) < 0.005 and np.allclose(t[t != 0], 1 / 0.7)


class _Block(cnn.layer.Layer):
    """``layers`` run as one op (forward in order, backward in reverse), fused as a Model fuses them;
    its params and grads are the first layer's."""

    def __init__(self, layers):
        super().__init__("block")
        self.layers = layers
        self.linked = fuse_activations(layers)
        self.params = layers[0].params

    def forward(self, x):
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def backward(self, dy):
        for layer in reversed(self.layers):
            dy = layer.backward(dy)
        self.grads = self.layers[0].grads
        return dy


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("mode,size,stride,padding", [
    (mode, size, stride, padding) for mode in ("max", "avg", "l2")
    for size, stride, padding in [(2, None, 0), (3, 2, 1), (2, 1, 0), ((2, 3), None, 0), (3, None, 1)]], ids=str)
def test_fused_conv_relu_pool_matches_torch(mode, size, stride, padding, dtype):
    # cnn.fuse: the conv applies the ReLU, the pooling its backward; the result must not change.
    # Shifted inputs make whole windows inactive (all-zero after ReLU) as well as mixed ones.
    conv = cnn.Conv2D(3, 4, 3, 1, 1, rng=np.random.default_rng(13), dtype=dtype)
    conv.params["b"] = np.array([-1.0, 0.0, 0.5, 2.0], dtype=dtype)
    block = _Block([conv, cnn.ReLU(), cnn.Pool2D(mode, size, stride, padding)])
    assert block.linked == 1
    pool = _torch_pool(mode, size, stride, padding)
    if mode == "l2":  # clamped as benchmarks.archs does: lp_pool2d's gradient at an all-zero window is NaN
        k = positive_pair(size, "size")
        s = k if stride is None else positive_pair(stride, "stride")
        p = positive_pair(padding, "padding") if padding else (0, 0)
        pool = lambda x: torch.sqrt(torch.clamp(F.avg_pool2d(x * x, k, s, p) * (k[0] * k[1]), min=1e-30))  # noqa: E731
    x = np.random.default_rng(14).standard_normal((3, 3, 10, 9)) - 0.3
    helper_test_op(block, lambda x, w, b: pool(torch.relu(F.conv2d(x, w, b, padding=1))), x, dtype, ("W", "b"))


def test_fusion_links_only_conv_relu_runs():
    conv, relu, pool = cnn.Conv2D(1, 2, 3), cnn.ReLU(), cnn.Pool2D("max")
    assert fuse_activations([conv, cnn.Sigmoid(), pool]) == 0 and conv.activation is None
    assert fuse_activations([conv, relu]) == 1 and relu.fused == "mask" and not pool.relu_input
    model = cnn.Model(cnn.ModelSpec((cnn.ConvBlockSpec(4, 3, 1, 1, "relu", "avg"),), (1, 8, 8), dense=(), classes=3))
    conv, relu, pool = model.layers[:3]
    assert conv.activation == "relu" and relu.fused == "pool" and pool.relu_input
