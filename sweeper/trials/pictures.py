"""A PNG of the first layer's learned kernels, written with zlib alone (no plotting stack).

Each kernel ``W[f, c]`` becomes one grey tile, scaled to its own min..max and enlarged to tiles of
about 64 pixels so that they read in the MLflow UI (see :func:`kernel_grid` for the layout).
"""
from __future__ import annotations

import struct
import zlib

import numpy as np


def png_bytes(image: np.ndarray) -> bytes:
    """Encode a ``(H, W)`` uint8 grey image as PNG."""
    h, w = image.shape
    raw = b"".join(b"\x00" + image[row].tobytes() for row in range(h))  # filter type 0 per row

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


#: Screen pixels of a kernel's tile side at least, and filters per row at most: the MLflow UI shows
#: an artifact PNG at its own size, so a strip of 3x3 tiles 30 px high was too small to read.
TILE, PER_ROW = 64, 8


def kernel_grid(weights: np.ndarray, scale: int = 0, gap: int = 4) -> np.ndarray:
    """Tile ``weights (F, C, kh, kw)`` into one uint8 image (light = large weight).

    Filters run ``PER_ROW`` across, then wrap; a filter's ``C`` channels stack down its column.
    Each kernel cell is ``scale`` pixels square (default: the tile side reaches :data:`TILE`).
    """
    f, c, kh, kw = weights.shape
    scale = scale or max(1, -(-TILE // max(kh, kw)))
    th, tw = kh * scale, kw * scale
    per_row = min(f, PER_ROW)
    rows = -(-f // per_row)
    image = np.full((rows * c * (th + gap) + gap, per_row * (tw + gap) + gap), 255, dtype=np.uint8)
    for i in range(f):
        row, column = divmod(i, per_row)
        for j in range(c):
            k = weights[i, j].astype(np.float64)
            span = k.max() - k.min()
            tile = np.zeros_like(k) if span == 0 else (k - k.min()) / span
            tile = np.kron(tile, np.ones((scale, scale)))
            y, x = gap + (row * c + j) * (th + gap), gap + column * (tw + gap)
            image[y : y + th, x : x + tw] = np.round(tile * 255).astype(np.uint8)
    return image


def kernels_png(weights: np.ndarray) -> bytes:
    return png_bytes(kernel_grid(weights))
