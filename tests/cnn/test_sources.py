"""Loaders of every file format on small generated data, and their messages for bad data."""
import gzip

import numpy as np
import pytest

import cnn
from cnn.mnist import TRAIN_IMAGES, TRAIN_LABELS
from tests.cnn.datagen import idx_bytes, write_cifar_folder, write_idx_folder, write_shapes_folder


@pytest.mark.parametrize("gz", [True, False])
def test_idx_folder_fashion_mnist_names(tmp_path, gz):
    x, y, xt, yt = write_idx_folder(tmp_path, gz=gz)
    train, test = cnn.load_idx(tmp_path)
    assert train.x.shape == (60, 1, 28, 28) and train.x.dtype == np.uint8 and train.x.flags.c_contiguous
    np.testing.assert_array_equal(train.x[:, 0], x)
    np.testing.assert_array_equal(train.y, y)
    np.testing.assert_array_equal(test.x[:, 0], xt)
    assert train.y.dtype == np.int64


def test_idx_label_offset_emnist_letters(tmp_path):
    _, y, _, _ = write_idx_folder(tmp_path, classes=5, label_offset=1)
    train, _ = cnn.load_idx(tmp_path, label_offset=1, classes=5)
    np.testing.assert_array_equal(train.y, y)
    with pytest.raises(cnn.DataError, match=rf"{TRAIN_LABELS}.*label 5 at index 4 out of range 0..4"):
        cnn.load_idx(tmp_path, classes=5)  # without the offset labels run 1..5
    with pytest.raises(cnn.DataError, match=r"label -1 at index 0"):
        cnn.load_idx(tmp_path, label_offset=2)


def test_idx_bad_magic_count_mismatch_and_truncation(tmp_path):
    write_idx_folder(tmp_path, gz=False)
    images = tmp_path / TRAIN_IMAGES
    good = images.read_bytes()
    images.write_bytes(b"\x01\x02" + good[2:])
    with pytest.raises(cnn.DataError, match=rf"{TRAIN_IMAGES}: bad magic number 0x0102"):
        cnn.load_source("idx", tmp_path)
    images.write_bytes(good[:-100])
    with pytest.raises(cnn.DataError, match=rf"{TRAIN_IMAGES}: truncated payload"):
        cnn.load_source("idx", tmp_path)
    images.write_bytes(idx_bytes(np.zeros((59, 28, 28), np.uint8)))
    with pytest.raises(cnn.DataError, match=rf"count mismatch: .*{TRAIN_IMAGES} holds 59 images but .*"
                                            rf"{TRAIN_LABELS} holds 60 labels"):
        cnn.load_source("idx", tmp_path)
    (tmp_path / TRAIN_LABELS).unlink()
    with pytest.raises(cnn.DataError, match=rf"lacks IDX file\(s\) {TRAIN_LABELS}"):
        cnn.load_source("idx", tmp_path)


@pytest.mark.parametrize("layout", ["nhw", "nhwc", "nchw"])
def test_npz_layouts_and_split_off_test(tmp_path, layout):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (50, 3, 10, 12), dtype=np.uint8)
    if layout == "nhw":
        x = x[:, 0]
    stored = x.transpose(0, 2, 3, 1) if layout == "nhwc" else x
    y = np.arange(50) % 5
    np.savez(tmp_path / "d.npz", x=stored, y=y)
    train, test = cnn.load_source("npz", tmp_path / "d.npz", test_fraction=0.2, classes=5)
    assert len(train) == 40 and len(test) == 10 and np.bincount(test.y).tolist() == [2] * 5
    channels = 1 if layout == "nhw" else 3
    assert train.x.shape[1:] == (channels, 10, 12)
    want = x[:, None] if layout == "nhw" else x
    assert sorted(map(bytes, np.concatenate([train.x, test.x]))) == sorted(map(bytes, want))


