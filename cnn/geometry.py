"""Window geometry shared by convolution and pooling.

For one spatial axis of size ``H``, a window of size ``K`` moved by stride ``S`` over the input
padded by ``P0`` before and ``P1`` after produces

    out = (H + P0 + P1 - K) // S + 1

positions (the lecture's ``(H + 2P - K) // S + 1`` when the padding is symmetric). The last
``(H + P0 + P1 - K) % S`` rows of the padded input are never covered by any window.
"""
from __future__ import annotations

from typing import Union

Pair = tuple[int, int]
PaddingArg = Union[int, tuple, str]
Padding4 = tuple[Pair, Pair]  # ((top, bottom), (left, right))


def pair(value, name: str) -> Pair:
    """An int or a pair of ints as a pair; anything else is a ValueError naming ``name``."""
    if isinstance(value, bool):
        raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
    if isinstance(value, int) or (hasattr(value, "__index__") and not isinstance(value, (tuple, list))):
        v = int(value)
        return (v, v)
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        return (int(value[0]), int(value[1]))
    raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")


def positive_pair(value, name: str) -> Pair:
    p = pair(value, name)
    if min(p) < 1:
        raise ValueError(f"{name} must be >= 1, got {value!r}")
    return p


def same_padding(size: int, kernel: int, stride: int) -> Pair:
    """TensorFlow-style "same": ``out = ceil(size / stride)``; the odd pixel of padding goes after.

    For stride 1 this is PyTorch's ``padding="same"``: ``(K - 1) // 2`` before, the rest after.
    """
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return (total // 2, total - total // 2)


def resolve_padding(padding: PaddingArg, hw: Pair, kernel: Pair, stride: Pair) -> Padding4:
    """Padding as ``((top, bottom), (left, right))`` for an input of spatial size ``hw``."""
    if isinstance(padding, str):
        if padding != "same":
            raise ValueError(f'padding must be an int, a pair of ints or "same", got {padding!r}')
        return (same_padding(hw[0], kernel[0], stride[0]), same_padding(hw[1], kernel[1], stride[1]))
    ph, pw = pair(padding, "padding")
    if ph < 0 or pw < 0:
        raise ValueError(f"padding must be >= 0, got {padding!r}")
    return ((ph, ph), (pw, pw))


def output_size(size: int, kernel: int, stride: int, pad: Pair) -> int:
    """``(size + pad_before + pad_after - kernel) // stride + 1``; may be < 1 for impossible shapes."""
    return (size + pad[0] + pad[1] - kernel) // stride + 1


def output_hw(hw: Pair, kernel: Pair, stride: Pair, padding: Padding4) -> Pair:
    return (
        output_size(hw[0], kernel[0], stride[0], padding[0]),
        output_size(hw[1], kernel[1], stride[1], padding[1]),
    )


def unseen(size: int, kernel: int, stride: int, pad: Pair) -> int:
    """Rows (or columns) at the end of the padded input that no window covers."""
    span = size + pad[0] + pad[1] - kernel
    return span % stride if span >= 0 else 0
