"""New values for a numeric knob's next grid: one step beyond an edge, or a finer value between two.

The step follows the grid's own spacing: geometric where the values are a scale (positive
floats such as learning rates; integers in a constant ratio, or powers of two) and arithmetic
otherwise (kernel sizes 3, 5, 7 go on to 9). A finer value keeps the grid's lattice: odd sizes
stay odd, powers of two stay powers of two. Values stay inside what a sweep file accepts, so the
next sweep file validates as it is.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

#: The sweep file's bounds (sweeper/spec/fields.py; dashboards cannot import sweeper, and
#: tests/dashboards/test_steps.py checks these against it). Integers default to >= 1, floats to > 0.
LOWEST = {"padding": 0, "crop_padding": 0, "weight_decay": 0.0, "momentum": 0.0}
HIGHEST = {"kernel_size": 64, "stride": 64, "padding": 64, "pool_size": 64, "pool_stride": 64, "depth": 2048,
           "blocks": 16, "epochs": 1000, "batch_size": 60000}
#: Knobs that must stay below 1: their steps are taken on ``1 - value`` (0.9 -> 0.99 is one step).
FRACTIONS = {"momentum"}


def _integral(values: Sequence) -> bool:
    return all(isinstance(v, int) and not isinstance(v, bool) for v in values)


def _power_of_two(v) -> bool:
    return isinstance(v, int) and v > 0 and v & (v - 1) == 0


def _round(value: float, integral: bool):
    return int(round(value)) if integral else float(f"{value:.3g}")


def geometric(values: Sequence) -> bool:
    """Whether ``values`` (ascending) are a scale: positive floats, or positive integers in a
    constant ratio that are not also evenly spaced (2, 4, 8 but not 3, 5), or powers of two."""
    if len(values) < 2 or any(v <= 0 for v in values):
        return False
    if not _integral(values):
        return True
    if all(_power_of_two(v) for v in values):
        return True
    ratios = [b / a for a, b in zip(values, values[1:])]
    gaps = {b - a for a, b in zip(values, values[1:])}
    return len(values) >= 3 and len(gaps) > 1 and max(ratios) - min(ratios) < 0.01 * max(ratios)


def _bounds(field: str, integral: bool) -> tuple[float, float, bool]:
    """``(low, high, low_included)``."""
    if field in LOWEST:
        return LOWEST[field], (1.0 if field in FRACTIONS else HIGHEST.get(field, math.inf)), True
    return (1, HIGHEST.get(field, math.inf), True) if integral else (0.0, math.inf, False)


def beyond(field: str, values: Sequence, up: bool) -> Optional[float]:
    """The next value past the largest (``up``) or smallest of ``values`` (ascending), one step
    of the grid's spacing at that edge; clipped to the field's bounds; None when there is no room."""
    if len(values) < 2:
        return None
    integral = _integral(values)
    edge, inner = (values[-1], values[-2]) if up else (values[0], values[1])
    if field in FRACTIONS:  # steps on 1 - value: 0.5, 0.9 -> 0.98
        one_minus = beyond("", [1 - v for v in sorted(values, reverse=True)], not up)
        new = None if one_minus is None else 1 - one_minus
    elif geometric(values):
        new = edge * (edge / inner)
    else:
        new = edge + (edge - inner)
    if new is None:
        return None
    low, high, included = _bounds(field, integral)
    new = min(max(new, low), high)
    new = _round(new, integral)
    if new == edge or (new == low and not included) or (field in FRACTIONS and new >= 1):
        return None
    return new


def between(field: str, a, b, values: Sequence) -> Optional[float]:
    """A value strictly between ``a`` and ``b`` on the grid's lattice (``values``: the whole grid),
    nearest their geometric or arithmetic middle; None when there is none."""
    low, high = min(a, b), max(a, b)
    if _integral(values):
        if all(_power_of_two(v) for v in values):
            options = [2 ** k for k in range(1, 64) if low < 2 ** k < high]
        elif all(v % 2 == 1 for v in values):
            options = [v for v in range(low + 1, high) if v % 2 == 1]
        else:
            options = list(range(low + 1, high))
        if not options:
            return None
        middle = math.sqrt(low * high) if geometric(values) else (low + high) / 2
        return min(options, key=lambda v: (abs(v - middle), v))
    middle = math.sqrt(low * high) if geometric(values) else (low + high) / 2
    value = _round(middle, False)
    return value if low < value < high else None


__all__ = ["FRACTIONS", "HIGHEST", "LOWEST", "beyond", "between", "geometric"]
