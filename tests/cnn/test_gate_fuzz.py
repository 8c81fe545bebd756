"""Hypothesis-made hostile data files of every format: each loads or raises a DataError (the gate's
ReadRefused among them) naming the file, within a time and a traced-memory bound.

IDX (headers of any magic, rank and dimensions; payloads short, long or gzipped), npz (members of
any name, .npy headers of any shape and dtype, stored or deflated, bytes flipped), image folders
(PNG headers of any size, random bytes as images) and CIFAR-10 batches (any length and labels);
the model files' fuzz is tests/cnn/test_io_hostile.py's (300 cases). Every load runs under a read
limit of 16 MiB, so a case may hold at most PEAK_FACTOR x 16 MiB.
"""
import gzip
import io
import struct
import time
import tracemalloc
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import cnn
from cnn import gate
from cnn.dataset import DataError
from tests.cnn.hostile import npy_header

LIMIT = 16 << 20
SECONDS, PEAK = 5.0, gate.PEAK_FACTOR * LIMIT + (8 << 20)
FIGURES = {}
def fuzz(cases):
    return settings(max_examples=cases, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))


def check_load(kind: str, source: str, path: Path, **kwargs) -> None:
    """Load ``path`` as ``source``; a DataError naming the file or a dataset; within the bounds."""
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with gate.load(limit=LIMIT, timeout=10):
            try:
                train, test = cnn.load_source(source, path, **kwargs)
                assert len(train) and len(test)
            except DataError as exc:
                assert str(path.parent if source == "idx" else path) in str(exc) or "count mismatch" in str(exc) \
                    or "split is empty" in str(exc) or "mixed image sizes" in str(exc), str(exc)
    finally:
        seconds, peak = time.perf_counter() - start, tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    n, worst_s, worst_p = FIGURES.get(kind, (0, 0.0, 0))
    FIGURES[kind] = (n + 1, max(worst_s, seconds), max(worst_p, peak))
    assert seconds < SECONDS and peak < PEAK, (seconds, peak)


def folder(factory, name) -> Path:
    return factory.mktemp(name)


# --- IDX ------------------------------------------------------------------------------------------------

DIMS = st.lists(st.one_of(st.integers(0, 40), st.sampled_from([0xFFFFFFFF, 1 << 20, 65535])), min_size=0, max_size=4)


IDX_ARGS = dict(magic=st.tuples(st.sampled_from([0, 0, 1]), st.sampled_from([0x08, 0x08, 0x09, 0x0D, 0x42])),
       dims=DIMS, extra=st.integers(-50, 50), gz=st.booleans(), bomb=st.booleans(),
       flip=st.one_of(st.none(), st.tuples(st.integers(0, 10 ** 6), st.integers(0, 255))))


def _fuzz_idx(magic, dims, extra, gz, bomb, flip, tmp_path_factory):
    from tests.cnn.datagen import write_idx_folder

    root = folder(tmp_path_factory, "idx")
    write_idx_folder(root, train=(20, 6, 6), test=(10, 6, 6), gz=False)
    head = bytes([magic[0], 0, magic[1], len(dims)]) + struct.pack(f">{len(dims)}I", *dims)
    need = int(np.prod(dims, dtype=object)) if dims else 0
    payload = bytes(max(0, min(need, 1 << 16) + extra))
    data = bytearray(head + payload)
    if flip and data:
        data[flip[0] % len(data)] = flip[1]
    if gz:
        raw = gzip.compress(bytes(data) + (bytes(20 << 20) if bomb else b""), 1)
    else:
        raw = bytes(data)
    (root / "train-images-idx3-ubyte").write_bytes(raw)
    check_load("IDX", "idx", root)


# --- npz ------------------------------------------------------------------------------------------------

SHAPES = st.lists(st.one_of(st.integers(0, 12), st.sampled_from([1 << 31, 10 ** 9, 65536])), min_size=0, max_size=4)
DTYPES = st.sampled_from(["|u1", "<f4", "<f8", "<i8", "|b1", "<c8", "|O", "<U3", "<f2", ">i4"])


@st.composite
def npz_member(draw):
    name = draw(st.sampled_from(["x", "y", "x_test", "y_test", "z", "../x", "x/y"]))
    shape, dtype = draw(SHAPES), draw(DTYPES)
    fortran = draw(st.booleans())
    header = npy_header(shape, dtype)
    if fortran:
        header = header.replace(b"'fortran_order': False", b"'fortran_order': True ")
    try:
        need = int(np.prod(shape, dtype=object)) * np.dtype(dtype).itemsize
    except TypeError:
        need = 8
    body = bytes(max(0, min(need, 1 << 16) + draw(st.integers(-20, 20))))
    if draw(st.booleans()):  # real values rather than zeros, where they fit
        count = int(np.prod(shape, dtype=object)) if shape else 1
        if count <= 4096:  # never a big array in the test itself
            try:
                arr = (np.arange(count, dtype=np.int64) % 10).astype(dtype).reshape(shape)
                body = arr.tobytes("F" if fortran else "C")
            except (TypeError, ValueError, OverflowError):
                pass
    return name, header + body, draw(st.booleans())


NPZ_ARGS = dict(members=st.lists(npz_member(), min_size=0, max_size=4), bomb=st.booleans(),
       flip=st.one_of(st.none(), st.tuples(st.integers(0, 10 ** 6), st.integers(0, 255))),
       cut=st.one_of(st.none(), st.integers(0, 10 ** 6)))


