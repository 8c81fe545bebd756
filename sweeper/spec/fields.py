"""Field types and the base model shared by every section of a sweep file (:mod:`sweeper.spec.config`,
:mod:`sweeper.spec.data`).

Strict ints: YAML already gives ints, and "3" or 2.5 for a size is a mistake. Floats are finite.
"""
from __future__ import annotations

from typing import Annotated

from annotated_types import Ge, Gt, Lt
from pydantic import AfterValidator, AllowInfNan, BaseModel, ConfigDict, Strict
from pydantic_core import PydanticCustomError

PositiveInt = Annotated[int, Strict(), Ge(1)]
NonNegInt = Annotated[int, Strict(), Ge(0)]
PositiveFloat = Annotated[float, Strict(), AllowInfNan(False), Gt(0)]
NonNegFloat = Annotated[float, Strict(), AllowInfNan(False), Ge(0)]
Fraction = Annotated[float, Strict(), AllowInfNan(False), Ge(0), Lt(1)]


def at_most(limit: int, why: str) -> AfterValidator:
    """Upper bound of a size or count field; the message says why the bound is there."""
    def check(value):
        sizes = value if isinstance(value, tuple) else (value,)
        if any(isinstance(v, int) and v > limit for v in sizes):
            raise PydanticCustomError("too_large", "Input should be at most {limit}: {why}",
                                      {"limit": limit, "why": why})
        return value
    return AfterValidator(check)


class _Section(BaseModel):
    """Base of every model: unknown keys are errors; a loaded config is immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)
