"""The convolution algorithms beside each other, the autotune that picks one, and the kernels' threads.

PyTorch parity of every algorithm over the conv grid is in test_ops.py; here: the naive
references, agreement between algorithms on larger layers (the float32 error each one has,
Winograd's bound included), the autotune's cache and overrides, and thread-count handling.
"""
import json

import numpy as np
import pytest

import cnn
from cnn import autotune, heap, threads
from cnn.conv import ALGORITHMS
from cnn.convbase import as_nchw, batch_last
from cnn.fftconv import fft_conv_naive
from cnn.winograd import winograd_naive
from tests.cnn.reference import conv2d_naive

torch = pytest.importorskip("torch")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A fresh autotune cache file for the test, nothing held in memory."""
    path = tmp_path / "autotune.json"
    monkeypatch.setenv(autotune.CACHE_ENV, str(path))
    monkeypatch.delenv(autotune.FORCE_ENV, raising=False)
    autotune.forget()
    yield path
    autotune.forget()


def _step(layer, x, seed=0):
    y = layer.forward(x)
    dy = np.random.default_rng(seed).standard_normal(y.shape).astype(x.dtype)
    dx = layer.backward(dy)
    return y, dx, layer.grads["W"], layer.grads["b"]


@pytest.mark.parametrize("kernel,padding", [(3, 1), (5, 2), ((3, 2), 0), (3, ((2, 0), (1, 2)))])
def test_naive_fft_reference_matches_direct(kernel, padding):
    rng = np.random.default_rng(0)
    k = (kernel, kernel) if isinstance(kernel, int) else kernel
    x, w = rng.standard_normal((2, 3, 7, 8)), rng.standard_normal((4, 3) + k)
    pad = padding if isinstance(padding, tuple) else ((padding, padding), (padding, padding))
    xp = np.pad(x, ((0, 0), (0, 0), pad[0], pad[1]))
    np.testing.assert_allclose(fft_conv_naive(x, w, pad), conv2d_naive(xp, w, np.zeros(4)), rtol=1e-10, atol=1e-12)


def test_naive_winograd_reference_matches_direct():
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal((2, 3, 9, 8)), rng.standard_normal((4, 3, 3, 3))
    np.testing.assert_allclose(winograd_naive(x, w), conv2d_naive(x, w, np.zeros(4)), rtol=1e-10, atol=1e-12)


LARGE = [(32, 64, 14, 3, 1), (16, 32, 14, 5, "same"), (32, 64, 12, 5, 0), (8, 16, 13, 3, 0)]


@pytest.mark.parametrize("c,f,hw,k,padding", LARGE, ids=str)
def test_algorithms_agree_in_float32_within_their_error_bound(c, f, hw, k, padding):
    """Every algorithm against a float64 direct reference on network-sized layers: the worst error
    over y, dx, dW relative to the largest entry of each (docs/speed.md quotes these bounds)."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((8, c, hw, hw))
    ref = cnn.Conv2D(c, f, k, 1, padding, rng=np.random.default_rng(3), dtype=np.float64, algorithm="im2col")
    ref.params["b"] = rng.standard_normal(f)
    want = _step(ref, x)
    names = [n for n in ALGORITHMS if ALGORITHMS[n].supports(ref.shape_of(x.shape, np.float64))]
    assert {"im2col", "shift", "fft", "dft"} <= set(names)
    for name in names:
        layer = cnn.Conv2D(c, f, k, 1, padding, rng=np.random.default_rng(3), dtype=np.float32, algorithm=name)
        layer.params["b"] = ref.params["b"].astype(np.float32)
        got = _step(layer, x.astype(np.float32))
        for g, r in zip(got, want):
            error = np.abs(g - r).max() / np.abs(r).max()
            assert error < 2e-6, f"{name}: float32 error {error:.1e} of the largest entry"
        layer64 = cnn.Conv2D(c, f, k, 1, padding, rng=np.random.default_rng(3), dtype=np.float64, algorithm=name)
        layer64.params["b"] = ref.params["b"]
        for g, r in zip(_step(layer64, x), want):
            assert np.abs(g - r).max() <= 1e-12 * np.abs(r).max(), f"{name}: float64"


