"""The model as a whole: shape inference errors, gradient check, determinism, save and load."""
import numpy as np
import pytest

import cnn
from cnn.spec import ConvBlockSpec, ModelSpec
from tests.cnn.reference import check_gradients
from tests.cnn.torch_twin import torch_logits, torch_params


def small_spec(**block):
    base = dict(depth=3, kernel_size=3, padding="same", pooling="max")
    return ModelSpec(input_shape=(1, 8, 8),
                     blocks=(ConvBlockSpec(**{**base, **block}), ConvBlockSpec(4, 3, stride=2, padding=1,
                                                                             activation="sigmoid", pooling="l2")),
                     dense=(6,), classes=3)


def test_shape_inference_names_layer_sizes_and_formula():
    spec = ModelSpec(blocks=(ConvBlockSpec(8, 5, pooling="max"), ConvBlockSpec(8, 7, pooling="max")),
                     input_shape=(1, 12, 12))
    with pytest.raises(cnn.ShapeError) as err:
        cnn.Model(spec)
    msg = str(err.value)
    assert "block2.conv" in msg and "8x4x4" in msg
    assert "(H + 2P - K) // S + 1" in msg and "(4 + 0 - 7) // 1 + 1 = -2" in msg


def test_shape_inference_counts_params_and_flops():
    spec = ModelSpec(blocks=(ConvBlockSpec(16, 5, padding="same"), ConvBlockSpec(32, 5, padding="same")),
                     dense=(128,))
    layers = {info.name: info for info in cnn.infer_shapes(spec)}
    assert layers["block1.conv"].out_shape == (16, 28, 28)
    assert layers["block2.pool"].out_shape == (32, 7, 7)
    assert cnn.param_count(spec) == (16 * 25 + 16) + (32 * 16 * 25 + 32) + (32 * 49 * 128 + 128) + (128 * 10 + 10)
    assert layers["block1.conv"].flops == 2 * 28 * 28 * 16 * 25
    model = cnn.Model(spec)
    assert sum(v.size for v in model.state_dict().values()) == model.n_params


def test_coverage_problems_report_unseen_rows():
    spec = ModelSpec(blocks=(ConvBlockSpec(4, 3, stride=2, pooling=None),))  # (28 - 3) % 2 == 1
    assert "leaves 1 row(s) and 1 column(s)" in cnn.coverage_problems(spec)[0]
    assert cnn.coverage_problems(ModelSpec(blocks=(ConvBlockSpec(4, 3, stride=2, padding="same"),))) == []


@pytest.mark.parametrize("pool", ["max", "avg", "l2"])
def test_finite_difference_gradient_of_whole_model(pool):
    """Central differences of the loss against every analytic parameter gradient, float64."""
    spec = small_spec(pooling=pool)
    model = cnn.Model(spec, seed=3, dtype=np.float64)
    rng = np.random.default_rng(4)
    x = rng.standard_normal((4, 1, 8, 8))
    y = rng.integers(0, 3, 4)

    def loss():
        return cnn.softmax_cross_entropy(model.forward(x), y)[0]

    _, dlogits = cnn.softmax_cross_entropy(model.forward(x), y)
    model.backward(dlogits)
    assert check_gradients(model, loss) > 0


def test_whole_model_matches_torch():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    spec = small_spec(pooling="avg")
    model = cnn.Model(spec, seed=5, dtype=np.float64)
    x = np.random.default_rng(6).standard_normal((5, 1, 8, 8))
    y = np.random.default_rng(7).integers(0, 3, 5)
    p = torch_params(model)
    logits = torch_logits(torch.from_numpy(x), p, "avg")
    ref = F.cross_entropy(logits, torch.from_numpy(y))
    ref.backward()
    loss, dlogits = cnn.softmax_cross_entropy(model.forward(x), y)
    model.backward(dlogits)
    np.testing.assert_allclose(loss, ref.item(), rtol=1e-12)
    for name, layer, key in model.named_parameters():
        np.testing.assert_allclose(layer.grads[key], p[name].grad.numpy(), rtol=1e-10, atol=1e-13, err_msg=name)


@pytest.mark.parametrize("opt_name", ["sgd", "adam"])
def test_optimizers_match_torch(opt_name):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(8)
    w0 = rng.standard_normal((4, 3))
    grads = [rng.standard_normal((4, 3)) for _ in range(5)]
    layer = cnn.Dense(3, 4, dtype=np.float64)
    layer.params = {"W": w0.copy()}

    class One:
        def named_parameters(self):
            yield "W", layer, "W"

    ours = cnn.make_optimizer(opt_name, 0.05, momentum=0.9, weight_decay=0.01)
    wt = torch.from_numpy(w0.copy()).requires_grad_(True)
    theirs = (torch.optim.SGD([wt], lr=0.05, momentum=0.9, weight_decay=0.01) if opt_name == "sgd"
              else torch.optim.Adam([wt], lr=0.05, weight_decay=0.01))
    for g in grads:
        layer.grads = {"W": g}
        ours.step(One())
        wt.grad = torch.from_numpy(g.copy())
        theirs.step()
    np.testing.assert_allclose(layer.params["W"], wt.detach().numpy(), rtol=1e-12)


