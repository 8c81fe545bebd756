"""Batch norm and dropout in a whole model: gradients, PyTorch, modes, files and resumption."""
import json

import numpy as np
import pytest

import cnn
from cnn.spec import ConvBlockSpec, ModelSpec
from tests.cnn.reference import check_gradients


def options_spec(batch_norm=True, dropout=0.3, dense=(6,)):
    return ModelSpec(input_shape=(1, 8, 8),
                     blocks=(ConvBlockSpec(3, 3, padding="same", pooling="max"),
                             ConvBlockSpec(4, 3, stride=2, padding=1, activation="sigmoid", pooling="l2")),
                     dense=dense, classes=3, batch_norm=batch_norm, dropout=dropout)


def test_layers_in_order_and_counted_by_shape_inference():
    spec = options_spec()
    names = [layer.name for layer in cnn.Model(spec).layers]
    assert names == ["block1.conv", "block1.bn", "block1.relu", "block1.pool", "block2.conv", "block2.bn",
                     "block2.sigmoid", "block2.pool", "flatten", "dense1.dropout", "dense1", "dense1.bn",
                     "dense1.relu", "logits.dropout", "logits"]
    assert names == [info.name for info in cnn.infer_shapes(spec)]
    plain = options_spec(batch_norm=False, dropout=0.0)
    assert cnn.param_count(spec) == cnn.param_count(plain) + 2 * (3 + 4 + 6)  # gamma and beta per channel
    assert cnn.forward_flops(spec) > cnn.forward_flops(plain)
    model = cnn.Model(spec)
    trained = sum(layer.params[key].size for _, layer, key in model.named_parameters())
    assert trained == model.n_params  # the running statistics are buffers, not parameters
    assert sum(v.size for v in model.state_dict().values()) == model.n_params + 2 * (3 + 4 + 6)


def test_options_off_leave_the_spec_and_its_json_as_before():
    plain = options_spec(batch_norm=False, dropout=0.0)
    assert "batch_norm" not in plain.to_dict() and "dropout" not in plain.to_dict()
    assert [l.name for l in cnn.Model(plain).layers] == [i.name for i in cnn.infer_shapes(plain)]
    assert not any(isinstance(l, (cnn.BatchNorm, cnn.Dropout)) for l in cnn.Model(plain).layers)
    assert ModelSpec.from_dict(json.loads(json.dumps(options_spec().to_dict()))) == options_spec()


@pytest.mark.parametrize("bad,message", [(dict(dropout=1.0), "dropout must be a probability in"),
                                         (dict(dropout=-0.1), "dropout must be a probability in"),
                                         (dict(batch_norm="yes"), "batch_norm must be true or false")])
def test_shape_inference_refuses_bad_options(bad, message):
    with pytest.raises(cnn.ShapeError, match=message):
        cnn.infer_shapes(options_spec(**bad))


def _fixed_masks(model, seed=5):
    """Training mode with dropout masks drawn afresh from ``seed``: every forward sees the same masks."""
    def reset():
        model.train(np.random.default_rng(seed))
    return reset


def test_finite_difference_gradient_with_batch_norm_and_dropout():
    """Central differences of the loss against every parameter gradient, float64, training mode."""
    model = cnn.Model(options_spec(), seed=3, dtype=np.float64)
    for _, layer, key in model.named_parameters():  # gamma and beta away from 1 and 0
        if key in ("gamma", "beta"):
            layer.params[key] += np.random.default_rng(4).uniform(-0.5, 0.5, layer.params[key].shape)
    rng = np.random.default_rng(6)
    x, y = rng.standard_normal((6, 1, 8, 8)), rng.integers(0, 3, 6)
    reset = _fixed_masks(model)

    def loss():
        reset()
        return cnn.softmax_cross_entropy(model.forward(x), y)[0]

    reset()
    _, dlogits = cnn.softmax_cross_entropy(model.forward(x), y)
    model.backward(dlogits)
    assert check_gradients(model, loss) > 60


def _torch_model_logits(x, p, masks, training, torch):
    """The options network in PyTorch: ``p`` by our names (buffers as tensors torch updates)."""
    F = torch.nn.functional

    def bn(h, name):
        return F.batch_norm(h, p[f"{name}.running_mean"], p[f"{name}.running_var"], p[f"{name}.gamma"],
                            p[f"{name}.beta"], training=training, momentum=0.1, eps=1e-5)

    h = torch.relu(bn(F.conv2d(x, p["block1.conv.W"], p["block1.conv.b"], padding="same"), "block1.bn"))
    h = F.max_pool2d(h, 2)
    h = torch.sigmoid(bn(F.conv2d(h, p["block2.conv.W"], p["block2.conv.b"], stride=2, padding=1), "block2.bn"))
    h = torch.flatten(F.lp_pool2d(h, 2, 2), 1)
    h = h * masks["dense1.dropout"] if training else h
    h = torch.relu(bn(F.linear(h, p["dense1.W"], p["dense1.b"]), "dense1.bn"))
    h = h * masks["logits.dropout"] if training else h
    return F.linear(h, p["logits.W"], p["logits.b"])


