"""Small generated data sets in every file format the loaders read (tests only)."""
import gzip
import struct
from pathlib import Path

import numpy as np

from cnn.mnist import TEST_IMAGES, TEST_LABELS, TRAIN_IMAGES, TRAIN_LABELS


def idx_bytes(array: np.ndarray) -> bytes:
    """An IDX file of a uint8 array: magic 0x0000_08_NDIM, big-endian dimensions, the bytes."""
    return bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def write_idx_folder(folder, train=(60, 28, 28), test=(20, 28, 28), classes=10, gz=True, seed=0,
                     label_offset=0) -> tuple[np.ndarray, ...]:
    """The four Fashion-MNIST-named IDX files of class-dependent noisy images; returns the arrays."""
    rng = np.random.default_rng(seed)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for (n, h, w), images, labels in ((train, TRAIN_IMAGES, TRAIN_LABELS), (test, TEST_IMAGES, TEST_LABELS)):
        y = (np.arange(n) % classes).astype(np.uint8)
        x = np.zeros((n, h, w), np.uint8)
        for i, label in enumerate(y):  # class k: a bright band at row block k, plus noise
            x[i] = rng.integers(0, 60, (h, w))
            band = (label * h) // classes
            x[i, band : band + max(1, h // classes)] = 230
        for name, array in ((images, x), (labels, y + label_offset)):
            data = idx_bytes(array)
            (folder / (name + ".gz" if gz else name)).write_bytes(gzip.compress(data) if gz else data)
        out += [x, y]
    return tuple(out)


def shapes_image(label: int, size: int, rng) -> np.ndarray:
    """An RGB image (size, size, 3) whose class sets both colour and shape on a noisy background.

    0: a red square, 1: a green disc, 2: a blue horizontal bar, 3: a yellow cross; the position
    and size jitter, so the classes are told apart by colour and shape, not by one pixel.
    """
    img = rng.integers(0, 70, (size, size, 3)).astype(np.uint8)
    colour = [(220, 30, 30), (30, 200, 40), (40, 60, 230), (230, 220, 30)][label]
    r = int(rng.integers(size // 5, size // 3))
    cy, cx = rng.integers(r, size - r, 2)
    yy, xx = np.mgrid[:size, :size]
    if label == 0:
        mask = (abs(yy - cy) <= r) & (abs(xx - cx) <= r)
    elif label == 1:
        mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    elif label == 2:
        mask = (abs(yy - cy) <= max(1, r // 3)) & (abs(xx - cx) <= r)
    else:
        mask = ((abs(yy - cy) <= max(1, r // 4)) | (abs(xx - cx) <= max(1, r // 4))) & \
               (abs(yy - cy) <= r) & (abs(xx - cx) <= r)
    img[mask] = colour
    return img


def write_shapes_folder(root, per_class=40, size=16, classes=4, seed=0, split=False, test_per_class=10):
    """Class subfolders of PNGs (``root/<class>/``, or ``root/train|test/<class>/`` with ``split``)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    root = Path(root)
    names = ["square", "disc", "bar", "cross"][:classes]
    parts = [("train", per_class), ("test", test_per_class)] if split else [("", per_class)]
    for part, count in parts:
        for label, name in enumerate(names):
            folder = root / part / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                Image.fromarray(shapes_image(label, size, rng)).save(folder / f"{i:04d}.png")
    return names


def write_cifar_folder(folder, n_train=(30, 20), n_test=25, seed=0) -> tuple[np.ndarray, ...]:
    """``data_batch_*.bin`` files of the given sizes and ``test_batch.bin``, CIFAR-10 binary records."""
    rng = np.random.default_rng(seed)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    xs, ys = [], []
    for i, n in enumerate(list(n_train) + [n_test]):
        y = rng.integers(0, 10, n).astype(np.uint8)
        x = rng.integers(0, 256, (n, 3, 32, 32)).astype(np.uint8)
        records = np.concatenate([y[:, None], x.reshape(n, -1)], axis=1)
        name = "test_batch.bin" if i == len(n_train) else f"data_batch_{i + 1}.bin"
        records.tofile(folder / name)
        xs.append(x)
        ys.append(y)
    return np.concatenate(xs[:-1]), np.concatenate(ys[:-1]), xs[-1], ys[-1]
