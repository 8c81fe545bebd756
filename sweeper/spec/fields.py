"""Field types and the base model shared by every section of a sweep file (:mod:`sweeper.spec.config`,
:mod:`sweeper.spec.data`).

Strict ints: YAML already gives ints, and "3" or 2.5 for a size is a mistake. Floats are finite.
A type carries its constraints (the upper bound of a size or count with its reason, a window as
an int or an ``[h, w]`` pair), so that a grid list of a field's values checks each value as the
field itself does.
"""
from __future__ import annotations

from typing import Annotated, Literal, Union

from annotated_types import Ge, Gt, Le, Lt
from pydantic import AfterValidator, AllowInfNan, BaseModel, ConfigDict, Field, PlainValidator, Strict
from pydantic_core import PydanticCustomError

from cnn.schedules import KINDS
from cnn.spec import ACTIVATIONS, POOLING_MODES

from sweeper.spec.names import SWEEP_NAME_PATTERN, check_name

PositiveInt = Annotated[int, Strict(), Ge(1)]
NonNegInt = Annotated[int, Strict(), Ge(0)]
PositiveFloat = Annotated[float, Strict(), AllowInfNan(False), Gt(0)]
NonNegFloat = Annotated[float, Strict(), AllowInfNan(False), Ge(0)]
Fraction = Annotated[float, Strict(), AllowInfNan(False), Ge(0), Lt(1)]
#: A factor that shrinks a value or keeps it: a learning-rate decay, a floor relative to the rate.
ShrinkFactor = Annotated[float, Strict(), AllowInfNan(False), Gt(0), Le(1)]
UnitInterval = Annotated[float, Strict(), AllowInfNan(False), Ge(0), Le(1)]


_UNITS = {"": 1, "K": 2 ** 10, "M": 2 ** 20, "G": 2 ** 30, "T": 2 ** 40}


def parse_bytes(text: str) -> int:
    """``"8G"`` -> 8 GiB; plain digits are bytes. ``ValueError`` for anything else."""
    import math

    text = text.strip().upper().removesuffix("B").removesuffix("I")
    unit = text[-1:] if text[-1:] in _UNITS else ""
    value = float(text[:len(text) - len(unit)])
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"not a positive size: {text!r}")
    return int(value * _UNITS[unit])


def _memory_size(text: str) -> str:
    try:
        parse_bytes(text)
    except ValueError:
        raise PydanticCustomError("memory_size", "should be a size such as 8G, 512M or 1.5G") from None
    return text


#: A worker's memory, e.g. ``8G``.
MemorySize = Annotated[str, Strict(), Field(max_length=32), AfterValidator(_memory_size)]


def at_most(limit: int, why: str) -> AfterValidator:
    """Upper bound of a size or count field; the message says why the bound is there."""
    def check(value):
        sizes = value if isinstance(value, tuple) else (value,)
        if any(isinstance(v, int) and v > limit for v in sizes):
            raise PydanticCustomError("too_large", "Input should be at most {limit}: {why}",
                                      {"limit": limit, "why": why})
        return value
    return AfterValidator(check)


SweepName = Annotated[str, Field(pattern=SWEEP_NAME_PATTERN), AfterValidator(check_name)]
ExperimentName = Annotated[str, Strict(), AfterValidator(check_name)]


#: Upper bounds of the size and count fields, each with its reason. Together with the plan's
#: memory estimate per trial (:mod:`sweeper.plan.cost`) they keep a point that cannot run out.
MAX_WINDOW = at_most(64, "a window or stride wider than the 28x28 input images only sees padding")
MAX_BLOCKS = at_most(16, "each conv block shrinks or keeps the 28x28 image; deeper stacks only add cost")
MAX_DEPTH = at_most(2048, "kernels per block; weights and activations grow with it")
MAX_DENSE = at_most(65536, "units in one dense layer; its weights grow with the square")
MAX_CLASSES = at_most(1000, "outputs of the last layer")
MAX_EPOCHS = at_most(1000, "passes over the training images in one trial")
MAX_BATCH = at_most(60000, "no data set here has more training images")
MAX_REPEATS = at_most(1000, "trials of one point, each with its own seed")
MAX_SEED = at_most(2 ** 63 - 1, "seeds are stored as 64-bit integers")
MAX_CPUS = at_most(1024, "CPUs one trial can use")
MAX_RETRIES = at_most(100, "retries of a trial whose worker died")
Schedule = Literal[KINDS]
Activation = Literal[ACTIVATIONS]
Pooling = Literal[POOLING_MODES + ("none",)]


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _window_arg(minimum: int, allow_same: bool = False):
    """Validator for an int or a pair ``[h, w]`` of ints ``>= minimum`` (or ``"same"``).

    A square pair becomes an int so that ``3`` and ``[3, 3]`` are the same value: the same point
    hash, and a duplicate in a grid list.
    """
    expected = f"an integer >= {minimum} or a pair [h, w] of them" + (', or "same"' if allow_same else "")

    def check(value):
        if allow_same and value == "same":
            return value
        if isinstance(value, (list, tuple)):
            if len(value) != 2 or not all(_is_int(v) for v in value):
                raise PydanticCustomError("window_type", "Input should be {expected}", {"expected": expected})
            if min(value) < minimum:
                raise PydanticCustomError("greater_than_equal", "Both sizes should be greater than or equal to {ge}",
                                          {"ge": minimum})
            return value[0] if value[0] == value[1] else (value[0], value[1])
        if not _is_int(value):
            raise PydanticCustomError("window_type", "Input should be {expected}", {"expected": expected})
        if value < minimum:
            raise PydanticCustomError("greater_than_equal", "Input should be greater than or equal to {ge}",
                                      {"ge": minimum})
        return value

    return PlainValidator(check)


Size = Annotated[Union[int, tuple[int, int]], _window_arg(1), MAX_WINDOW]
Padding = Annotated[Union[int, tuple[int, int], Literal["same"]], _window_arg(0, allow_same=True), MAX_WINDOW]



class Section(BaseModel):
    """Base of every model: unknown keys are errors; a loaded config is immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)