def test_whole_model_with_options_matches_torch_in_both_modes():
    """Two training steps (loss, every gradient, the running statistics), then evaluation logits."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    model = cnn.Model(options_spec(), seed=7, dtype=np.float64)
    p = {k: torch.from_numpy(v.copy()).requires_grad_("running" not in k) for k, v in model.state_dict().items()}
    rng = np.random.default_rng(8)
    model.train(np.random.default_rng(9))
    for step in range(2):
        x, y = rng.standard_normal((5, 1, 8, 8)), rng.integers(0, 3, 5)
        logits = model.forward(x)
        masks = {l.name: torch.from_numpy(l.cache) for l in model.layers if isinstance(l, cnn.Dropout)}
        loss, dlogits = cnn.softmax_cross_entropy(logits, y)
        model.backward(dlogits)
        for t in p.values():
            t.grad = None
        ref = F.cross_entropy(_torch_model_logits(torch.from_numpy(x), p, masks, True, torch), torch.from_numpy(y))
        ref.backward()
        np.testing.assert_allclose(loss, ref.item(), rtol=1e-10)
        for name, layer, key in model.named_parameters():
            np.testing.assert_allclose(layer.grads[key], p[name].grad.numpy(), rtol=1e-10, atol=1e-13,
                                       err_msg=f"{name}, step {step}")
        for name, value in model.state_dict().items():
            if "running" in name:
                np.testing.assert_allclose(value, p[name].detach().numpy(), rtol=1e-10, err_msg=name)
    x = rng.standard_normal((4, 1, 8, 8))
    model.eval()
    with torch.no_grad():
        want = _torch_model_logits(torch.from_numpy(x), p, {}, False, torch).numpy()
    np.testing.assert_allclose(model.forward(x), want, rtol=1e-10, atol=1e-13)


def test_evaluate_and_predict_use_eval_mode_and_restore_it():
    rng = np.random.default_rng(10)
    data = cnn.Dataset(rng.standard_normal((30, 1, 8, 8)), rng.integers(0, 3, 30))
    model = cnn.Model(options_spec(dropout=0.5), seed=1, dtype=np.float64)
    model.train()
    first = cnn.evaluate(model, data)
    assert model.training and cnn.evaluate(model, data) == first  # no dropout noise, no statistics moved
    stats = {k: v.copy() for k, v in model.state_dict().items() if "running" in k}
    np.testing.assert_array_equal(model.predict(data.x), model.predict(data.x))
    assert model.training and all(np.array_equal(v, model.state_dict()[k]) for k, v in stats.items())
    model.eval()
    cnn.evaluate(model, data)
    assert not model.training


def _data(dtype=np.float32):
    rng = np.random.default_rng(0)
    return cnn.Dataset(rng.integers(0, 256, (90, 1, 8, 8), dtype=np.uint8), rng.integers(0, 3, 90))


def _fit(model, opt, epochs, start=1, history=None):
    data = _data()
    return cnn.fit(model, opt, data, data, epochs=epochs, batch_size=16, seed=4, start_epoch=start,
                   history=history, augment=cnn.Augment(crop_padding=1),
                   schedule=cnn.Schedule(0.01, 4, "cosine", warmup_epochs=1))


def test_resume_with_options_and_a_schedule_is_bit_identical(tmp_path):
    norm = cnn.Normalizer.fit(_data().x)
    full_model, full_opt = cnn.Model(options_spec(), seed=4, normalizer=norm), cnn.Adam(0.01)
    full = _fit(full_model, full_opt, 4)
    model, opt = cnn.Model(options_spec(), seed=4, normalizer=norm), cnn.Adam(0.01)
    first = _fit(model, opt, 2)
    cnn.save_checkpoint(tmp_path / "ck.npz", model, opt, 2, first.history)
    opt2 = cnn.Adam(0.01)
    model2, meta = cnn.load_checkpoint(tmp_path / "ck.npz", opt2)
    rest = _fit(model2, opt2, 4, meta["epoch"] + 1, meta["history"])
    strip = lambda h: [{k: v for k, v in e.items() if k != "seconds"} for e in h]  # noqa: E731
    assert strip(rest.history) == strip(full.history)
    for k, v in full_model.state_dict().items():
        assert np.array_equal(v, model2.state_dict()[k]), k


def test_model_file_keeps_running_statistics(tmp_path):
    model = cnn.Model(options_spec(), seed=2, dtype=np.float64)
    _fit(model, cnn.Adam(0.01), 1)
    assert not np.allclose(model.state_dict()["block1.bn.running_var"], 1)
    cnn.save_model(tmp_path / "m.npz", model)
    loaded = cnn.load_model(tmp_path / "m.npz")
    assert loaded.spec == model.spec and not loaded.training  # a file's model predicts
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(loaded.state_dict()[k], v, err_msg=k)
    x = np.random.default_rng(3).standard_normal((5, 1, 8, 8))
    np.testing.assert_array_equal(loaded.forward(x), model.eval().forward(x))


def test_model_file_with_a_wrong_running_statistic_is_refused(tmp_path):
    model = cnn.Model(options_spec(), seed=2)
    arrays = {"spec": np.array(json.dumps(model.spec.to_dict())), "dtype": np.array("float32"),
              **{f"param/{k}": v for k, v in model.state_dict().items()}}
    arrays["param/block2.bn.running_var"] = np.ones(5, np.float32)
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(cnn.io.ModelFileError, match="block2.bn.running_var"):
        cnn.load_model(tmp_path / "bad.npz")
    del arrays["param/block2.bn.running_var"]
    np.savez(tmp_path / "missing.npz", **arrays)
    with pytest.raises(cnn.io.ModelFileError, match="missing"):
        cnn.load_model(tmp_path / "missing.npz")
