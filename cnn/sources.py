"""Labelled images from files: IDX folders, NumPy ``.npz``, folders of PNG/JPEG, CIFAR-10 binary.

Every loader returns ``(train, test)`` :class:`~cnn.dataset.Dataset` pairs with raw pixels:
``x`` of shape ``(N, C, H, W)``, C-contiguous, uint8 (float32 only for an npz of floats), and
``y`` of shape ``(N,)``, int64. ``test`` is None when the files hold no separate test split
(an npz or folder without one); :func:`load_source` then splits it off. Pixels are standardised
later, batch by batch, with a :class:`~cnn.normalize.Normalizer` fitted on the training split.

Every file is read through :mod:`cnn.gate` (regular files only, declared sizes checked before
allocating, inflated sizes and image pixels bounded, a time limit); one :func:`load_source` is one
load of the gate, whose byte limit bounds the sum of its arrays.

Every fault raises :class:`~cnn.dataset.DataError` naming the file (or folder) and what is wrong:
a bad magic number, counts that differ, mixed image sizes, labels out of range, an empty class
folder, a truncated file, an npz without ``x`` or ``y``; the gate's refusals are its subclass
:class:`cnn.gate.ReadRefused`, naming the limit.
"""
from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Optional

import numpy as np

from cnn import gate
from cnn.dataset import DataError, Dataset, stratified_indices
from cnn.mnist import (BUNDLED_DIR, FILE_NAMES, TEST_IMAGES, TEST_LABELS, TRAIN_IMAGES, TRAIN_LABELS,
                       find_file, missing_files, mnist_dir, read_idx)

SOURCES = ("bundled", "mnist", "idx", "npz", "folder", "cifar10")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
CIFAR_RECORD = 1 + 3 * 32 * 32  # one label byte, then the R, G and B planes of 32x32 pixels

__all__ = ["SOURCES", "DataError", "load_source", "load_idx", "load_npz", "load_folder", "load_cifar10",
           "check_labels"]


def check_labels(y: np.ndarray, classes: Optional[int], where) -> None:
    """Labels must lie in ``0 .. classes - 1`` (only ``>= 0`` when ``classes`` is None)."""
    bad = (y < 0) if classes is None else ((y < 0) | (y >= classes))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        span = "must be >= 0" if classes is None else f"out of range 0..{classes - 1}"
        raise DataError(f"{where}: label {int(y[i])} at index {i} {span} "
                        f"({int(bad.sum())} bad label{'s' * (int(bad.sum()) > 1)} in all)")


def _pair(x: np.ndarray, y: np.ndarray, images, labels) -> Dataset:
    if x.shape[0] != y.shape[0]:
        raise DataError(f"count mismatch: {images} holds {x.shape[0]} images but {labels} holds {y.shape[0]} labels")
    return Dataset(np.ascontiguousarray(x), y.astype(np.int64))


# --------------------------------------------------------------------------------------------
# IDX (MNIST, Fashion-MNIST, KMNIST, EMNIST)


def _idx_split(folder: Path, images_name: str, labels_name: str, label_offset: int, classes) -> Dataset:
    images_path, labels_path = find_file(folder, images_name), find_file(folder, labels_name)
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3:
        raise DataError(f"{images_path}: expected 3-D images (N, rows, cols), got shape {images.shape}")
    if labels.ndim != 1:
        raise DataError(f"{labels_path}: expected 1-D labels (N,), got shape {labels.shape}")
    y = labels.astype(np.int64) - label_offset
    check_labels(y, classes, f"{labels_path} (label offset {label_offset})" if label_offset else labels_path)
    return _pair(images[:, None], y, images_path, labels_path)


def load_idx(folder, label_offset: int = 0, classes: Optional[int] = None) -> tuple[Dataset, Dataset]:
    """The four MNIST-named IDX files of ``folder`` (each ``NAME`` or ``NAME.gz``).

    ``label_offset`` is subtracted from every label (EMNIST letters count from 1).
    """
    folder = gate.folder(folder, "folder (source idx needs the four IDX files in it)")
    missing = missing_files(folder)
    if missing:
        raise DataError(f"{folder}: lacks IDX file(s) {', '.join(missing)} (each as NAME or NAME.gz; "
                        f"the four are {', '.join(FILE_NAMES)})")
    return (_idx_split(folder, TRAIN_IMAGES, TRAIN_LABELS, label_offset, classes),
            _idx_split(folder, TEST_IMAGES, TEST_LABELS, label_offset, classes))


