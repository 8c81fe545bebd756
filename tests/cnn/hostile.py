"""Hostile data and model files, made as an attacker would (tests and docs/faults.md's measurements).

Each maker writes into ``folder`` and returns the path a sweep's ``data.path`` (or ``load_model``)
is given. Big payloads are streamed, so making a 2 GB zip bomb costs 1 MiB of memory.
"""
import gzip
import io
import os
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np


def fifo(folder, name="data.npz") -> Path:
    """A named pipe where a file is expected: ``open`` on it blocks until a writer comes."""
    path = Path(folder) / name
    os.mkfifo(path)
    return path


def npy_header(shape, dtype="<u1") -> bytes:
    """A version 1.0 ``.npy`` header declaring ``shape`` of ``dtype`` (padded to 64 bytes)."""
    text = f"{{'descr': '{dtype}', 'fortran_order': False, 'shape': {tuple(shape)!r}, }}"
    text += " " * (63 - (10 + len(text)) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text.encode("latin1")


def npz_huge_header(folder, shape=(10 ** 6, 1, 1000, 1000)) -> Path:
    """An npz of a few hundred bytes whose ``x`` declares petabytes (its data absent)."""
    path = Path(folder) / "huge-header.npz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("x.npy", npy_header(shape) + b"\0" * 64)
        zf.writestr("y.npy", npy_header((shape[0],), "<i8") + b"\0" * 64)
    return path


def npz_zip_bomb(folder, nbytes=2 * 10 ** 9, name="bomb.npz") -> Path:
    """An npz whose ``x`` (uint8 images 28x28, zeros) deflates ``nbytes`` to about a thousandth;
    its headers are honest, so only the inflated size and the ratio give it away."""
    n = nbytes // 784
    path = Path(folder) / name
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        with zf.open("x.npy", "w", force_zip64=True) as f:
            f.write(npy_header((n, 28, 28)))
            left, zeros = n * 784, bytes(1 << 20)
            while left:
                f.write(zeros[:min(left, len(zeros))])
                left -= min(left, len(zeros))
        with zf.open("y.npy", "w", force_zip64=True) as f:
            f.write(npy_header((n,), "|u1"))
            left = n
            while left:
                f.write(bytes(min(left, 1 << 20)))
                left -= min(left, 1 << 20)
    return path


def png(path, width, height, rows=None) -> Path:
    """A grayscale PNG of ``width`` x ``height`` zeros, compressed row by row (``rows``: write only
    that many rows, a truncated image whose header still declares them all)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    comp, row = zlib.compressobj(9), bytes(width + 1)
    idat = bytearray()
    for _ in range(height if rows is None else rows):
        idat += comp.compress(row)
    idat += comp.flush()
    path = Path(path)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", bytes(idat)) + chunk(b"IEND", b""))
    return path


def image_folder_with(folder, bad_name="bomb.png", width=20000, height=20000, rows=None) -> Path:
    """Two class folders of small PNGs, one of them holding a ``width`` x ``height`` PNG."""
    from PIL import Image

    root = Path(folder) / "images"
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((8, 8), 40 * i, np.uint8)).save(root / c / f"{i}.png")
    png(root / "a" / bad_name, width, height, rows)
    return root


def idx_huge_header(folder) -> Path:
    """The four IDX files, the training images' header declaring 4 billion 65535x65535 images."""
    from tests.cnn.datagen import write_idx_folder

    root = Path(folder) / "idx"
    write_idx_folder(root, gz=True)
    head = bytes([0, 0, 8, 3]) + struct.pack(">3I", 0xFFFFFFFF, 0xFFFF, 0xFFFF)
    (root / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(head + bytes(1000)))
    return root


def idx_gzip_bomb(folder, nbytes=3 * 10 ** 9, declare=None) -> Path:
    """The four IDX files, the training images a gzip of ``nbytes`` zeros (about nbytes/1000) whose
    header declares them (or the shape ``declare``: a header that lies small)."""
    from tests.cnn.datagen import write_idx_folder

    root = Path(folder) / "idx-bomb"
    write_idx_folder(root, gz=True)
    n = nbytes // 784
    with gzip.open(root / "train-images-idx3-ubyte.gz", "wb", compresslevel=9) as f:
        f.write(bytes([0, 0, 8, 3]) + struct.pack(">3I", *(declare or (n, 28, 28))))
        left = n * 784
        while left:
            f.write(bytes(min(left, 1 << 20)))
            left -= min(left, 1 << 20)
    return root


def cifar_with_fifo(folder) -> Path:
    """A CIFAR-10 binary folder whose ``test_batch.bin`` is a FIFO."""
    root = Path(folder) / "cifar"
    root.mkdir()
    (root / "data_batch_1.bin").write_bytes(bytes(3073 * 4))
    os.mkfifo(root / "test_batch.bin")
    return root


def model_with(path, change) -> Path:
    """A valid model file of a small network whose arrays ``change`` (a function of the dict) alters."""
    import cnn

    model = cnn.Model(cnn.ModelSpec(blocks=(cnn.ConvBlockSpec(4, 3, padding="same"),), dense=(8,)), seed=0)
    arrays = dict(cnn.io._model_arrays(model))
    change(arrays)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    Path(path).write_bytes(buf.getvalue())
    return Path(path)
