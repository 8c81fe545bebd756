"""MNIST module: IDX reading and its error messages, file search order, downloads, bundled subset."""
from __future__ import annotations

import contextlib
import functools
import gzip
import http.server
import importlib.util
import os
import struct
import threading
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from cnn import mnist
from cnn.mnist import FILE_NAMES, MnistError

REPO = Path(__file__).resolve().parents[2]


def _shared_mnist() -> Path | None:
    # CI clones the repo with shared/ beside it; elsewhere CNN_MNIST_DIR may point at the files.
    # Read at import time, before the autouse fixture clears the variable.
    beside = Path(__file__).resolve().parents[3] / "shared" / "data" / "mnist"
    if beside.is_dir():
        return beside
    env = os.environ.get("CNN_MNIST_DIR")
    return Path(env) if env and Path(env).is_dir() else None


SHARED = _shared_mnist()
needs_shared = pytest.mark.skipif(SHARED is None, reason="full MNIST not found (shared/data/mnist)")

# Published MNIST label counts (also in shared/data/mnist/README.md).
TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch, tmp_path):
    """No test sees the developer's MNIST settings or cache, or reaches the real mirrors."""
    monkeypatch.delenv("CNN_MNIST_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setenv("CNN_MNIST_MIRRORS", "http://127.0.0.1:9/unreachable/")
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)


def idx_bytes(array: np.ndarray, code: int = 0x08) -> bytes:
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write(path: Path, data: bytes, gz: bool = False) -> Path:
    path.write_bytes(gzip.compress(data, mtime=0) if gz else data)
    return path