def load_mnist_raw(source: str, path=None) -> tuple[Dataset, Dataset]:
    """``bundled`` (the subset shipped with the package) or ``mnist`` (``cnn.mnist_dir(path)``), raw."""
    return load_idx(BUNDLED_DIR if source == "bundled" else mnist_dir(path), 0, 10)


# --------------------------------------------------------------------------------------------
# NumPy arrays


def _channels_axis(shape: tuple, where) -> str:
    """``"nchw"`` or ``"nhwc"`` for a 4-D shape: channels are the one axis of 1, 3 or 4 of axes 1 and 3."""
    first, last = shape[1] in (1, 3, 4), shape[3] in (1, 3, 4)
    if first and not last:
        return "nchw"
    if last and not first:
        return "nhwc"
    raise DataError(f"{where}: cannot tell the channel axis of x with shape {shape}: give x as (N, C, H, W) "
                    "or (N, H, W, C) with 1, 3 or 4 channels on exactly one of axes 1 and 3")


def _images(x: np.ndarray, where) -> np.ndarray:
    """x of shape (N,H,W), (N,H,W,C) or (N,C,H,W) as (N,C,H,W): uint8 kept, floats as float32."""
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4:
        if _channels_axis(x.shape, where) == "nhwc":
            x = x.transpose(0, 3, 1, 2)
    else:
        raise DataError(f"{where}: x must have shape (N, H, W), (N, H, W, C) or (N, C, H, W), got {x.shape}")
    if x.dtype == np.uint8:
        return np.ascontiguousarray(x)
    if np.issubdtype(x.dtype, np.integer):
        if x.size and (x.min() < 0 or x.max() > 255):
            raise DataError(f"{where}: integer pixels must lie in 0..255, found {x.min()}..{x.max()}")
        return np.ascontiguousarray(x, dtype=np.uint8)
    if np.issubdtype(x.dtype, np.floating):
        x = np.ascontiguousarray(x, dtype=np.float32)
        if not np.isfinite(x).all():
            raise DataError(f"{where}: x holds NaN or infinite pixels")
        return x
    raise DataError(f"{where}: x must hold uint8, integer or float pixels, got dtype {x.dtype}")


def _labels(y: np.ndarray, where) -> np.ndarray:
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{where}: y must be 1-D integer labels, got shape {y.shape} dtype {y.dtype}")
    return y.astype(np.int64)


def _npz_arrays(path: Path, keys: tuple[str, str]) -> Optional[tuple[np.ndarray, np.ndarray]]:
    """The arrays ``keys`` of ``path``; None when it has neither; a DataError when it has only one."""
    with gate.open_file(path, "file") as f:  # the names first: only the members asked for are read
        try:
            with zipfile.ZipFile(f) as zf:
                files = [n.removesuffix(".npy") for n in zf.namelist()]
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
            raise DataError(f"{path}: not a readable .npz file (truncated?): {exc}") from None
    present = [k for k in keys if k in files]
    if not present:
        return None
    if len(present) == 1:
        missing = keys[1] if present == [keys[0]] else keys[0]
        raise DataError(f"{path}: has {present[0]!r} but no {missing!r} (arrays: {', '.join(files)[:300]})")
    arrays = gate.read_npz(path, keys)
    return arrays[keys[0]], arrays[keys[1]]


def load_npz(path, test_path=None, classes: Optional[int] = None) -> tuple[Dataset, Optional[Dataset]]:
    """``x`` and ``y`` from ``path``; the test split from ``x_test``/``y_test`` there, or ``x``/``y`` of
    ``test_path``; None when neither (the caller splits one off)."""
    path = Path(path).expanduser()
    arrays = _npz_arrays(path, ("x", "y"))
    if arrays is None:
        raise DataError(f"{path}: no arrays 'x' and 'y' (images and integer labels) in it")
    train = _npz_split(arrays, path, classes)
    if test_path is not None:
        test_path = Path(test_path).expanduser()
        test_arrays = _npz_arrays(test_path, ("x", "y"))
        if test_arrays is None:
            raise DataError(f"{test_path}: no arrays 'x' and 'y' (images and integer labels) in it")
        test = _npz_split(test_arrays, test_path, classes)
    else:
        test_arrays = _npz_arrays(path, ("x_test", "y_test"))
        test = None if test_arrays is None else _npz_split(test_arrays, f"{path} (x_test, y_test)", classes)
    if test is not None and test.x.shape[1:] != train.x.shape[1:]:
        raise DataError(f"{test_path or path}: test images are {test.x.shape[1:]}, training images {train.x.shape[1:]}")
    return train, test


