"""The reading gate (cnn.gate): hostile data files are refused quickly, naming the file and the limit,
within a bounded peak memory (tracemalloc); legitimate files still load, within PEAK_FACTOR x the limit."""
import os
import threading
import time
import tracemalloc

import numpy as np
import pytest

import cnn
from cnn import gate
from cnn.dataset import DataError
from cnn.gate import ReadRefused
from tests.cnn import hostile
from tests.cnn.datagen import write_cifar_folder, write_idx_folder


def measured(fn):
    """``(exception or result, seconds, peak traced bytes)`` of ``fn()`` run in a daemon thread that
    must end within 10 s (a FIFO that blocked would otherwise hang the test run)."""
    out = {}

    def target():
        tracemalloc.start()
        start = time.perf_counter()
        try:
            out["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 -- handed back to the test
            out["value"] = exc
        finally:
            out["seconds"] = time.perf_counter() - start
            out["peak"] = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(10)
    assert not thread.is_alive(), "the load blocked for more than 10 s"
    return out["value"], out["seconds"], out["peak"]


def refused(fn, match, peak_bound=20e6, record=None, label=""):
    exc, seconds, peak = measured(fn)
    assert isinstance(exc, ReadRefused), repr(exc)
    assert match in str(exc), str(exc)
    assert seconds < 5 and peak < peak_bound, (seconds, peak)
    if record:
        record(f"gate: {label}: refused in {seconds * 1e3:.0f} ms, peak traced memory {peak / 1e6:.2f} MB")
    return str(exc)


@pytest.mark.parametrize("source", ["npz", "idx", "folder", "cifar10"])
def test_a_fifo_never_blocks(tmp_path, source):
    path = hostile.fifo(tmp_path, "data")
    message = refused(lambda: cnn.load_source(source, path), "FIFO")
    assert str(path) in message


def test_fifo_inside_a_source_folder(tmp_path):
    root = hostile.cifar_with_fifo(tmp_path)
    assert "test_batch.bin" in refused(lambda: cnn.load_source("cifar10", root), "FIFO")
    write_idx_folder(tmp_path / "idx", gz=False)
    os.unlink(tmp_path / "idx" / "t10k-labels-idx1-ubyte")
    os.mkfifo(tmp_path / "idx" / "t10k-labels-idx1-ubyte")
    with pytest.raises(DataError, match="lacks IDX file"):  # is_file() is a stat: not found, never opened
        cnn.load_source("idx", tmp_path / "idx")


def test_npz_header_declaring_petabytes(tmp_path, record_figure):
    path = hostile.npz_huge_header(tmp_path)
    message = refused(lambda: cnn.load_source("npz", path), "declares", 5e6, record_figure,
                      f"npz of {path.stat().st_size} bytes declaring 10^6x1000x1000 images")
    assert "CNN_READ_LIMIT" in message or "header declares" in message


def test_npz_zip_bomb(tmp_path, record_figure):
    path = hostile.npz_zip_bomb(tmp_path, 64 << 20)
    refused(lambda: cnn.load_source("npz", path), "zip bomb", 5e6, record_figure,
            f"zip-bomb npz ({path.stat().st_size / 1e3:.0f} kB inflating to 64 MiB)")


def test_npz_beyond_the_limit_and_within(tmp_path, monkeypatch, record_figure):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (3000, 1, 28, 28), dtype=np.uint8)  # 2.35 MB: random, so no bomb
    y = np.arange(3000) % 10
    np.savez_compressed(tmp_path / "d.npz", x=x, y=y)
    monkeypatch.setenv("CNN_READ_LIMIT", "1M")
    refused(lambda: cnn.load_source("npz", tmp_path / "d.npz"), "beyond the read limit of 1 MiB (CNN_READ_LIMIT)")
    monkeypatch.setenv("CNN_READ_LIMIT", "4M")
    result, seconds, peak = measured(lambda: cnn.load_source("npz", tmp_path / "d.npz"))
    train, test = result
    assert len(train) + len(test) == 3000
    assert peak <= gate.PEAK_FACTOR * (4 << 20), peak
    record_figure(f"gate: npz of 2.4 MB arrays under CNN_READ_LIMIT=4M: loaded in {seconds * 1e3:.0f} ms, "
                  f"peak {peak / 1e6:.1f} MB (bound {gate.PEAK_FACTOR} x 4 MiB)")


