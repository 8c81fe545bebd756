"""MNIST: IDX file reading, locating or downloading the files, and loading them as Datasets.

Pure NumPy and standard library. ``load_mnist()`` gives ``(train, test)`` Datasets with images of
shape ``(N, 1, 28, 28)`` (standardised floats, marked so: ``Dataset.normalized``) and labels of
shape ``(N,)`` (int64).
"""
from __future__ import annotations

import hashlib
import http.client
import os
import struct
import tempfile
import urllib.error
import urllib.request
import warnings
from pathlib import Path

import numpy as np

from cnn import gate
from cnn.dataset import DataError, Dataset
from cnn.normalize import Normalizer

__all__ = [
    "BUNDLED_DIR", "FILE_NAMES", "MD5", "DEFAULT_MIRRORS", "MEAN", "STD", "NORMALIZED", "MnistError",
    "read_idx", "read_images", "read_labels", "load_pair", "find_file", "missing_files",
    "cache_dir", "mirrors", "download_mnist", "mnist_dir", "load_mnist",
]

BUNDLED_DIR = Path(__file__).resolve().parent / "datasets" / "mnist-subset"

TRAIN_IMAGES, TRAIN_LABELS = "train-images-idx3-ubyte", "train-labels-idx1-ubyte"
TEST_IMAGES, TEST_LABELS = "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"
FILE_NAMES = (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS)

# MD5 of the *uncompressed* IDX bytes: mirrors recompress the .gz files, so the gzip bytes differ
# from mirror to mirror while the content must not.
MD5 = {
    TRAIN_IMAGES: "6bbc9ace898e44ae57da46a324031adb",
    TRAIN_LABELS: "a25bea736e30d166cdddb491f175f624",
    TEST_IMAGES: "2646ac647ad5339dbf082846283269ea",
    TEST_LABELS: "27ae3e4e09519cfbb04c329615203637",
}

DEFAULT_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
DOWNLOAD_TIMEOUT = 30.0  # seconds per blocking socket operation, not for the whole file

# Mean and std of the full training set's pixels scaled to [0, 1]; the usual MNIST constants, kept
# fixed so the bundled subset and full MNIST are standardised identically.
MEAN, STD = 0.1307, 0.3081
#: The standardisation :func:`load_mnist` applies, in raw pixel units (0..255), as its Datasets' mark.
NORMALIZED = Normalizer((255 * MEAN,), (255 * STD,))

_GZIP_MAGIC = b"\x1f\x8b"
_IDX_TYPES = {0x08: "uint8", 0x09: "int8", 0x0B: "int16", 0x0C: "int32", 0x0D: "float32", 0x0E: "float64"}


class MnistError(DataError):
    """A missing, malformed or unobtainable MNIST file; the message names the file and the fault."""


# --------------------------------------------------------------------------------------------
# IDX reading


def _idx_bytes(path: Path) -> bytearray:
    """The uncompressed IDX bytes of ``path``, gunzipped when it starts with the gzip magic; read
    through :mod:`cnn.gate` (regular files only, within the read limits)."""
    try:
        raw = gate.read_bytes(path, "IDX file")
    except gate.ReadRefused:
        raise
    except DataError as exc:
        raise MnistError(str(exc)) from None
    # Sniff the content rather than trust the suffix: mirrors and users rename files freely.
    if raw[:2] != _GZIP_MAGIC:
        return raw
    try:
        return gate.gunzip(raw, path, _declared_size)
    except gate.ReadRefused:
        raise
    except DataError as exc:
        raise MnistError(str(exc)) from None


def _declared_size(head: bytes):
    """Bytes an IDX file's first bytes declare (header and data), or None when they are no header."""
    if len(head) < 4 or head[0] or head[1] or not head[3] or len(head) < 4 + 4 * head[3]:
        return None
    return 4 + 4 * head[3] + int(np.prod(struct.unpack(f">{head[3]}I", head[4:4 + 4 * head[3]]), dtype=object))


def _parse_idx(data: bytes, path: Path) -> np.ndarray:
    """Validate an uncompressed IDX buffer and return its array (a writable copy)."""
    if len(data) < 4:
        raise MnistError(f"{path}: truncated header: {len(data)} bytes, the magic number alone needs 4")
    if data[0] != 0 or data[1] != 0:
        raise MnistError(
            f"{path}: bad magic number 0x{data[:4].hex().upper()}: the first two bytes must be zero "
            "(not an IDX file?)"
        )
    code, ndim = data[2], data[3]
    if code != 0x08:
        kind = _IDX_TYPES.get(code, "unknown")
        raise MnistError(
            f"{path}: unsupported data type code 0x{code:02X} ({kind}); only 0x08 (uint8) is supported"
        )
    if ndim == 0:
        raise MnistError(f"{path}: bad magic number: the header declares 0 dimensions")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise MnistError(
            f"{path}: truncated header: {ndim} dimensions need {header} header bytes, found {len(data)}"
        )
    dims = struct.unpack(f">{ndim}I", data[4:header])
    expected = int(np.prod(dims, dtype=object))  # Python ints: a corrupt header must not overflow
    if int(np.prod([d or 1 for d in dims], dtype=object)) >= 1 << 62:  # beyond any array, even of 0 items
        raise MnistError(f"{path}: impossible shape {dims} in the header")
    found = len(data) - header
    if found < expected:
        raise MnistError(
            f"{path}: truncated payload: shape {dims} needs {expected} bytes of data, found {found}"
        )
    if found > expected:
        raise MnistError(
            f"{path}: trailing bytes: shape {dims} needs {expected} bytes of data, found {found} "
            f"({found - expected} extra)"
        )
    # Copy so callers get an ordinary writable array instead of a read-only view of ``bytes``.
    return np.frombuffer(data, np.uint8, count=expected, offset=header).reshape(dims).copy()