def test_npz_float_pixels_separate_test_and_missing_arrays(tmp_path):
    x = np.random.default_rng(1).random((20, 8, 8, 1))
    np.savez(tmp_path / "a.npz", x=x, y=np.arange(20) % 2, x_test=x[:6], y_test=np.arange(6) % 2)
    train, test = cnn.load_npz(tmp_path / "a.npz")
    assert train.x.dtype == np.float32 and train.x.shape == (20, 1, 8, 8) and len(test) == 6
    np.savez(tmp_path / "t.npz", x=x[:4], y=np.zeros(4, int))
    assert len(cnn.load_npz(tmp_path / "a.npz", tmp_path / "t.npz")[1]) == 4
    np.savez(tmp_path / "noy.npz", x=x)
    with pytest.raises(cnn.DataError, match=r"noy.npz: has 'x' but no 'y'"):
        cnn.load_npz(tmp_path / "noy.npz")
    np.savez(tmp_path / "none.npz", images=x)
    with pytest.raises(cnn.DataError, match=r"none.npz: no arrays 'x' and 'y'"):
        cnn.load_npz(tmp_path / "none.npz")
    np.savez(tmp_path / "count.npz", x=x, y=np.zeros(19, int))
    with pytest.raises(cnn.DataError, match=r"count.npz: count mismatch: x holds 20 images but y holds 19"):
        cnn.load_npz(tmp_path / "count.npz")
    np.savez(tmp_path / "lab.npz", x=x, y=np.full(20, 7))
    with pytest.raises(cnn.DataError, match=r"lab.npz: label 7 at index 0 out of range 0..4 \(20 bad labels"):
        cnn.load_npz(tmp_path / "lab.npz", classes=5)
    data = (tmp_path / "a.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(cnn.DataError, match=r"cut.npz: not a readable .npz file \(truncated\?\)"):
        cnn.load_npz(tmp_path / "cut.npz")


def test_folder_rgb_classes_and_split(tmp_path):
    names = write_shapes_folder(tmp_path / "flat", per_class=5, size=12)
    train, test = cnn.load_source("folder", tmp_path / "flat", test_fraction=0.4)
    assert train.x.shape[1:] == (3, 12, 12) and train.x.dtype == np.uint8
    assert len(train) == 12 and len(test) == 8 and set(train.y) == set(range(len(names)))
    # disc (label 1) is green: its green channel dominates inside the shape
    write_shapes_folder(tmp_path / "split", per_class=6, size=12, split=True, test_per_class=3)
    train, test = cnn.load_folder(tmp_path / "split")
    assert len(train) == 24 and len(test) == 12
    np.testing.assert_array_equal(test.y, np.repeat([0, 1, 2, 3], 3))  # sorted names: bar cross disc square
    green = train.x[train.y == 2, 1].astype(int) - train.x[train.y == 2, 0]  # discs are green
    assert (green > 100).sum(axis=(1, 2)).min() > 4


def test_folder_gray_resize_and_faults(tmp_path):
    from PIL import Image

    for cls, shade in (("a", 10), ("b", 200)):
        (tmp_path / cls).mkdir()
        for i, size in enumerate([(8, 8), (10, 6)]):
            Image.new("L", size, shade).save(tmp_path / cls / f"{i}.png")
    with pytest.raises(cnn.DataError, match=r"mixed image sizes: .*0.png is 8x8 but .*1.png is 10x6"):
        cnn.load_folder(tmp_path)
    train, _ = cnn.load_folder(tmp_path, resize=(5, 7))
    assert train.x.shape == (4, 1, 5, 7) and train.x[2:].min() == 200
    (tmp_path / "c").mkdir()
    with pytest.raises(cnn.DataError, match=r"/c: empty class folder"):
        cnn.load_folder(tmp_path, resize=(5, 7))
    (tmp_path / "c" / "x.png").write_bytes((tmp_path / "a" / "0.png").read_bytes()[:40])
    with pytest.raises(cnn.DataError, match=r"c/x.png: (not a readable image|cannot decode)"):
        cnn.load_folder(tmp_path, resize=(5, 7))


def test_cifar10_binary(tmp_path):
    x, y, xt, yt = write_cifar_folder(tmp_path)
    train, test = cnn.load_source("cifar10", tmp_path)
    np.testing.assert_array_equal(train.x, x)
    np.testing.assert_array_equal(train.y, y)
    np.testing.assert_array_equal(test.x, xt)
    batch = tmp_path / "data_batch_2.bin"
    batch.write_bytes(batch.read_bytes()[:-5])
    with pytest.raises(cnn.DataError, match=r"data_batch_2.bin: 61455 bytes is not a whole number of 3073-byte"):
        cnn.load_cifar10(tmp_path)
    raw = bytearray((tmp_path / "test_batch.bin").read_bytes())
    raw[3073] = 12
    (tmp_path / "test_batch.bin").write_bytes(bytes(raw))
    batch.unlink()
    with pytest.raises(cnn.DataError, match=r"test_batch.bin: label 12 at index 1 out of range 0..9"):
        cnn.load_cifar10(tmp_path)
    (tmp_path / "test_batch.bin").unlink()
    (tmp_path / "data_batch_1").write_bytes(b"pickle")
    with pytest.raises(cnn.DataError, match="pickled Python version"):
        cnn.load_cifar10(tmp_path)


def test_bundled_raw_matches_the_standardised_loader():
    raw, _ = cnn.load_source("bundled")
    std, _ = cnn.load_mnist("bundled")
    np.testing.assert_allclose((raw.x / 255.0 - cnn.mnist.MEAN) / cnn.mnist.STD, std.x, rtol=1e-5, atol=1e-5)