def test_png_of_20000x20000_pixels(tmp_path, record_figure):
    root = hostile.image_folder_with(tmp_path, rows=1)  # header declares 400M pixels; one row of data
    message = refused(lambda: cnn.load_source("folder", root), "pixels", 5e6, record_figure,
                      "image folder with a 20000x20000 PNG")
    assert "bomb.png" in message and "MAX_IMAGE_PIXELS" in message


def test_images_within_pixels_but_beyond_the_limit(tmp_path, monkeypatch):
    root = hostile.image_folder_with(tmp_path, width=800, height=800)
    monkeypatch.setenv("CNN_READ_LIMIT", "1M")  # 640000 pixels > 1 MiB / 4
    refused(lambda: cnn.load_source("folder", root), "pixels")
    monkeypatch.setenv("CNN_READ_LIMIT", "3M")  # each image fits; 7 images of 800x800 (resize) do not
    refused(lambda: cnn.load_source("folder", root, resize=(800, 800)), "images of 800x800 pixels hold")


def test_idx_gzip_bomb_and_lying_header(tmp_path, monkeypatch, record_figure):
    monkeypatch.setenv("CNN_READ_LIMIT", "16M")
    root = hostile.idx_gzip_bomb(tmp_path / "honest", 64 << 20)  # its header declares what it inflates to
    refused(lambda: cnn.load_source("idx", root), "its header declares 64 MiB, beyond the read limit of 16 MiB",
            2e6, record_figure, "IDX gzip of 64 MiB (header honest) under CNN_READ_LIMIT=16M")
    root = hostile.idx_gzip_bomb(tmp_path / "liar", 64 << 20, declare=(1, 28, 28))  # a small header, 64 MiB after
    exc, seconds, peak = measured(lambda: cnn.load_source("idx", root))
    assert isinstance(exc, DataError) and "trailing bytes" in str(exc) and peak < 2e6, (exc, peak)
    root = hostile.idx_huge_header(tmp_path)  # 4 billion 65535x65535 images declared in 1 kB
    refused(lambda: cnn.load_source("idx", root), "its header declares", 2e6)


def test_cifar_beyond_the_limit(tmp_path, monkeypatch):
    write_cifar_folder(tmp_path / "c", (40,), 10)
    monkeypatch.setenv("CNN_READ_LIMIT", "100K")
    refused(lambda: cnn.load_source("cifar10", tmp_path / "c"), "CNN_READ_LIMIT")


def test_time_limit(tmp_path, monkeypatch):
    write_idx_folder(tmp_path / "idx")
    monkeypatch.setenv("CNN_READ_TIMEOUT", "1e-9")
    refused(lambda: cnn.load_source("idx", tmp_path / "idx"), "time limit of 1e-09 s (CNN_READ_TIMEOUT)")


def test_limits_from_the_environment(monkeypatch):
    for text, value in (("512M", 512 << 20), ("2G", 2 << 30), ("1.5k", 1536), ("1000", 1000), ("4GiB", 4 << 30)):
        monkeypatch.setenv("CNN_READ_LIMIT", text)
        assert gate.read_limit() == value
    monkeypatch.setenv("CNN_READ_LIMIT", "lots")
    with pytest.raises(DataError, match="CNN_READ_LIMIT"):
        gate.read_limit()
    monkeypatch.delenv("CNN_READ_LIMIT")
    assert gate.read_limit() == gate.DEFAULT_LIMIT


def test_model_file_through_the_gate(tmp_path):
    path = hostile.fifo(tmp_path, "model.npz")
    exc, _, _ = measured(lambda: cnn.load_model(path))
    assert isinstance(exc, cnn.io.ModelFileError) and "FIFO" in str(exc)
    bomb = hostile.npz_zip_bomb(tmp_path, 8 << 20, "model.npz.bomb")
    exc, _, peak = measured(lambda: cnn.load_model(bomb))
    assert isinstance(exc, cnn.io.ModelFileError) and "zip bomb" in str(exc) and peak < 5e6
