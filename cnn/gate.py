"""The one reading gate: every data and model file is read through here, within stated limits.

A data path may come from anyone, so nothing here trusts what a file declares:

- only regular files and folders are read. A FIFO, socket or device is refused after ``os.stat``
  and again on the opened descriptor (opened non-blocking), so a FIFO never blocks the reader;
- a file's real size, and every size it declares (an IDX header, the ``.npy`` header of an npz
  member, a zip member's uncompressed size and compression ratio, an image's pixel count), is
  checked against the **read limit** before anything of that size is allocated;
- decompressed bytes (gzip, zip members) are bounded by the same limit while they are inflated;
- reading stops at a **time limit**, checked between chunks of at most 1 MiB.

The limits, with their environment variables:

==================  ====================  ================================================
variable            default               bounds
==================  ====================  ================================================
CNN_READ_LIMIT      2G (bytes; K, M, G)   bytes one load may hold: a file, its inflated
                                          content, the sum of a source's arrays
CNN_READ_TIMEOUT    300 (seconds)         the wall time of one load (every file of a source)
==================  ====================  ================================================

Peak memory of a load stays within :data:`PEAK_FACTOR` times the read limit (the raw bytes and
the arrays made of them, plus one conversion of pixels to their final layout); the tests measure
it with ``tracemalloc``.

Every violation is a :class:`ReadRefused` (a :class:`~cnn.dataset.DataError`), whose message names
the file and the limit; the command line turns it into exit 2.
"""
from __future__ import annotations

import contextlib
import contextvars
import gzip
import io
import math
import os
import stat
import time
import warnings
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional

import numpy as np

from cnn.dataset import DataError

LIMIT_ENV, TIMEOUT_ENV = "CNN_READ_LIMIT", "CNN_READ_TIMEOUT"
DEFAULT_LIMIT = 2 << 30
DEFAULT_TIMEOUT = 300.0
#: A zip member above 1 MiB may inflate at most this many times its compressed size (deflate of
#: zeros reaches about 1000:1; real pixels and weights stay under 20:1).
MAX_RATIO = 200
_RATIO_FLOOR = 1 << 20
#: Peak memory of one load is at most this many times the read limit (see the module docstring).
PEAK_FACTOR = 3
CHUNK = 1 << 20
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


class ReadRefused(DataError):
    """A file refused by the reading gate: the message names the file and the limit it broke."""


def _parse_size(text: str) -> int:
    text = text.strip().upper().removesuffix("B").removesuffix("I")
    unit = text[-1:] if text[-1:] in _UNITS and text[-1:] else ""
    try:
        value = float(text[:len(text) - len(unit)]) * _UNITS[unit]
    except ValueError:
        raise DataError(f"{LIMIT_ENV}={text!r}: not a size (bytes, or a number with K, M or G)") from None
    if not value > 0 or not math.isfinite(value):
        raise DataError(f"{LIMIT_ENV}={text!r}: must be a positive size")
    return int(value)


def read_limit() -> int:
    """Bytes one load may hold: ``$CNN_READ_LIMIT`` (e.g. ``512M``, ``4G``) or 2 GiB."""
    text = os.environ.get(LIMIT_ENV, "").strip()
    return _parse_size(text) if text else DEFAULT_LIMIT


def read_timeout() -> float:
    """Seconds one load may take: ``$CNN_READ_TIMEOUT`` or 300."""
    text = os.environ.get(TIMEOUT_ENV, "").strip()
    try:
        value = float(text) if text else DEFAULT_TIMEOUT
    except ValueError:
        raise DataError(f"{TIMEOUT_ENV}={text!r}: not a number of seconds") from None
    if not value > 0:
        raise DataError(f"{TIMEOUT_ENV}={text!r}: must be a positive number of seconds")
    return value


def _size(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n} bytes"


@dataclass
class Budget:
    """The limits of one load: bytes held so far against ``limit``, and the deadline."""

    limit: int
    timeout: float
    start: float = field(default_factory=time.monotonic)
    held: int = 0

    def charge(self, nbytes: int, where, what: str = "holds") -> None:
        """Count ``nbytes`` about to be allocated for ``where``; refuse past the limit."""
        if nbytes < 0 or self.held + nbytes > self.limit:
            total = "" if not self.held else f" (with {_size(self.held)} already read)"
            raise ReadRefused(f"{where}: {what} {_size(max(nbytes, 0))}{total}, beyond the read limit of "
                              f"{_size(self.limit)} ({LIMIT_ENV})")
        self.held += nbytes

    def check_time(self, where) -> None:
        if time.monotonic() - self.start > self.timeout:
            raise ReadRefused(f"{where}: reading took longer than the time limit of {self.timeout:g} s "
                              f"({TIMEOUT_ENV})")


_CURRENT: contextvars.ContextVar[Optional[Budget]] = contextvars.ContextVar("cnn_read_budget", default=None)