def _train_small(seed, dtype=np.float32, epochs=2):
    rng = np.random.default_rng(0)
    data = cnn.Dataset(rng.standard_normal((96, 1, 8, 8)).astype(dtype), rng.integers(0, 3, 96))
    model = cnn.Model(small_spec(), seed=seed, dtype=dtype)
    opt = cnn.Adam(0.01)
    result = cnn.fit(model, opt, data, data, epochs=epochs, batch_size=16, seed=seed)
    return model, opt, result


def test_same_seed_same_weights_and_metrics_bit_for_bit():
    m1, _, r1 = _train_small(seed=11)
    m2, _, r2 = _train_small(seed=11)
    m3, _, _ = _train_small(seed=12)
    strip = lambda h: [{k: v for k, v in e.items() if k != "seconds"} for e in h]  # noqa: E731
    assert strip(r1.history) == strip(r2.history)
    for k, v in m1.state_dict().items():
        assert np.array_equal(v, m2.state_dict()[k]), k
    assert not np.array_equal(m1.state_dict()["block1.conv.W"], m3.state_dict()["block1.conv.W"])


def test_resume_from_checkpoint_is_bit_identical(tmp_path):
    full_model, _, full = _train_small(seed=4, epochs=3)
    model, opt, first = _train_small(seed=4, epochs=1)
    cnn.save_checkpoint(tmp_path / "ck.npz", model, opt, 1, first.history)
    opt2 = cnn.Adam(0.01)
    model2, meta = cnn.load_checkpoint(tmp_path / "ck.npz", opt2)
    rng = np.random.default_rng(0)
    data = cnn.Dataset(rng.standard_normal((96, 1, 8, 8)).astype(np.float32), rng.integers(0, 3, 96))
    rest = cnn.fit(model2, opt2, data, data, epochs=3, batch_size=16, seed=4, start_epoch=meta["epoch"] + 1,
                   history=meta["history"])
    assert [e["train_loss"] for e in rest.history] == [e["train_loss"] for e in full.history]
    for k, v in full_model.state_dict().items():
        assert np.array_equal(v, model2.state_dict()[k]), k


def test_save_and_load_model_without_pickle(tmp_path):
    model = cnn.Model(small_spec(), seed=1, dtype=np.float64)
    cnn.save_model(tmp_path / "m.npz", model)
    with np.load(tmp_path / "m.npz", allow_pickle=False) as data:
        assert all(data[k].dtype != object for k in data.files)
    loaded = cnn.load_model(tmp_path / "m.npz")
    assert loaded.spec == model.spec and loaded.dtype == np.float64
    x = np.random.default_rng(2).standard_normal((3, 1, 8, 8))
    np.testing.assert_array_equal(loaded.forward(x), model.forward(x))


def test_divergence_raises_with_epoch_and_step():
    rng = np.random.default_rng(0)
    data = cnn.Dataset(rng.standard_normal((64, 1, 8, 8)).astype(np.float32), rng.integers(0, 3, 64))
    model = cnn.Model(small_spec(), seed=0)
    with pytest.raises(cnn.DivergenceError) as err:  # the first step sends float32 weights to inf
        cnn.fit(model, cnn.SGD(1e38, momentum=0.9), data, epochs=3, batch_size=16)
    assert err.value.epoch >= 1 and err.value.step >= 1
    assert f"epoch {err.value.epoch}, step {err.value.step}" in str(err.value)


def test_callback_stops_early_and_reports_each_epoch():
    rng = np.random.default_rng(0)
    data = cnn.Dataset(rng.standard_normal((32, 1, 8, 8)).astype(np.float32), rng.integers(0, 3, 32))
    seen = []

    def cb(report):
        seen.append(report.epoch)
        assert {"train_loss", "train_accuracy", "val_loss", "val_accuracy", "seconds"} <= set(report.metrics)
        return report.epoch == 2

    result = cnn.fit(cnn.Model(small_spec()), cnn.Adam(), data, data, epochs=5, batch_size=8, callbacks=[cb])
    assert seen == [1, 2] and result.stopped_early and result.epochs_run == 2


def test_float64_is_kept_throughout():
    model = cnn.Model(small_spec(), dtype=np.float64)
    x = np.random.default_rng(0).standard_normal((2, 1, 8, 8))
    assert model.forward(x).dtype == np.float64
    model32 = cnn.Model(small_spec())
    assert model32.forward(x).dtype == np.float32  # input is cast once, not silently upcast
