"""Samplers whose proposals do not depend on what was measured: ``random`` and ``sobol``.

Proposal ``i`` is a function of the seed and ``i`` only, so a plan can list the points of a
sweep before anything trains, and a resumed or concurrent submission lists the same ones.
"""
from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np

from sweeper.plan.search.base import Observation, Sampler, Space, derived_seed


class RandomSampler(Sampler):
    """Independent uniform draws (log-uniform on a log scale; uniform over a list's values)."""

    stream = True

    def ask(self, history: Sequence[Observation], index: int) -> dict:
        rng = np.random.default_rng([self.seed, index])
        return self.space.from_unit(rng.random(len(self.space.names)))


class SobolSampler(Sampler):
    """A scrambled Sobol sequence (:class:`scipy.stats.qmc.Sobol`), seeded with the sweep's seed:
    its first points cover the unit cube more evenly than random draws. On a discrete space a
    proposal equal to an earlier point is skipped by the plan, so no point is trained twice."""

    stream = True

    def __init__(self, space: Space, seed: int, mode="max", budget=None):
        super().__init__(space, seed, mode, budget)
        self._points = np.empty((0, max(1, len(space.names))))

    def _unit(self, index: int) -> np.ndarray:
        if index >= len(self._points):
            from scipy.stats import qmc

            n = 1 << max(4, int(index).bit_length())  # a power of two: Sobol's balance property holds
            engine = qmc.Sobol(d=max(1, len(self.space.names)), scramble=True,
                               seed=derived_seed(self.seed, "sobol"))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self._points = engine.random(n)
        return self._points[index]

    def ask(self, history: Sequence[Observation], index: int) -> dict:
        return self.space.from_unit(self._unit(index))