@contextlib.contextmanager
def load(limit: Optional[int] = None, timeout: Optional[float] = None) -> Iterator[Budget]:
    """One load's budget for every gate call inside (nested loads share the outer one)."""
    outer = _CURRENT.get()
    if outer is not None:
        yield outer
        return
    budget = Budget(read_limit() if limit is None else limit, read_timeout() if timeout is None else timeout)
    token = _CURRENT.set(budget)
    try:
        yield budget
    finally:
        _CURRENT.reset(token)


def budget() -> Budget:
    """The current load's budget, or a fresh one for a gate call made outside :func:`load`."""
    return _CURRENT.get() or Budget(read_limit(), read_timeout())


# --------------------------------------------------------------------------------------------
# Files and folders


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISDIR, "a folder")):
        if test(mode):
            return name
    return "not a regular file"


def _stat(path, missing: str, unreadable: str) -> os.stat_result:
    """``os.stat`` of ``path``; a :class:`DataError` naming it otherwise (nothing is opened)."""
    try:
        return os.stat(path)
    except FileNotFoundError:
        raise DataError(f"{path}: {missing}") from None
    except OSError as exc:
        raise DataError(f"{path}: {unreadable} ({exc.strerror or exc})") from None


def regular_file(path, what: str = "file") -> os.stat_result:
    """``os.stat`` of ``path`` when it is a regular file within the read limit (nothing is opened)."""
    st = _stat(path, f"cannot read file (no such {what})", "cannot read file")
    if not stat.S_ISREG(st.st_mode):
        raise ReadRefused(f"{path}: is {_kind(st.st_mode)}; only regular files are read")
    b = budget()
    if st.st_size > b.limit:
        raise ReadRefused(f"{path}: is {_size(st.st_size)}, beyond the read limit of {_size(b.limit)} ({LIMIT_ENV})")
    return st


def folder(path, what: str = "folder") -> Path:
    """``path`` when it is a folder (a FIFO or file named as one is refused without opening it)."""
    path = Path(path).expanduser()
    st = _stat(path, f"no such {what}", "cannot read")
    if not stat.S_ISDIR(st.st_mode):
        raise ReadRefused(f"{path}: is {_kind(st.st_mode) if not stat.S_ISREG(st.st_mode) else 'a file'}; "
                          f"expected a {what}")
    return path


@contextlib.contextmanager
def open_file(path, what: str = "file") -> Iterator[io.BufferedReader]:
    """``path`` opened for reading after the checks of :func:`regular_file`, and again on the
    descriptor (opened non-blocking: a file swapped for a FIFO in between cannot block)."""
    regular_file(path, what)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise DataError(f"{path}: cannot open ({exc.strerror or exc})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ReadRefused(f"{path}: is {_kind(st.st_mode)}; only regular files are read")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        f = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with f:
        yield f


def _read_into(f, out: memoryview, where, b: Budget) -> int:
    """Fill ``out`` from ``f`` chunk by chunk, checking the deadline; the count of bytes read."""
    done = 0
    while done < len(out):
        b.check_time(where)
        n = f.readinto(out[done:done + CHUNK])
        if not n:
            break
        done += n
    return done


def read_bytes(path, what: str = "file") -> bytearray:
    """The bytes of a regular file within the limits (charged to the current load)."""
    b = budget()
    with open_file(path, what) as f:
        size = os.fstat(f.fileno()).st_size
        b.charge(size, path, "is")
        buf = bytearray(size)
        n = _read_into(f, memoryview(buf), path, b)
        if n != size:
            raise DataError(f"{path}: changed while being read ({n} of {size} bytes)")
        return buf  # a bytearray: no second copy


def gunzip(raw, path, declared=None) -> bytearray:
    """The inflated bytes of a gzip stream, refused as soon as they pass the read limit.

    ``declared(head)``: the total size the stream's first bytes declare (an IDX header), or None;
    a declared size beyond the limit is refused before the rest is inflated, and inflating stops
    one byte past it (the parser then names the trailing bytes)."""
    b = budget()
    room = b.limit - b.held
    out = bytearray()
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(raw)) as g:
            if declared is not None:
                out += g.read(64)
                size = declared(bytes(out))
                if size is not None:
                    if size > room:
                        raise ReadRefused(f"{path}: its header declares {_size(size)}, beyond the read limit of "
                                          f"{_size(b.limit)} ({LIMIT_ENV})")
                    room = size
            while len(out) <= room:
                b.check_time(path)
                chunk = g.read(min(CHUNK, room - len(out) + 1))
                if not chunk:
                    break
                out += chunk
            # Past what a header declares, the parser names the trailing bytes; past the limit, refused.
            if len(out) > room and room == b.limit - b.held:
                raise ReadRefused(f"{path}: inflates beyond the read limit of {_size(b.limit)} ({LIMIT_ENV})")
    except (OSError, EOFError, zlib.error) as exc:  # BadGzipFile is an OSError
        raise DataError(f"{path}: corrupt gzip stream ({exc})") from None
    b.charge(len(out), path, "inflates to")
    return out


# --------------------------------------------------------------------------------------------
# Zip archives of .npy members (npz)