def test_autotune_writes_its_choices_to_the_cache_file(cache):
    from threadpoolctl import threadpool_limits

    layer = cnn.Conv2D(8, 16, 3, 1, 1, rng=np.random.default_rng(0))
    x = np.random.default_rng(1).standard_normal((16, 8, 12, 12)).astype(np.float32)
    spent = autotune.spent()
    with threadpool_limits(1):  # one thread: the whole batch is one part (two threads tune each half's shape)
        _step(layer, x)
    assert autotune.spent() > spent  # im2col, shift, fft and winograd all run this shape: measured
    data = json.loads(cache.read_text())
    assert data["format"] == autotune.FORMAT
    (machine,) = data["machines"].values()
    assert machine["machine"]["cpu"] and "flags" in machine["machine"]
    choices = machine["choices"]
    forward = [k for k in choices if k.startswith("forward|")]
    backward = [k for k in choices if k.startswith("backward|")]
    assert len(forward) == len(backward) == 1 and forward[0].endswith("-float32|t1") and "|n16-" in forward[0]
    assert choices[forward[0]]["choice"] == layer.chosen["forward"]
    assert choices[backward[0]]["choice"] == layer.chosen["backward"]
    assert set(choices[forward[0]]["ms"]) <= {"im2col", "blocked", "fft", "dft", "winograd"}

    # Another layer of the same shape, and this process after a restart (memory dropped): no measurement.
    autotune.forget()
    spent = autotune.spent()
    twin = cnn.Conv2D(8, 16, 3, 1, 1, rng=np.random.default_rng(0))
    with threadpool_limits(1):
        _step(twin, x)
    assert autotune.spent() == spent and twin.chosen == layer.chosen


def test_an_epochs_last_smaller_batch_reuses_the_choice(cache):
    layer = cnn.Conv2D(8, 8, 3, 1, 1)
    spent = autotune.spent()
    _step(layer, np.ones((32, 8, 12, 12), np.float32))
    assert autotune.spent() > spent
    spent = autotune.spent()
    _step(layer, np.ones((20, 8, 12, 12), np.float32))  # 20 rounds up to the same bucket, 32
    assert autotune.spent() == spent


def test_small_layers_run_im2col_unmeasured(cache):
    # The lecture's hand-computed examples stay exact: a direct sum of integers is an integer.
    layer = cnn.Conv2D(1, 1, 2, dtype=np.float64)
    layer.params["W"][...] = 2.0
    spent = autotune.spent()
    y, *_ = _step(layer, np.arange(16.0).reshape(1, 1, 4, 4))
    assert autotune.spent() == spent and layer.chosen == {"forward": "im2col", "backward": "im2col"}
    np.testing.assert_array_equal(y, np.round(y))


def test_a_broken_cache_file_is_measured_over_and_replaced(cache):
    cache.write_text("{not json")
    _step(cnn.Conv2D(8, 8, 3, 1, 1), np.ones((32, 8, 12, 12), np.float32))
    assert json.loads(cache.read_text())["format"] == autotune.FORMAT


def test_autotune_off_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv(autotune.CACHE_ENV, "off")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    autotune.forget()
    spent = autotune.spent()
    _step(cnn.Conv2D(8, 8, 3, 1, 1), np.ones((32, 8, 12, 12), np.float32))
    assert autotune.spent() > spent
    assert list(tmp_path.iterdir()) == []
    autotune.forget()


def test_choices_are_kept_per_thread_count(cache):
    shape = cnn.Conv2D(4, 8, 3).shape_of((4, 4, 8, 8), np.float32)
    assert autotune.key("forward", shape, 1) != autotune.key("forward", shape, 2)


def test_conv_algo_env_forces_where_supported(cache, monkeypatch):
    monkeypatch.setenv(autotune.FORCE_ENV, "fft/shift")
    stride1, stride2 = cnn.Conv2D(3, 4, 3, 1, 1), cnn.Conv2D(3, 4, 3, 2, 1)
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    _step(stride1, x)
    _step(stride2, x)
    assert stride1.chosen == {"forward": "fft", "backward": "shift"}
    assert stride2.chosen == {"forward": "im2col", "backward": "shift"}  # no FFT at stride 2: measured instead


def test_a_named_algorithm_must_support_the_layer():
    with pytest.raises(ValueError, match="forward algorithm must be one of"):
        cnn.Conv2D(1, 1, 3, algorithm="direct")
    layer = cnn.Conv2D(1, 1, 5, stride=2, algorithm="winograd")
    with pytest.raises(ValueError, match="does not support kernel"):
        layer.forward(np.ones((1, 1, 9, 9), np.float32))


def test_kernel_threads_follow_the_blas_limit():
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        assert threads.kernel_threads() == 1
    threads.force(3)
    try:
        assert threads.kernel_threads() == 3
    finally:
        threads.force(None)


