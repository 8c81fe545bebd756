"""Colour inputs: per-channel normalisation saved with the model, augmentation, PyTorch parity."""
import numpy as np
import pytest

import cnn
from cnn.spec import ConvBlockSpec, ModelSpec
from tests.cnn.torch_twin import torch_logits, torch_params


def rgb_spec(pool="max"):
    return ModelSpec(input_shape=(3, 10, 10),
                     blocks=(ConvBlockSpec(4, 3, padding="same", pooling=pool),
                             ConvBlockSpec(5, 3, stride=2, padding=1, activation="sigmoid", pooling="l2")),
                     dense=(7,), classes=4)


def test_normalizer_per_channel_from_training_split():
    rng = np.random.default_rng(0)
    x = np.stack([rng.integers(0, 50, (300, 6, 6)), rng.integers(100, 250, (300, 6, 6)),
                  np.full((300, 6, 6), 9)], axis=1).astype(np.uint8)
    norm = cnn.Normalizer.fit(x, chunk=64)
    want = x.astype(np.float64)
    np.testing.assert_allclose(norm.mean, want.mean(axis=(0, 2, 3)), rtol=1e-12)
    np.testing.assert_allclose(norm.std[:2], want.std(axis=(0, 2, 3))[:2], rtol=1e-10)
    assert norm.std[2] == 1.0  # a constant channel is centred, not divided by zero
    z = norm(x, np.float64)
    np.testing.assert_allclose(z.mean(axis=(0, 2, 3)), 0, atol=1e-10)
    np.testing.assert_allclose(z.std(axis=(0, 2, 3))[:2], 1, rtol=1e-10)
    assert norm(x[:5]).dtype == np.float32 and x.dtype == np.uint8


def test_saved_model_predicts_raw_images(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (40, 3, 10, 10), dtype=np.uint8)
    model = cnn.Model(rgb_spec(), seed=2, normalizer=cnn.Normalizer.fit(x))
    cnn.save_model(tmp_path / "m.npz", model)
    loaded = cnn.load_model(tmp_path / "m.npz")
    assert loaded.normalizer == model.normalizer
    np.testing.assert_array_equal(loaded.predict(x), model.forward(model.normalizer(x)).argmax(axis=1))
    plain = cnn.Model(rgb_spec(), seed=2)
    cnn.save_model(tmp_path / "p.npz", plain)
    assert cnn.load_model(tmp_path / "p.npz").normalizer is None


def test_augment_is_deterministic_per_seed_and_keeps_pixels():
    x = np.arange(2 * 3 * 5 * 6, dtype=np.uint8).reshape(2, 3, 5, 6)
    flip = cnn.Augment(hflip=True)
    a = flip(x, np.random.default_rng(3))
    assert all(np.array_equal(a[i], x[i]) or np.array_equal(a[i], x[i, :, :, ::-1]) for i in range(2))
    crop = cnn.Augment(crop_padding=2)
    c1, c2 = crop(x, np.random.default_rng(4)), crop(x, np.random.default_rng(4))
    np.testing.assert_array_equal(c1, c2)
    assert c1.shape == x.shape and c1.dtype == np.uint8
    for i in range(2):  # every crop is a shifted window of the zero-padded image
        padded = np.pad(x[i], ((0, 0), (2, 2), (2, 2)))
        assert any(np.array_equal(c1[i], padded[:, t:t + 5, l:l + 6]) for t in range(5) for l in range(5))
    assert not cnn.Augment() and cnn.Augment(hflip=True)


def test_fit_with_augmentation_is_reproducible():
    rng = np.random.default_rng(5)
    data = cnn.Dataset(rng.integers(0, 256, (64, 3, 10, 10), dtype=np.uint8), rng.integers(0, 4, 64))
    runs = []
    for _ in range(2):
        model = cnn.Model(rgb_spec(), seed=0, normalizer=cnn.Normalizer.fit(data.x))
        cnn.fit(model, cnn.Adam(1e-2), data, epochs=2, batch_size=16, seed=9,
                augment=cnn.Augment(crop_padding=1, hflip=True))
        runs.append(model.state_dict())
    for k in runs[0]:
        np.testing.assert_array_equal(runs[0][k], runs[1][k])


@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-10), (np.float32, 1e-4)])
@pytest.mark.parametrize("pool", ["max", "avg"])
def test_whole_model_with_three_channels_matches_torch(dtype, rtol, pool):
    """Raw uint8 RGB in, per-channel normalisation, conv/pool/sigmoid/l2/dense: loss, logits, every grad."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(6)
    x = rng.integers(0, 256, (6, 3, 10, 10), dtype=np.uint8)
    y = rng.integers(0, 4, 6)
    norm = cnn.Normalizer.fit(x)
    model = cnn.Model(rgb_spec(pool), seed=7, dtype=dtype, normalizer=norm)
    p = torch_params(model)
    mean = torch.tensor(norm.mean, dtype=torch.float64).view(1, 3, 1, 1)
    std = torch.tensor(norm.std, dtype=torch.float64).view(1, 3, 1, 1)
    xt = ((torch.from_numpy(x).double() - mean) / std).to(p["block1.conv.W"].dtype)
    logits = torch_logits(xt, p, pool)
    ref = F.cross_entropy(logits, torch.from_numpy(y))
    ref.backward()
    ours = model.forward(model.prepare(x))
    np.testing.assert_allclose(ours, logits.detach().numpy(), rtol=rtol, atol=rtol)
    loss, dlogits = cnn.softmax_cross_entropy(ours, y)
    model.backward(dlogits)
    np.testing.assert_allclose(loss, ref.item(), rtol=rtol)
    for name, layer, key in model.named_parameters():
        np.testing.assert_allclose(layer.grads[key], p[name].grad.numpy(), rtol=rtol, atol=rtol / 10, err_msg=name)