def read_idx(path) -> np.ndarray:
    """Read an IDX file (gzipped or not) into a uint8 array of the shape its header declares."""
    path = Path(path)
    return _parse_idx(_idx_bytes(path), path)


def read_images(path) -> np.ndarray:
    """Images of shape ``(N, H, W)``, uint8 (``H = W = 28`` for MNIST; any size is accepted)."""
    images = read_idx(path)
    if images.ndim != 3:
        raise MnistError(
            f"{path}: expected 3-D images (N, rows, cols), got {images.ndim}-D shape {images.shape}"
        )
    return images


def read_labels(path) -> np.ndarray:
    """Labels of shape ``(N,)``, uint8 with values 0..9."""
    labels = read_idx(path)
    if labels.ndim != 1:
        raise MnistError(f"{path}: expected 1-D labels (N,), got {labels.ndim}-D shape {labels.shape}")
    bad = np.flatnonzero(labels > 9)
    if bad.size:
        i = int(bad[0])
        raise MnistError(
            f"{path}: label out of range 0..9: value {labels[i]} at index {i} "
            f"({bad.size} bad label{'s' if bad.size > 1 else ''} in all)"
        )
    return labels


def load_pair(images_path, labels_path) -> tuple[np.ndarray, np.ndarray]:
    """``(images (N, H, W) uint8, labels (N,) uint8)`` from two IDX files that must agree on N."""
    images, labels = read_images(images_path), read_labels(labels_path)
    if images.shape[0] != labels.shape[0]:
        raise MnistError(
            f"count mismatch: {images_path} holds {images.shape[0]} images but {labels_path} holds "
            f"{labels.shape[0]} labels"
        )
    return images, labels


# --------------------------------------------------------------------------------------------
# Locating and downloading


def find_file(folder, name: str) -> Path | None:
    """``folder/NAME.gz`` or else ``folder/NAME``, whichever exists first; None when neither."""
    for candidate in (Path(folder) / f"{name}.gz", Path(folder) / name):
        if candidate.is_file():
            return candidate
    return None


def missing_files(folder) -> list[str]:
    """The standard file names that ``folder`` lacks (in either form)."""
    return [name for name in FILE_NAMES if find_file(folder, name) is None]


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/cnn-sweeper/mnist``, or ``~/.cache/cnn-sweeper/mnist``."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    # The XDG spec says relative values are invalid and must be ignored.
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "cnn-sweeper" / "mnist"


def mirrors() -> tuple[str, ...]:
    """Base URLs to download from: ``$CNN_MNIST_MIRRORS`` (space-separated) or DEFAULT_MIRRORS."""
    return tuple(os.environ.get("CNN_MNIST_MIRRORS", "").split()) or DEFAULT_MIRRORS


def _how_to_point() -> str:
    return (
        f"Put the four files ({', '.join(FILE_NAMES)}, each as NAME.gz or NAME) in a folder and pass "
        "it as path=... or set CNN_MNIST_DIR to it."
    )


def _fetch(url: str, name: str, folder: Path, timeout: float) -> Path:
    """Download ``url`` into ``folder``, verify it is ``name``, rename into place; return the path."""
    fd, tmp_name = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            while chunk := response.read(1 << 20):
                out.write(chunk)
        data = _idx_bytes(tmp)
        digest = hashlib.md5(data).hexdigest()
        if digest != MD5[name]:
            raise MnistError(f"checksum mismatch: MD5 of the uncompressed data is {digest}, "
                             f"expected {MD5[name]}")
        with open(tmp, "rb") as f:
            gzipped = f.read(2) == _GZIP_MAGIC
        # Only a verified file gets its real name, so a crash or a bad mirror never leaves a
        # half-written or wrong file where the next search would accept it.
        dest = folder / (f"{name}.gz" if gzipped else name)
        os.replace(tmp, dest)
        return dest
    finally:
        tmp.unlink(missing_ok=True)


