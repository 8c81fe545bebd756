"""Normalisation is applied once: ``cnn.load_mnist``'s standardised sets and a model file that
carries its own standardisation of raw pixels (as a sweep's ``model.npz``) give the same accuracy
in-process and after ``save_model`` / ``load_model`` (issue 17: it was 11%)."""
import numpy as np
import pytest

import cnn
from cnn.mnist import NORMALIZED
from cnn.spec import ConvBlockSpec, ModelSpec

TINY = ModelSpec(blocks=(ConvBlockSpec(8, 3, padding="same"),), dense=(32,))


@pytest.fixture(scope="module")
def mnist():
    train, test = cnn.load_mnist("bundled")
    return cnn.subsample(train, 1500, seed=0), test


def test_a_model_file_with_its_own_normalisation_predicts_load_mnist_sets_right(tmp_path, mnist):
    train, test = mnist
    assert train.normalized == NORMALIZED and test.normalized == NORMALIZED  # the loader marks its sets
    # A sweep's model: standardises raw pixels (0..255) itself, with statistics of its own split.
    model = cnn.Model(TINY, seed=0, normalizer=cnn.Normalizer((33.3,), (78.6,)))
    cnn.fit(model, cnn.Adam(1e-3), train, epochs=2, batch_size=32, seed=0)
    _, in_process = cnn.evaluate(model, test)
    assert in_process > 0.75
    cnn.save_model(tmp_path / "model.npz", model)
    loaded = cnn.load_model(tmp_path / "model.npz")
    assert loaded.normalizer == model.normalizer
    assert cnn.evaluate(loaded, test)[1] == pytest.approx(in_process)
    assert np.mean(loaded.predict(test) == test.y) == pytest.approx(in_process)
    raw = np.rint(NORMALIZED.undo(test.x)).astype(np.uint8)  # the pixels as the files hold them
    assert np.mean(loaded.predict(raw) == test.y) == pytest.approx(in_process, abs=0.002)
    with pytest.raises(ValueError, match="standardised already"):
        loaded.predict(test.x)  # the bare standardised array would be standardised twice


def test_a_model_trained_on_standardised_sets_keeps_taking_them(tmp_path, mnist):
    train, test = mnist
    model = cnn.Model(TINY, seed=0)
    cnn.fit(model, cnn.Adam(1e-3), train, epochs=2, batch_size=32, seed=0)
    cnn.save_model(tmp_path / "plain.npz", model)
    loaded = cnn.load_model(tmp_path / "plain.npz")
    accuracy = cnn.evaluate(model, test)[1]
    assert accuracy > 0.75 and np.mean(loaded.predict(test.x) == test.y) == pytest.approx(accuracy)
    assert np.mean(loaded.predict(test) == test.y) == pytest.approx(accuracy)


def test_normalizer_undo_inverts_it():
    x = np.arange(2 * 3 * 2 * 2, dtype=np.float32).reshape(2, 3, 2, 2)
    norm = cnn.Normalizer((1.0, 2.0, 3.0), (2.0, 4.0, 0.5))
    np.testing.assert_allclose(norm.undo(norm(x)), x, rtol=1e-6, atol=1e-5)