@pytest.mark.parametrize("mode", ["max", "avg", "l2"])
def test_two_threads_compute_what_one_does(mode, cache):
    """Work split over channels across threads (cnn.threads) changes no number beyond BLAS rounding."""
    x = np.random.default_rng(4).standard_normal((16, 8, 12, 12)).astype(np.float32)
    runs = []
    for n in (1, 2):
        threads.force(n)
        try:
            block = [cnn.Conv2D(8, 16, 3, 1, 1, rng=np.random.default_rng(5), algorithm="shift"), cnn.ReLU(),
                     cnn.Pool2D(mode, 2)]
            from cnn.fuse import fuse_activations

            fuse_activations(block)
            h = as_nchw(batch_last(x))
            for layer in block:
                h = layer.forward(h)
            d = np.ones_like(h)
            for layer in reversed(block):
                d = layer.backward(d)
            runs.append((h, d, block[0].grads["W"]))
        finally:
            threads.force(None)
    for a, b in zip(*runs):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_keep_freed_memory_is_once_per_process_and_can_be_turned_off(monkeypatch):
    monkeypatch.setattr(heap, "_done", {"pid": None})
    monkeypatch.setenv("CNN_KEEP_HEAP", "0")
    assert heap.keep_freed_memory() is False
    monkeypatch.delenv("CNN_KEEP_HEAP")
    ok = heap.keep_freed_memory()
    assert ok is (heap._done["pid"] is not None)


@pytest.mark.parametrize("n", [16, 17])
@pytest.mark.parametrize("algorithm", ["im2col", "shift", "blocked", "fft", "dft", "winograd"])
def test_a_batch_split_over_threads_computes_the_whole_batch(algorithm, n, cache, monkeypatch):
    """With two threads a convolution runs each half of its batch on a thread (BLAS at one thread):
    the output, dW, db and dx equal the single-thread results (an odd batch: parts of two sizes)."""
    monkeypatch.setenv(autotune.SPLIT_ENV, "always")  # a layer this small would run whole
    x = np.random.default_rng(6).standard_normal((n, 4, 9, 9)).astype(np.float64)
    runs = []
    for t in (1, 2):
        threads.force(t)
        try:
            layer = cnn.Conv2D(4, 6, 3, 1, 1, rng=np.random.default_rng(7), dtype=np.float64, algorithm=algorithm)
            layer.params["b"] = np.arange(6.0)
            runs.append(_step(layer, as_nchw(batch_last(x))))
        finally:
            threads.force(None)
    for a, b in zip(*runs):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_dense_rows_split_over_threads_compute_the_whole_batch():
    x = np.random.default_rng(8).standard_normal((33, 20))
    runs = []
    for t in (1, 2):
        threads.force(t)
        try:
            layer = cnn.Dense(20, 7, rng=np.random.default_rng(9), dtype=np.float64)
            layer.params["b"] = np.arange(7.0)
            y = layer.forward(x)
            dx = layer.backward(np.ones_like(y))
            runs.append((y, dx, layer.grads["W"], layer.grads["b"]))
        finally:
            threads.force(None)
    for a, b in zip(*runs):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("t", [1, 2])
@pytest.mark.parametrize("algorithm", ["im2col", "blocked", "fft", "dft", "winograd"])
def test_each_algorithm_folds_the_relu_into_its_output(algorithm, t):
    """cnn.fuse sets Conv2D.activation: every algorithm applies max(y, 0) itself (in its output pass),
    whole batch or split over threads."""
    x = np.random.default_rng(10).standard_normal((16, 3, 8, 8))
    plain = cnn.Conv2D(3, 4, 3, 1, 1, rng=np.random.default_rng(11), dtype=np.float64, algorithm=algorithm)
    fused = cnn.Conv2D(3, 4, 3, 1, 1, rng=np.random.default_rng(11), dtype=np.float64, algorithm=algorithm)
    fused.activation = "relu"
    threads.force(t)
    try:
        want, got = np.maximum(plain.forward(x), 0), fused.forward(x)
    finally:
        threads.force(None)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    assert (got >= 0).all()


def test_two_threads_split_a_layers_batch_only_where_measured_to_pay(cache):
    """At two threads the split is measured once per shape (split or whole, both kept in the
    cache); tiny layers run whole unmeasured; either way the numbers are the single-thread ones."""
    rng = np.random.default_rng(8)
    tiny = np.asarray(rng.standard_normal((16, 2, 6, 6)), np.float32)
    big = np.asarray(rng.standard_normal((64, 16, 14, 14)), np.float32)
    for x, c in ((tiny, 2), (big, 16)):
        runs, layers = [], []
        for t in (1, 2):
            threads.force(t)
            try:
                layer = cnn.Conv2D(c, 32, 3, 1, 1, rng=np.random.default_rng(9))
                runs.append(_step(layer, x))
                layers.append(layer)
            finally:
                threads.force(None)
        for a, b in zip(*runs):
            assert np.abs(a - b).max() <= 1e-5 * np.abs(a).max()
        split = [k for k in layers[1]._chosen if k[0] == "split"]
        assert (split != []) is (x is big)
    entries = [k for k in autotune.choices() if k.startswith("split|")]
    assert len(entries) == 1 and autotune.choices()[entries[0]]["choice"] in ("split", "whole")