def download_mnist(folder=None, urls=None, timeout: float = DOWNLOAD_TIMEOUT) -> Path:
    """Download the files ``folder`` (default: the cache folder) lacks, trying each mirror in turn."""
    folder = Path(folder) if folder is not None else cache_dir()
    urls = tuple(urls) if urls is not None else mirrors()
    folder.mkdir(parents=True, exist_ok=True)
    for name in missing_files(folder):
        failures = []
        for base in urls:
            url = base.rstrip("/") + f"/{name}.gz"
            try:
                _fetch(url, name, folder, timeout)
                break
            except urllib.error.HTTPError as exc:
                reason = f"HTTP {exc.code} {exc.reason}"
            except urllib.error.URLError as exc:
                reason = f"{exc.reason}"
            except MnistError as exc:
                reason = str(exc)
            # Timeouts are OSErrors; IncompleteRead and friends are HTTPExceptions; a malformed
            # mirror URL is a ValueError.
            except (OSError, http.client.HTTPException, ValueError) as exc:
                reason = f"{type(exc).__name__}: {exc}"
            failures.append(f"  {url}: {reason}")
            warnings.warn(f"MNIST mirror {base} failed for {name}: {reason}; trying the next one",
                          stacklevel=2)
        else:
            listing = "\n".join(failures) or "  (no mirrors configured)"
            raise MnistError(
                f"could not download {name} into {folder}; every mirror failed:\n{listing}\n"
                + _how_to_point()
            )
    return folder


def mnist_dir(path=None, download: bool = True) -> Path:
    """The folder holding all four MNIST files.

    Looks at ``path``, then ``$CNN_MNIST_DIR``, then the cache folder, and downloads into the cache
    when none is given and it is incomplete. A folder named explicitly (argument or environment)
    that lacks files is an error: a typo must not turn into a silent download.
    """
    explicit = [(Path(path).expanduser(), "path argument")] if path is not None else []
    env = os.environ.get("CNN_MNIST_DIR", "")
    if not explicit and env:
        explicit = [(Path(env).expanduser(), "CNN_MNIST_DIR")]
    for folder, origin in explicit:
        if not folder.is_dir():
            raise MnistError(f"{folder} (from {origin}): no such directory")
        missing = missing_files(folder)
        if missing:
            raise MnistError(
                f"{folder} (from {origin}) lacks MNIST files: {', '.join(missing)} "
                "(looked for NAME.gz and NAME)"
            )
        return folder
    cache = cache_dir()
    missing = missing_files(cache)
    if not missing:
        return cache
    if not download:
        raise MnistError(
            f"MNIST not found: no path given, CNN_MNIST_DIR unset, and the cache {cache} lacks "
            f"{', '.join(missing)}; downloading is disabled (download=False). " + _how_to_point()
        )
    return download_mnist(cache)


# --------------------------------------------------------------------------------------------
# Loading as Datasets


def _dataset(folder: Path, images_name: str, labels_name: str, dtype: np.dtype) -> Dataset:
    images, labels = load_pair(find_file(folder, images_name), find_file(folder, labels_name))
    n, h, w = images.shape
    x = images.reshape(n, 1, h, w).astype(dtype)
    # In place, in ``dtype``: a float64 temporary of full MNIST would cost 376 MB.
    x /= dtype.type(255)
    x -= dtype.type(MEAN)
    x /= dtype.type(STD)
    return Dataset(x, labels.astype(np.int64), NORMALIZED)


def load_mnist(source: str = "bundled", path=None, *, dtype=np.float32,
               download: bool = True) -> tuple[Dataset, Dataset]:
    """``(train, test)`` Datasets: x of shape ``(N, 1, 28, 28)`` in ``dtype``, y of shape ``(N,)`` int64.

    ``source="bundled"``: the 6000/1000-image stratified subset shipped in ``BUNDLED_DIR``.
    ``source="full"`` (or ``"mnist"``): all 60000/10000 images from ``mnist_dir(path, download)``.
    Pixels are scaled to [0, 1], then standardised with MNIST's ``MEAN`` and ``STD``; the Datasets
    carry that standardisation as ``normalized`` (:data:`NORMALIZED`), so a model that standardises
    raw pixels itself (a sweep's ``model.npz``) evaluates them right: ``cnn.evaluate(model, test)``
    or ``model.predict(test)``. ``model.predict(test.x)`` (the bare array) is refused by such a model.
    """
    dtype = np.dtype(dtype)
    if not np.issubdtype(dtype, np.floating):
        raise ValueError(f"dtype must be a floating type, got {dtype}")
    kind = source.lower()
    if kind == "bundled":
        if path is not None:
            raise MnistError("path= only applies to source='full'; the bundled subset has a fixed home")
        folder = BUNDLED_DIR
        missing = missing_files(folder)
        if missing:
            raise MnistError(f"{folder}: bundled MNIST subset lacks {', '.join(missing)} "
                             "(package installed without its data?)")
    elif kind in ("full", "mnist"):
        folder = mnist_dir(path, download=download)
    else:
        raise ValueError(f"unknown MNIST source {source!r}; expected 'bundled', 'full' or 'mnist'")
    train = _dataset(folder, TRAIN_IMAGES, TRAIN_LABELS, dtype)
    test = _dataset(folder, TEST_IMAGES, TEST_LABELS, dtype)
    return train, test