def zip_members(path, zf: zipfile.ZipFile) -> list[zipfile.ZipInfo]:
    """The members of an opened archive after checking their declared sizes: each inflated size
    and the sum within the read limit, no member inflating more than :data:`MAX_RATIO` times."""
    b = budget()
    infos = zf.infolist()
    total = 0
    for info in infos:
        where = f"{path}: member {info.filename[:80]!r}"
        if info.file_size > MAX_RATIO * max(info.compress_size, 1) and info.file_size > _RATIO_FLOOR:
            raise ReadRefused(f"{where} inflates {info.compress_size} bytes to {_size(info.file_size)}, more than "
                              f"{MAX_RATIO} times (a zip bomb?)")
        total += info.file_size
        if total > b.limit - b.held:
            raise ReadRefused(f"{where}: the archive inflates to {_size(total)} or more, beyond the read limit of "
                              f"{_size(b.limit)} ({LIMIT_ENV})")
    return infos


def npy_header(f, where) -> tuple[tuple, bool, np.dtype, int]:
    """``(shape, fortran_order, dtype, header bytes)`` of the ``.npy`` stream ``f``; no object arrays."""
    try:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f, max_header_size=10_000)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f, max_header_size=10_000)
        else:
            raise ValueError(f"unsupported .npy version {version}")
    except Exception as exc:  # noqa: BLE001 -- zip and header faults of every kind (numpy tokenizes it)
        raise DataError(f"{where}: not a valid array ({str(exc)[:200]})") from None
    if dtype.hasobject:
        raise DataError(f"{where}: object arrays (pickle) are refused")
    return tuple(shape), fortran, dtype, f.tell()


def read_npz(path, names=None) -> dict[str, np.ndarray]:
    """The arrays ``names`` (all when None) of an npz, each declared size checked before it is
    allocated, read chunk by chunk within the time limit; absent names are left out."""
    b = budget()
    with open_file(path) as f:
        try:
            zf = zipfile.ZipFile(f)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError) as exc:
            raise DataError(f"{path}: not a readable .npz file (truncated?): {exc}") from None
        with zf:
            out = {}
            for info in zip_members(path, zf):
                name = info.filename.removesuffix(".npy")
                if names is not None and name not in names:
                    continue
                where = f"{path}: array {name[:80]!r}"
                try:
                    with zf.open(info) as member:
                        shape, fortran, dtype, header = npy_header(member, where)
                        nbytes = math.prod(shape) * dtype.itemsize
                        if header + nbytes != info.file_size:
                            raise ReadRefused(f"{where}: its header declares {nbytes} bytes of data, the archive "
                                            f"holds {info.file_size - header}")
                        b.charge(nbytes, where, "declares")
                        array = np.empty(shape[::-1] if fortran else shape, dtype)
                        got = _read_into(member, memoryview(array.reshape(-1).view(np.uint8)), where, b)
                except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError) as exc:
                    # NotImplementedError: a zip version or compression zipfile does not read
                    raise DataError(f"{where}: corrupt member ({exc})") from None
                if got != nbytes:
                    raise DataError(f"{where}: truncated ({got} of {nbytes} bytes)")
                out[name] = array.T if fortran else array
            return out


# --------------------------------------------------------------------------------------------
# Images (Pillow)


def image_pixels_limit() -> int:
    """Most pixels of one image: Pillow's ``Image.MAX_IMAGE_PIXELS`` and a quarter of the read limit."""
    from PIL import Image

    cap = Image.MAX_IMAGE_PIXELS or math.inf
    return int(min(cap, budget().limit // 4))


@contextlib.contextmanager
def open_image(path):
    """A Pillow image of a regular file within the limits, its header checked before decoding:
    more pixels than :func:`image_pixels_limit` is refused (Pillow's bomb warning becomes one too)."""
    from PIL import Image, UnidentifiedImageError

    b = budget()
    b.check_time(path)
    with open_file(path, "image") as f:
        # Pillow decodes from the file's bytes in memory: reading a real file, it asks for blocks
        # as large as a chunk's declared length, and a buffered read allocates what it is asked
        # for (64 MiB for a fuzzed 100-byte PNG); from memory it gets only what is there.
        data = io.BytesIO(f.read())
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                im = Image.open(data)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ReadRefused(f"{path}: {exc} (Image.MAX_IMAGE_PIXELS)") from None
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
            raise DataError(f"{path}: not a readable image ({exc})") from None
        with im:
            w, h = im.size
            if w * h > image_pixels_limit():
                raise ReadRefused(f"{path}: {w}x{h} pixels, more than the limit of {image_pixels_limit()} pixels "
                                  f"(Pillow's Image.MAX_IMAGE_PIXELS, a quarter of {LIMIT_ENV})")
            yield im


__all__ = ["ReadRefused", "LIMIT_ENV", "TIMEOUT_ENV", "MAX_RATIO", "PEAK_FACTOR", "read_limit", "read_timeout",
           "Budget", "load", "budget", "regular_file", "folder", "open_file", "read_bytes", "gunzip",
           "zip_members", "npy_header", "read_npz", "image_pixels_limit", "open_image"]
