"""Real MNIST: the reference nets reach the issue's accuracy targets (figures printed at the end)."""
import time

import pytest

import cnn
from cnn.spec import ConvBlockSpec, ModelSpec
from tests.conftest import shared_mnist_dir


def train_and_test(spec, train, test, *, epochs, batch_size, lr, seed=0):
    model = cnn.Model(spec, seed=seed)
    started = time.perf_counter()
    result = cnn.fit(model, cnn.Adam(lr), train, epochs=epochs, batch_size=batch_size, seed=seed)
    seconds = time.perf_counter() - started
    _, accuracy = cnn.evaluate(model, test)
    return accuracy, seconds / result.epochs_run


#: The reference net of the closing notes: two 5x5 "same" conv blocks (16 and 32 kernels) with
#: 2x2 max pooling, a 128-unit dense layer, Adam at 1e-3, batches of 32.
REFERENCE = ModelSpec(blocks=(ConvBlockSpec(16, 5, padding="same"), ConvBlockSpec(32, 5, padding="same")),
                      dense=(128,))


def test_bundled_subset_reaches_95_percent(record_figure):
    train, test = cnn.load_mnist("bundled")
    spec = REFERENCE
    accuracy, per_epoch = train_and_test(spec, train, test, epochs=3, batch_size=32, lr=1e-3)
    record_figure(f"bundled subset: test accuracy {accuracy:.4f} on {len(test)} images "
                  f"after 3 epochs on {len(train)} ({per_epoch:.1f} s/epoch)")
    assert accuracy >= 0.95


@pytest.mark.slow
def test_full_mnist_reaches_98_5_percent_in_two_epochs(record_figure):
    folder = shared_mnist_dir()
    if folder is None:
        pytest.skip("full MNIST not found (shared/data/mnist or CNN_MNIST_DIR)")
    train, test = cnn.load_mnist("full", folder)
    assert len(train) == 60000 and len(test) == 10000
    spec = REFERENCE
    accuracy, per_epoch = train_and_test(spec, train, test, epochs=2, batch_size=32, lr=1e-3)
    record_figure(f"full MNIST: test accuracy {accuracy:.4f} on 10000 images after 2 epochs on 60000 "
                  f"({per_epoch:.0f} s/epoch, reference net {cnn.describe(spec).splitlines()[-1].split()[1]} params)")
    assert accuracy >= 0.985
