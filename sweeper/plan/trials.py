"""A point and a trial: the one shape a trial has, from the plan to the worker and back.

A :class:`Point` is one combination of swept values resolved into a full configuration and its
network (:class:`cnn.spec.ModelSpec`, built once by the plan); a :class:`Trial` is one training
run of a point with its own seed. Ray ships a trial to its worker as it is, so this module
imports nothing heavier than :mod:`cnn.spec` (no pydantic, no MLflow).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from cnn.spec import ModelSpec, param_count


@dataclass(frozen=True, eq=False)
class Point:
    """One resolved combination of grid values. Equal points have equal ``hash``."""

    values: dict  # the swept values, in grid order
    config: dict  # {"seed", "data", "model", "train"}, JSON types only
    hash: str
    name: str
    spec: ModelSpec
    flops: Optional[int]  # forward FLOPs per image; None when the shapes collapse
    unseen: tuple[str, ...] = ()  # conv coverage problems (kept with unseen_inputs: allow)
    shape_error: Optional[str] = None  # the ShapeError message when the shapes collapse

    @property
    def params(self) -> int:
        return param_count(self.spec)

    def __eq__(self, other):
        return isinstance(other, Point) and other.hash == self.hash

    def __hash__(self):
        return hash(self.hash)


@dataclass(frozen=True)
class Trial:
    """One training run of a point; ``repeat`` counts from 0."""

    point: Point
    repeat: int
    seed: int

    @property
    def key(self) -> tuple[str, int]:
        """What a finished run is recorded under: ``(point hash, repeat)``."""
        return (self.point.hash, self.repeat)

    @property
    def run_name(self) -> str:
        return f"{self.point.name} #{self.repeat + 1}"
