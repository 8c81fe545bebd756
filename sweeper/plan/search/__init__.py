"""How a sweep chooses its points (``method:``): one small interface, :class:`Sampler`, and a
sampler per method. ``grid`` is the plan's cartesian product (:mod:`sweeper.plan.points`);
``random`` and ``sobol`` are streams the plan lists up front; ``tpe`` and ``nsga2`` propose one
point at a time from what the ledger has measured (:mod:`sweeper.plan.search.feed` draws them as
trials end), each objective of a sweep with several told its own seed-averaged value.
"""
from __future__ import annotations

from typing import Optional

from sweeper.plan.search.base import Observation, Sampler, Space, derived_seed
from sweeper.plan.search.streams import RandomSampler, SobolSampler
from sweeper.plan.search.tpe import Nsga2Sampler, TpeSampler

SAMPLERS = {"random": RandomSampler, "sobol": SobolSampler, "tpe": TpeSampler, "nsga2": Nsga2Sampler}


def make_sampler(method: str, space: Space, seed: int, mode="max", budget=None) -> Sampler:
    """The sampler of ``method`` (not ``grid``: the plan expands a grid itself); ``mode`` one per
    objective with several (:func:`objective_metrics`); ``budget`` the points it may draw."""
    return SAMPLERS[method](space, seed, mode, budget)


def objective_metrics(config) -> tuple[tuple[str, str], ...]:
    """``((metric, mode), ...)`` a search optimises: the sweep's objectives, else its selection metric."""
    if config.objectives:
        return tuple((o.metric, o.mode) for o in config.objectives)
    return ((config.selection.metric, config.selection.mode),)


def objective_values(metrics: dict, names) -> Optional[tuple]:
    """The values of ``names`` in a trial's ``metrics`` (None when one is missing: no result)."""
    values = tuple(metrics.get(name) for name in names)
    return None if any(v is None for v in values) else tuple(float(v) for v in values)


def space_of(config) -> Space:
    """The search space of a :class:`~sweeper.spec.config.SweepConfig`."""
    return Space(config.grid.knobs(), {**config.model.model_dump(), **config.train.model_dump()})


__all__ = ["Observation", "Sampler", "Space", "SAMPLERS", "make_sampler", "space_of", "derived_seed",
           "objective_metrics", "objective_values", "RandomSampler", "SobolSampler", "TpeSampler", "Nsga2Sampler"]
