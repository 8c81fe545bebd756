"""A PNG of the first layer's learned kernels, written with zlib alone (no plotting stack).

Each kernel ``W[f, c]`` becomes one grey tile, scaled to its own min..max and enlarged so a 3x3
kernel is visible in the MLflow UI; tiles are laid out ``F`` across and ``C`` down.
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


def kernel_grid(weights: np.ndarray, scale: int = 0, gap: int = 2) -> np.ndarray:
    """Tile ``weights (F, C, kh, kw)`` into one uint8 image (light = large weight)."""
    f, c, kh, kw = weights.shape
    scale = scale or max(1, 32 // max(kh, kw))
    th, tw = kh * scale, kw * scale
    image = np.full((c * (th + gap) + gap, f * (tw + gap) + gap), 255, dtype=np.uint8)
    for i in range(f):
        for j in range(c):
            k = weights[i, j].astype(np.float64)
            span = k.max() - k.min()
            tile = np.zeros_like(k) if span == 0 else (k - k.min()) / span
            tile = np.kron(tile, np.ones((scale, scale)))
            y, x = gap + j * (th + gap), gap + i * (tw + gap)
            image[y : y + th, x : x + tw] = np.round(tile * 255).astype(np.uint8)
    return image


def kernels_png(weights: np.ndarray) -> bytes:
    return png_bytes(kernel_grid(weights))
