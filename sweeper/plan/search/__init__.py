"""How a sweep chooses its points (``method:``): one small interface, :class:`Sampler`, and a
sampler per method. ``grid`` is the plan's cartesian product (:mod:`sweeper.plan.points`);
``random`` and ``sobol`` are streams the plan lists up front; ``tpe`` proposes one point at a
time from what the ledger has measured (:mod:`sweeper.plan.search.feed` draws them as trials end).
"""
from __future__ import annotations

from sweeper.plan.search.base import Observation, Sampler, Space, derived_seed
from sweeper.plan.search.streams import RandomSampler, SobolSampler
from sweeper.plan.search.tpe import TpeSampler

SAMPLERS = {"random": RandomSampler, "sobol": SobolSampler, "tpe": TpeSampler}


def make_sampler(method: str, space: Space, seed: int, mode: str = "max") -> Sampler:
    """The sampler of ``method`` (not ``grid``: the plan expands a grid itself)."""
    return SAMPLERS[method](space, seed, mode)


def space_of(config) -> Space:
    """The search space of a :class:`~sweeper.spec.config.SweepConfig`."""
    return Space(config.grid.knobs(), {**config.model.model_dump(), **config.train.model_dump()})


__all__ = ["Observation", "Sampler", "Space", "SAMPLERS", "make_sampler", "space_of", "derived_seed",
           "RandomSampler", "SobolSampler", "TpeSampler"]