def _npz_split(arrays, where, classes) -> Dataset:
    x, y = _images(arrays[0], where), _labels(arrays[1], where)
    check_labels(y, classes, where)
    if x.shape[0] != y.shape[0]:
        raise DataError(f"{where}: count mismatch: x holds {x.shape[0]} images but y holds {y.shape[0]} labels")
    return Dataset(x, y)


# --------------------------------------------------------------------------------------------
# Folders of images


def _class_folders(root: Path) -> list[Path]:
    folders = sorted(p for p in gate.folder(root).iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise DataError(f"{root}: no class subfolders (expected one folder of PNG/JPEG images per class)")
    return folders


def _image_files(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.iterdir()
                   if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"{folder}: empty class folder (no {'/'.join(IMAGE_SUFFIXES)} images)")
    return files


def _read_folder(folders: list[tuple[Path, int]], resize, gray: Optional[bool]) -> tuple[Dataset, bool]:
    """The images of each ``(folder, label)``; ``gray``: one channel or three (None: decide)."""
    from PIL import Image

    files = [(f, label) for folder, label in folders for f in _image_files(folder)]
    sizes, modes = [], set()
    for f, _ in files:  # headers only: sizes and modes before decoding anything (pixel counts checked)
        with gate.open_image(f) as im:
            sizes.append(im.size)
            modes.add(im.mode)
    if resize is None:
        for (f, _), size in zip(files, sizes):
            if size != sizes[0]:
                raise DataError(f"mixed image sizes: {files[0][0]} is {sizes[0][0]}x{sizes[0][1]} but {f} is "
                                f"{size[0]}x{size[1]} (width x height); set data.resize: [H, W] to resize them all")
        w, h = sizes[0]
    else:
        h, w = resize
    if gray is None:
        gray = modes <= {"1", "L", "I", "I;16", "F"}
    mode = "L" if gray else "RGB"
    gate.budget().charge(len(files) * (1 if gray else 3) * h * w, folders[0][0].parent,
                         f"{len(files)} images of {h}x{w} pixels hold")
    x = np.empty((len(files), 1 if gray else 3, h, w), np.uint8)
    for i, (f, _) in enumerate(files):
        try:
            with gate.open_image(f) as im:
                im = im.convert(mode)
                if im.size != (w, h):
                    im = im.resize((w, h), Image.Resampling.BILINEAR)
                pixels = np.asarray(im)
        except OSError as exc:  # a truncated file fails when its pixels are decoded
            raise DataError(f"{f}: cannot decode the image ({exc})") from None
        x[i] = pixels[None] if gray else pixels.transpose(2, 0, 1)
    return Dataset(x, np.array([label for _, label in files], np.int64)), gray


def load_folder(path, resize=None, classes: Optional[int] = None) -> tuple[Dataset, Optional[Dataset]]:
    """Class subfolders of PNG/JPEG images, read with Pillow; labels follow the sorted folder names.

    ``path/train/<class>/`` and ``path/test/<class>/`` when both exist, else ``path/<class>/`` (no
    test split). All images must have one size unless ``resize=(H, W)`` is given. Grayscale when
    every image is, else RGB.
    """
    root = gate.folder(path, "folder (source folder needs one subfolder of images per class)")
    split = (root / "train").is_dir() and (root / "test").is_dir()
    train_root = root / "train" if split else root
    names = [p.name for p in _class_folders(train_root)]
    if classes is not None and len(names) > classes:
        raise DataError(f"{train_root}: {len(names)} class folders but the model has {classes} classes")
    train, gray = _read_folder([(train_root / n, label) for label, n in enumerate(names)], resize, None)
    if not split:
        return train, None
    test_names = [p.name for p in _class_folders(root / "test")]
    unknown = sorted(set(test_names) - set(names))
    if unknown:
        raise DataError(f"{root / 'test'}: class folder(s) {', '.join(unknown)} not among the training classes")
    test, _ = _read_folder([(root / "test" / n, names.index(n)) for n in test_names], resize, gray)
    if test.x.shape[1:] != train.x.shape[1:]:
        raise DataError(f"{root / 'test'}: images are {test.x.shape[2]}x{test.x.shape[3]}, the training images "
                        f"{train.x.shape[2]}x{train.x.shape[3]}; set data.resize: [H, W]")
    return train, test


# --------------------------------------------------------------------------------------------
# CIFAR-10, binary version


def _cifar_file(path: Path, classes) -> Dataset:
    raw = np.frombuffer(gate.read_bytes(path, "CIFAR-10 batch"), np.uint8)
    if raw.size == 0 or raw.size % CIFAR_RECORD:
        raise DataError(f"{path}: {raw.size} bytes is not a whole number of {CIFAR_RECORD}-byte records "
                        "(1 label byte + 3x32x32 pixels): truncated or not CIFAR-10 binary")
    records = raw.reshape(-1, CIFAR_RECORD)
    y = records[:, 0].astype(np.int64)
    check_labels(y, 10 if classes is None else min(classes, 10), path)
    return Dataset(np.ascontiguousarray(records[:, 1:].reshape(-1, 3, 32, 32)), y)


def load_cifar10(folder, classes: Optional[int] = None) -> tuple[Dataset, Dataset]:
    """``data_batch_*.bin`` (training) and ``test_batch.bin`` of the binary CIFAR-10 (never the pickled one)."""
    folder = gate.folder(folder, "folder (source cifar10 needs data_batch_*.bin and test_batch.bin)")
    batches = sorted(folder.glob("data_batch_*.bin"))
    if not batches or not (folder / "test_batch.bin").exists():  # a FIFO there is refused by the gate
        hint = (" (this is the pickled Python version; use the binary version, cifar-10-binary.tar.gz)"
                if (folder / "data_batch_1").exists() else "")
        raise DataError(f"{folder}: lacks data_batch_*.bin or test_batch.bin{hint}")
    parts = [_cifar_file(p, classes) for p in batches]
    gate.budget().charge(sum(p.x.nbytes for p in parts), folder, "the training batches joined hold")
    train = Dataset(np.concatenate([p.x for p in parts]), np.concatenate([p.y for p in parts]))
    del parts
    return train, _cifar_file(folder / "test_batch.bin", classes)


# --------------------------------------------------------------------------------------------
# One entry point


def load_source(source: str, path=None, *, test_path=None, label_offset: int = 0, resize=None,
                test_fraction: float = 0.2, classes: Optional[int] = None, seed=0) -> tuple[Dataset, Dataset]:
    """``(train, test)`` raw Datasets of any source; a missing test split is split off stratified.

    One load of :mod:`cnn.gate`: every file it reads and the sum of its arrays within the read limits.
    """
    with gate.load():
        return _load_source(source, path, test_path=test_path, label_offset=label_offset, resize=resize,
                            test_fraction=test_fraction, classes=classes, seed=seed)


def _load_source(source: str, path=None, *, test_path=None, label_offset: int = 0, resize=None,
                 test_fraction: float = 0.2, classes: Optional[int] = None, seed=0) -> tuple[Dataset, Dataset]:
    if source in ("bundled", "mnist"):
        train, test = load_mnist_raw(source, path)
    elif source == "idx":
        train, test = load_idx(path, label_offset, classes)
    elif source == "npz":
        train, test = load_npz(path, test_path, classes)
    elif source == "folder":
        train, test = load_folder(path, resize, classes)
    elif source == "cifar10":
        train, test = load_cifar10(path, classes)
    else:
        raise ValueError(f"unknown data source {source!r}; expected one of {', '.join(SOURCES)}")
    if classes is not None and source in ("bundled", "mnist"):
        check_labels(train.y, classes, f"source {source}")
    if test is None:
        if not 0 < test_fraction < 1:
            raise DataError(f"{path}: holds no test split and test_fraction {test_fraction} splits none off")
        keep, held = stratified_indices(train.y, test_fraction, seed)
        train, test = train.take(keep), train.take(held)
    if len(train) == 0 or len(test) == 0:
        raise DataError(f"{path}: the {'training' if len(train) == 0 else 'test'} split is empty")
    return train, test
