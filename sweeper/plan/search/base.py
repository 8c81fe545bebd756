"""The search space and the interface every sampler has (after Optuna's ``BaseSampler``).

A sampler proposes the swept values of the next point from what it is told: the ledger's
observations (a point's values and its seed-averaged selection metric, or with several
objectives the seed-averaged value of each; none yet while it runs). It keeps no state of its own between calls, so it is rebuilt from the ledger on every
start: MLflow stays the only record, and two drivers that read the same ledger propose the
same point (their claims then train it once).
"""
from __future__ import annotations

import hashlib
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Optional, Sequence, Union

from sweeper.spec.config import canonical_json
from sweeper.spec.space import Knob


@dataclass(frozen=True)
class Observation:
    """One point the search knows of: its swept ``values``; ``value`` the mean selection metric of
    its finished repeats once all are finished (with several objectives a tuple: each objective's
    mean; None: still to train or running); ``failed`` for a point that cannot train (infeasible,
    or its trial failed)."""

    values: dict
    value: Optional[Union[float, tuple]] = None
    failed: bool = False


#: Significant digits of a float drawn from a range: a legible run name, and a value that reads
#: back from an MLflow param exactly (so the ledger's points keep their hashes).
DIGITS = 6


def tidy(value: float, knob: Knob) -> float:
    """``value`` to :data:`DIGITS` significant digits, within the knob's bounds."""
    return min(max(float(f"{value:.{DIGITS}g}"), knob.low), knob.high)


@dataclass(frozen=True)
class Space:
    """The knobs of a search (lists or :class:`~sweeper.spec.space.Knob`), in the grid's order, with
    the base settings that a condition reads when the knob it names is not swept."""

    knobs: dict  # name -> list | Knob
    base: dict  # every model/train field's base value

    @property
    def names(self) -> list[str]:
        """Unconditional knobs first: a condition reads values set before it."""
        plain = [n for n, k in self.knobs.items() if not (isinstance(k, Knob) and k.when)]
        return plain + [n for n in self.knobs if n not in plain]

    def choices(self, name: str) -> Optional[list]:
        knob = self.knobs[name]
        return list(knob.values) if isinstance(knob, Knob) and knob.values is not None else \
            (knob if isinstance(knob, list) else None)

    def active(self, name: str, values: dict) -> bool:
        knob = self.knobs[name]
        return not isinstance(knob, Knob) or knob.active(values, self.base)

    def from_unit(self, u: Sequence[float]) -> dict:
        """The values at ``u`` in the unit cube (one coordinate per knob, in :attr:`names` order);
        an inactive knob's coordinate is ignored."""
        out: dict = {}
        for name, x in zip(self.names, u):
            if not self.active(name, out):
                continue
            x = min(max(float(x), 0.0), math.nextafter(1.0, 0.0))
            choices = self.choices(name)
            if choices is not None:
                out[name] = choices[int(x * len(choices))]
                continue
            knob: Knob = self.knobs[name]
            if knob.integer or knob.step is not None:
                steps = knob.size()
                if knob.log and knob.integer:  # an int on a log scale: the log value rounded
                    v = round(math.exp(math.log(knob.low) + x * (math.log(knob.high) - math.log(knob.low))))
                    out[name] = int(min(max(v, knob.low), knob.high))
                else:
                    v = knob.low + knob.step * int(x * steps)
                    out[name] = int(v) if knob.integer else round(v, 12)
            elif knob.log:
                out[name] = tidy(math.exp(math.log(knob.low) + x * (math.log(knob.high) - math.log(knob.low))), knob)
            else:
                out[name] = tidy(knob.low + x * (knob.high - knob.low), knob)
        return out

    def key(self, values: dict) -> str:
        return canonical_json(values)


def derived_seed(*parts: Union[int, str]) -> int:
    """A seed from ``parts``: the same on every machine and in every process."""
    text = "/".join(map(str, parts))
    return int(hashlib.sha256(text.encode()).hexdigest(), 16) % 2 ** 31


class Sampler(ABC):
    """Proposes swept values; ``ask(history, index)`` for the ``index``-th proposal of a search
    that knows ``history``. Deterministic in (seed, history, index). ``mode``: ``max`` or ``min``,
    or one per objective; ``budget``: the points the search may draw (None: unbounded)."""

    #: True when the proposals do not depend on the history (a stream: the plan can list them).
    stream = False

    def __init__(self, space: Space, seed: int, mode: Union[str, Sequence[str]] = "max",
                 budget: Optional[int] = None):
        self.space, self.seed, self.budget = space, seed, budget
        self.modes = (mode,) if isinstance(mode, str) else tuple(mode)
        self.mode = self.modes[0]

    @abstractmethod
    def ask(self, history: Sequence[Observation], index: int) -> dict:
        """The swept values of a proposal (active knobs only)."""
