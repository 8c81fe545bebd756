"""Reading shared images batch by batch (sweeper/trials/pages.py): same values, fewer resident pages,
and private memory never released (there ``MADV_DONTNEED`` would zero it)."""
import mmap
import sys
from pathlib import Path

import numpy as np
import pytest

import cnn
from sweeper.trials import pages
from sweeper.spec.config import ModelConfig

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="madvise and /proc are Linux's")


def shared_images(n=2000, shape=(3, 32, 32)):
    """uint8 images in a shared anonymous mapping, as Ray's object store hands them out (read-only)."""
    size = n * int(np.prod(shape))
    buf = mmap.mmap(-1, size, flags=mmap.MAP_SHARED)
    x = np.frombuffer(buf, dtype=np.uint8).reshape(n, *shape)
    x[...] = np.random.default_rng(0).integers(0, 256, x.shape, dtype=np.uint8)
    x.flags.writeable = False
    return x


def resident_shared() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssShmem:"):
            return int(line.split()[1]) * 1024
    return 0


def test_batches_read_through_pages_equal_the_array_and_its_pages_are_released():
    before = resident_shared()
    x = shared_images()
    expected = np.array(x)  # a private copy to compare with
    assert pages.shared_span(x) is not None
    y = np.arange(len(x)) % 10
    data, = pages.paged(cnn.Dataset(x, y), window=2**20, min_bytes=0)
    assert isinstance(data.x, pages.PagedArray) and data.x.shape == x.shape and len(data) == len(x)
    order = np.random.default_rng(1).permutation(len(x))
    for i in range(0, len(x), 64):
        idx = order[i:i + 64]
        np.testing.assert_array_equal(data.x[idx], expected[idx])
    assert data.x.releases >= len(x) // 64  # every shuffled batch
    assert resident_shared() - before < x.nbytes / 4  # the whole array was read, little of it stays mapped
    for i in range(0, len(x), 300):  # slices (evaluation) are copies, released every window
        part = data.x[i:i + 300]
        assert not np.may_share_memory(part, x)
        np.testing.assert_array_equal(part, expected[i:i + 300])


def test_private_memory_is_never_paged():
    x = np.random.default_rng(0).integers(0, 256, (500, 1, 28, 28), dtype=np.uint8)
    assert pages.shared_span(x) is None
    data = cnn.Dataset(x, np.zeros(500, dtype=np.int64))
    assert pages.paged(data, min_bytes=0)[0] is data
    shared = shared_images(10)
    assert pages.shared_span(shared[1:].reshape(-1)) is not None
    assert pages.shared_span(np.ascontiguousarray(shared[:, :1])) is None  # a private copy of part of it


def test_small_data_stays_mapped():
    x = shared_images(100)
    data = cnn.Dataset(x, np.zeros(100, dtype=np.int64))
    assert pages.paged(data, None, data)[0] is data  # under MIN_BYTES: paging would cost more than it saves
    train, val, test = pages.paged(data, None, data, min_bytes=2 * x.nbytes)  # decided on all parts together
    assert val is None and isinstance(train.x, pages.PagedArray) and isinstance(test.x, pages.PagedArray)


def test_a_trial_trains_the_same_on_paged_images():
    """Same seed, same batches: the paged and the plain read give the same weights."""
    x = shared_images(256, (1, 8, 8))
    y = np.arange(256) % 3
    results = []
    for data in (cnn.Dataset(x, y), pages.paged(cnn.Dataset(x, y), window=1024, min_bytes=0)[0]):
        model = cnn.Model(ModelConfig(blocks=1, depth=2, kernel_size=3, pooling="none", dense=[], classes=3)
                          .to_spec((1, 8, 8)), seed=0, normalizer=cnn.Normalizer.fit(x))
        cnn.fit(model, cnn.make_optimizer("sgd", 0.1), data, epochs=2, batch_size=32, seed=0)
        results.append(model.forward(np.asarray(x, dtype=np.float32) / 255))
    np.testing.assert_array_equal(results[0], results[1])


@pytest.mark.parametrize("page_data, paged", [("auto", False), ("always", True), ("never", False)])
def test_resources_page_data_decides(page_data, paged):
    """``auto`` pages data of MIN_BYTES or more (this is less), ``always`` any, ``never`` none."""
    from sweeper.plan.data import PreparedData
    from sweeper.plan.trials import Point, Trial
    from sweeper.trials.trial import TrialTask, execute

    x = shared_images(300, (1, 8, 8))
    y = np.arange(300) % 3
    data = PreparedData(cnn.Dataset(x[:200], y[:200]), None, cnn.Dataset(x[200:], y[200:]), cnn.Normalizer.fit(x))
    spec = ModelConfig(blocks=1, depth=2, kernel_size=3, pooling="none", dense=[], classes=3).to_spec((1, 8, 8))
    config = {"seed": 0, "data": {}, "model": {"classes": 3},
              "train": {"epochs": 1, "batch_size": 50, "dtype": "float32", "optimizer": "sgd", "learning_rate": 0.1}}
    trial = Trial(Point({}, config, "p", "p", spec, None), 1, 0)
    outcome = execute(TrialTask(trial, page_data=page_data), data)
    assert outcome.status == "FINISHED" and outcome.profile["paged_data"] is paged
    assert outcome.metrics["peak_rss_mib"] > 0