def fake_mnist(folder: Path, n_train: int = 20, n_test: int = 10, gz: bool = True) -> Path:
    """A folder with the four standard files holding small random images and labels."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for images_name, labels_name, n in ((FILE_NAMES[0], FILE_NAMES[1], n_train),
                                        (FILE_NAMES[2], FILE_NAMES[3], n_test)):
        suffix = ".gz" if gz else ""
        write(folder / (images_name + suffix), idx_bytes(rng.integers(0, 256, (n, 28, 28))), gz)
        write(folder / (labels_name + suffix), idx_bytes(np.arange(n) % 10), gz)
    return folder


# ------------------------------------------------------------------------------------------
# Reading


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_plain_and_gzip(tmp_path, gz):
    images = np.arange(3 * 5 * 4).reshape(3, 5, 4).astype(np.uint8)
    labels = np.array([0, 9, 3], dtype=np.uint8)
    # Deliberately misleading suffixes: gzip is detected from the content.
    img_path = write(tmp_path / ("images.bin" if gz else "images.gz"), idx_bytes(images), gz)
    lab_path = write(tmp_path / "labels", idx_bytes(labels), gz)
    got = mnist.read_idx(img_path)
    assert got.dtype == np.uint8 and got.shape == (3, 5, 4) and got.flags.writeable
    np.testing.assert_array_equal(got, images)
    x, y = mnist.load_pair(img_path, lab_path)
    np.testing.assert_array_equal(x, images)  # any H x W is accepted
    np.testing.assert_array_equal(y, labels)


def _corruptions():
    good_images = idx_bytes(np.zeros((2, 28, 28)))
    good_labels = idx_bytes(np.array([1, 2]))
    return {
        "bad magic": (b"\x01\x00\x08\x03" + good_images[4:], False, "bad magic number"),
        "not idx": (b"hello world, not idx", False, "bad magic number"),
        "dtype code": (idx_bytes(np.zeros((2, 28, 28)), code=0x0D), False,
                       "unsupported data type code 0x0D"),
        "short magic": (b"\x00\x00", False, "truncated header"),
        "short dims": (good_images[:10], False, "truncated header: 3 dimensions need 16 header bytes"),
        "short payload": (good_images[:-5], False, f"needs {2 * 28 * 28} bytes of data, found {2 * 28 * 28 - 5}"),
        "trailing": (good_labels + b"xyz", False, "trailing bytes"),
        "short payload gz": (good_images[:-1], True, "truncated payload"),
        "corrupt gzip": (gzip.compress(good_images, mtime=0)[:-30], None, "corrupt gzip stream"),
        "garbled gzip": (b"\x1f\x8b" + b"\x00" * 40, None, "corrupt gzip stream"),
    }


@pytest.mark.parametrize("case", list(_corruptions()))
def test_read_idx_corruptions(tmp_path, case):
    data, gz, phrase = _corruptions()[case]
    path = tmp_path / "broken-idx3-ubyte"
    if gz is None:
        path.write_bytes(data)  # already (broken) gzip
    else:
        write(path, data, gz)
    with pytest.raises(MnistError) as info:
        mnist.read_idx(path)
    assert str(path) in str(info.value)
    assert phrase in str(info.value)


def test_truncated_payload_names_expected_and_found(tmp_path):
    path = write(tmp_path / "t.idx", idx_bytes(np.zeros((4, 28, 28)))[:100])
    with pytest.raises(MnistError, match=r"truncated payload.*needs 3136 bytes of data, found 84"):
        mnist.read_idx(path)


def test_missing_file_is_mnist_error(tmp_path):
    with pytest.raises(MnistError, match="cannot read file"):
        mnist.read_idx(tmp_path / "nope")


def test_read_images_and_labels_check_rank(tmp_path):
    flat = write(tmp_path / "flat", idx_bytes(np.zeros(10)))
    cube = write(tmp_path / "cube", idx_bytes(np.zeros((2, 2, 2))))
    with pytest.raises(MnistError, match=r"flat: expected 3-D images"):
        mnist.read_images(flat)
    with pytest.raises(MnistError, match=r"cube: expected 1-D labels"):
        mnist.read_labels(cube)


def test_labels_out_of_range_names_first_bad_value(tmp_path):
    path = write(tmp_path / "labels-idx1-ubyte.gz", idx_bytes(np.array([0, 9, 4, 12, 255, 1])), True)
    with pytest.raises(MnistError) as info:
        mnist.read_labels(path)
    msg = str(info.value)
    assert str(path) in msg and "label out of range 0..9" in msg
    assert "value 12 at index 3" in msg and "2 bad labels" in msg


def test_count_mismatch_names_both_files(tmp_path):
    images = write(tmp_path / "imgs", idx_bytes(np.zeros((3, 28, 28))))
    labels = write(tmp_path / "labs", idx_bytes(np.zeros(4)))
    with pytest.raises(MnistError) as info:
        mnist.load_pair(images, labels)
    msg = str(info.value)
    assert "count mismatch" in msg
    assert f"{images} holds 3 images" in msg and f"{labels} holds 4 labels" in msg


# ------------------------------------------------------------------------------------------
# Search order


def test_explicit_path_beats_env_and_cache(tmp_path, monkeypatch):
    explicit = fake_mnist(tmp_path / "explicit", gz=False)  # plain files are found too
    monkeypatch.setenv("CNN_MNIST_DIR", str(fake_mnist(tmp_path / "env")))
    fake_mnist(mnist.cache_dir())
    assert mnist.mnist_dir(explicit) == explicit


def test_env_beats_cache(tmp_path, monkeypatch):
    env = fake_mnist(tmp_path / "env")
    monkeypatch.setenv("CNN_MNIST_DIR", str(env))
    fake_mnist(mnist.cache_dir())
    assert mnist.mnist_dir() == env


def test_cache_respects_xdg_cache_home(tmp_path):
    cache = tmp_path / "xdg-cache" / "cnn-sweeper" / "mnist"
    assert mnist.cache_dir() == cache
    fake_mnist(cache)
    assert mnist.mnist_dir(download=False) == cache
    train, test = mnist.load_mnist("full", download=False)
    assert (len(train), len(test)) == (20, 10)


def test_cache_defaults_to_home(tmp_path, monkeypatch):
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    cache = tmp_path / "home" / ".cache" / "cnn-sweeper" / "mnist"
    assert mnist.cache_dir() == cache
    fake_mnist(cache)
    assert mnist.mnist_dir(download=False) == cache


def _no_network(*args, **kwargs):
    raise AssertionError("must not download")


def test_explicit_path_missing_files_is_error_not_download(tmp_path, monkeypatch):
    monkeypatch.setattr(urllib.request, "urlopen", _no_network)
    folder = fake_mnist(tmp_path / "partial")
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(MnistError, match=r"partial \(from path argument\) lacks MNIST files: "
                                         r"t10k-labels-idx1-ubyte"):
        mnist.mnist_dir(folder)
    with pytest.raises(MnistError, match="no such directory"):
        mnist.load_mnist("full", tmp_path / "absent")
    monkeypatch.setenv("CNN_MNIST_DIR", str(folder))
    with pytest.raises(MnistError, match=r"from CNN_MNIST_DIR\) lacks"):
        mnist.mnist_dir()


def test_download_false_says_how_to_point(monkeypatch):
    monkeypatch.setattr(urllib.request, "urlopen", _no_network)
    with pytest.raises(MnistError, match="download=False") as info:
        mnist.mnist_dir(download=False)
    assert "CNN_MNIST_DIR" in str(info.value) and "path=" in str(info.value)


def test_mirrors_from_env(monkeypatch):
    monkeypatch.setenv("CNN_MNIST_MIRRORS", " http://a/x/  http://b/ ")
    assert mnist.mirrors() == ("http://a/x/", "http://b/")
    monkeypatch.delenv("CNN_MNIST_MIRRORS")
    assert mnist.mirrors() == mnist.DEFAULT_MIRRORS


# ------------------------------------------------------------------------------------------
# Downloading from a local HTTP server


@contextlib.contextmanager
def serve(root: Path):
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def mirror_root(tmp_path):
    """``good/`` serves real MNIST, ``bad/`` wrong-but-valid and corrupt files, ``empty/`` nothing."""
    root = tmp_path / "www"
    (root / "empty").mkdir(parents=True)
    if SHARED is not None:
        (root / "good").symlink_to(SHARED, target_is_directory=True)
    bad = fake_mnist(root / "bad")  # valid IDX, wrong checksums
    write(bad / "train-labels-idx1-ubyte.gz", b"\x1f\x8b not really gzip")
    with serve(root) as url:
        yield url


@needs_shared
def test_download_skips_failing_mirror(mirror_root, monkeypatch):
    monkeypatch.setenv("CNN_MNIST_MIRRORS", f"{mirror_root}/empty/ {mirror_root}/good")
    with pytest.warns(UserWarning) as record:
        folder = mnist.mnist_dir()
    for name in FILE_NAMES:
        assert any(f"empty/ failed for {name}: HTTP 404" in str(w.message) for w in record)
    assert folder == mnist.cache_dir()
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"{n}.gz" for n in FILE_NAMES)
    train, test = mnist.load_mnist("full")
    assert (len(train), len(test)) == (60000, 10000)
    # Second call finds the cache and does not download again.
    monkeypatch.setattr(urllib.request, "urlopen", _no_network)
    assert mnist.mnist_dir() == folder


@needs_shared
def test_download_skips_mirror_with_bad_checksum(mirror_root, monkeypatch, tmp_path):
    # Only the small label files are missing, so the test moves little data.
    cache = mnist.cache_dir()
    cache.mkdir(parents=True)
    for name in (FILE_NAMES[0], FILE_NAMES[2]):
        (cache / f"{name}.gz").symlink_to(SHARED / f"{name}.gz")
    monkeypatch.setenv("CNN_MNIST_MIRRORS", f"{mirror_root}/bad {mirror_root}/good/")
    with pytest.warns(UserWarning) as record:
        mnist.download_mnist()
    messages = [str(w.message) for w in record]
    assert any("train-labels-idx1-ubyte: " in m and "corrupt gzip stream" in m for m in messages)
    assert any("t10k-labels-idx1-ubyte: checksum mismatch" in m for m in messages)
    assert not mnist.missing_files(cache)
    assert not list(cache.glob(".*part"))  # rejected downloads leave no temp files
    train, test = mnist.load_mnist("full")
    np.testing.assert_array_equal(np.bincount(test.y), TEST_COUNTS)


def test_all_mirrors_fail_lists_each(mirror_root, monkeypatch):
    monkeypatch.setenv("CNN_MNIST_MIRRORS", f"{mirror_root}/empty {mirror_root}/bad")
    with pytest.warns(UserWarning), pytest.raises(MnistError) as info:
        mnist.load_mnist("full")
    msg = str(info.value)
    assert "could not download train-images-idx3-ubyte" in msg
    assert f"{mirror_root}/empty/train-images-idx3-ubyte.gz: HTTP 404" in msg
    assert f"{mirror_root}/bad/train-images-idx3-ubyte.gz: checksum mismatch" in msg
    assert "CNN_MNIST_DIR" in msg
    assert not mnist.cache_dir().exists() or not any(mnist.cache_dir().iterdir())


def test_unreachable_mirror_is_reported(monkeypatch):
    with pytest.warns(UserWarning), pytest.raises(MnistError, match=r"127\.0\.0\.1:9/unreachable/"):
        mnist.download_mnist(timeout=2)


# ------------------------------------------------------------------------------------------
# Bundled subset and full MNIST


def test_bundled_subset_loads_stratified():
    train, test = mnist.load_mnist()
    for ds, n, full in ((train, 6000, TRAIN_COUNTS), (test, 1000, TEST_COUNTS)):
        assert ds.x.shape == (n, 1, 28, 28) and ds.x.dtype == np.float32
        assert ds.y.shape == (n,) and ds.y.dtype == np.int64
        counts = np.bincount(ds.y, minlength=10)
        expected = np.round(np.array(full) / sum(full) * n)
        assert np.all(np.abs(counts - expected) <= 1), (counts, expected)
    # Standardised with MNIST's constants: pixel 0 maps to -MEAN/STD, pixel 255 to (1-MEAN)/STD.
    assert np.isclose(train.x.min(), -mnist.MEAN / mnist.STD)
    assert np.isclose(train.x.max(), (1 - mnist.MEAN) / mnist.STD)
    assert abs(float(train.x.mean())) < 0.05 and abs(float(train.x.std()) - 1) < 0.05


def test_bundled_float64():
    train, test = mnist.load_mnist("bundled", dtype=np.float64)
    assert train.x.dtype == test.x.dtype == np.float64
    f32, _ = mnist.load_mnist()
    np.testing.assert_allclose(train.x, f32.x, atol=1e-5)


def test_load_mnist_argument_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown MNIST source"):
        mnist.load_mnist("fashion")
    with pytest.raises(ValueError, match="floating"):
        mnist.load_mnist(dtype=np.int32)
    with pytest.raises(MnistError, match="only applies to source='full'"):
        mnist.load_mnist(path=tmp_path)


def test_bundled_files_are_reproducible_gzip():
    for name in FILE_NAMES:
        raw = (mnist.BUNDLED_DIR / f"{name}.gz").read_bytes()
        assert raw[4:8] == b"\0\0\0\0"  # gzip mtime 0
    assert "CC BY-SA 3.0" in (mnist.BUNDLED_DIR / "README.md").read_text()


@needs_shared
def test_subset_script_regenerates_bundled_files(tmp_path):
    spec = importlib.util.spec_from_file_location("make_mnist_subset", REPO / "scripts" / "make_mnist_subset.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.main(["--source", str(SHARED), "--out", str(tmp_path)]) == 0
    for name in FILE_NAMES:
        # Compare content, not gzip bytes: another zlib build may compress differently.
        np.testing.assert_array_equal(mnist.read_idx(tmp_path / f"{name}.gz"),
                                      mnist.read_idx(mnist.BUNDLED_DIR / f"{name}.gz"))
    assert (tmp_path / "README.md").read_text() == (mnist.BUNDLED_DIR / "README.md").read_text()


@needs_shared
def test_full_mnist_loads():
    train, test = mnist.load_mnist("mnist", SHARED)
    assert train.x.shape == (60000, 1, 28, 28) and test.x.shape == (10000, 1, 28, 28)
    np.testing.assert_array_equal(np.bincount(train.y), TRAIN_COUNTS)
    np.testing.assert_array_equal(np.bincount(test.y), TEST_COUNTS)
    # MNIST's published mean pixel value of the training set is 33.32 (of 255).
    assert abs(float(train.x.mean()) * mnist.STD + mnist.MEAN - 33.32 / 255) < 1e-3