def _fuzz_npz(members, bomb, flip, cut, tmp_path_factory):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data, deflate in members:
            zf.writestr(f"{name}.npy", data, zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED)
        if bomb:
            zf.writestr("x_test.npy", npy_header((4000, 28, 28)) + bytes(4000 * 784), zipfile.ZIP_DEFLATED)
    raw = bytearray(buf.getvalue())
    if flip and raw:
        raw[flip[0] % len(raw)] = flip[1]
    if cut is not None and raw:
        raw = raw[:cut % len(raw)]
    path = folder(tmp_path_factory, "npz") / "d.npz"
    path.write_bytes(bytes(raw))
    check_load("npz", "npz", path)


# --- image folders --------------------------------------------------------------------------------------

def png_bytes(width, height, rows, bit_depth=8, colour=0) -> bytes:
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    row = bytes(1 + min(width, 1 << 16))
    idat = zlib.compress(row * min(rows, 64))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, bit_depth, colour, 0, 0, 0))
            + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


@st.composite
def image_file(draw):
    kind = draw(st.sampled_from(["png", "png", "random", "good", "jpeg"]))
    if kind == "png":
        w = draw(st.one_of(st.integers(0, 40), st.sampled_from([20000, 1 << 30, 0xFFFFFFFF])))
        h = draw(st.one_of(st.integers(0, 40), st.sampled_from([20000, 1 << 30])))
        return "png", png_bytes(w, h, draw(st.integers(0, 40)), draw(st.sampled_from([1, 8, 16, 3])),
                                draw(st.sampled_from([0, 2, 3, 4, 6, 7])))
    if kind == "random":
        return draw(st.sampled_from(["png", "jpg"])), draw(st.binary(max_size=200))
    from PIL import Image
    out = io.BytesIO()
    size = draw(st.integers(1, 12))
    Image.fromarray(np.full((size, size, 3), 100, np.uint8)).save(out, "PNG" if kind == "good" else "JPEG")
    data = bytearray(out.getvalue())
    flip = draw(st.one_of(st.none(), st.tuples(st.integers(0, 10 ** 5), st.integers(0, 255))))
    if flip:
        data[flip[0] % len(data)] = flip[1]
    return ("png" if kind == "good" else "jpg"), bytes(data)


IMAGE_FOLDERS_ARGS = dict(files=st.lists(image_file(), min_size=1, max_size=3), resize=st.booleans())


def _fuzz_image_folders(files, resize, tmp_path_factory):
    from PIL import Image

    root = folder(tmp_path_factory, "images")
    for c in ("a", "b"):
        (root / c).mkdir()
        Image.fromarray(np.full((8, 8), 30, np.uint8)).save(root / c / "ok.png")
    for i, (suffix, data) in enumerate(files):
        (root / "ab"[i % 2] / f"f{i}.{suffix}").write_bytes(data)
    check_load("image folders", "folder", root, resize=(8, 8) if resize else None, test_fraction=0.5)


# --- CIFAR-10 batches -----------------------------------------------------------------------------------

CIFAR_ARGS = dict(records=st.lists(st.integers(0, 12), min_size=1, max_size=3), extra=st.integers(-3, 3),
       label=st.integers(0, 255), test_records=st.integers(0, 8))


def _fuzz_cifar(records, extra, label, test_records, tmp_path_factory):
    root = folder(tmp_path_factory, "cifar")
    record = bytes([label % 10]) + bytes(3072)
    for i, n in enumerate(records):
        data = record * n
        if i == 0:
            data = bytes([label]) + data[1:] if data else data
            data = data[:max(0, len(data) + extra)] if extra < 0 else data + bytes(extra)
        (root / f"data_batch_{i + 1}.bin").write_bytes(data)
    (root / "test_batch.bin").write_bytes(record * test_records)
    check_load("CIFAR-10 batches", "cifar10", root)


# --- the tests: the fast share by default, five times as many cases marked slow ------------------------

test_fuzz_idx = fuzz(150)(given(**IDX_ARGS)(_fuzz_idx))
test_fuzz_idx_more = pytest.mark.slow(fuzz(1250)(given(**IDX_ARGS)(_fuzz_idx)))
test_fuzz_npz = fuzz(300)(given(**NPZ_ARGS)(_fuzz_npz))
test_fuzz_npz_more = pytest.mark.slow(fuzz(1500)(given(**NPZ_ARGS)(_fuzz_npz)))
test_fuzz_image_folders = fuzz(150)(given(**IMAGE_FOLDERS_ARGS)(_fuzz_image_folders))
test_fuzz_image_folders_more = pytest.mark.slow(fuzz(750)(given(**IMAGE_FOLDERS_ARGS)(_fuzz_image_folders)))
test_fuzz_cifar = fuzz(200)(given(**CIFAR_ARGS)(_fuzz_cifar))
test_fuzz_cifar_more = pytest.mark.slow(fuzz(1000)(given(**CIFAR_ARGS)(_fuzz_cifar)))


def test_fuzz_figures(record_figure, tmp_path_factory):
    """The fuzz above ran its cases within the bounds; its figures are recorded (run alone, it runs them)."""
    if not FIGURES:
        pytest.skip("run with the fuzz tests above")
    total = sum(n for n, _, _ in FIGURES.values())
    for kind, (n, seconds, peak) in FIGURES.items():
        record_figure(f"data fuzz, {kind}: {n} cases, slowest {seconds * 1e3:.0f} ms, "
                      f"highest peak traced memory {peak / 1e6:.1f} MB (bounds {SECONDS:g} s, {PEAK / 1e6:.0f} MB)")
    assert total >= 700, total
