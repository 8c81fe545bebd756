"""``tpe`` and ``nsga2``: Optuna's :class:`~optuna.samplers.TPESampler` and
:class:`~optuna.samplers.NSGAIISampler` through their ask-and-tell interface.

Optuna is a library here, never a ledger: each proposal builds a throw-away in-memory study from
the observations the ledger holds (finished points with their seed-averaged metric, points still
running as RUNNING trials so that ``constant_liar`` steers concurrent proposals apart, failed
ones as FAIL) and asks it once. Nothing of Optuna's is stored. The study's seed is derived from
the sweep's seed and the number of observations, so equal ledgers give equal proposals.

With several objectives the study has one direction per objective and each finished point is
told its seed-averaged value of every objective: TPE is then Optuna's multi-objective TPE.
NSGA-II breeds each generation from the best of the ones before; the generations are not stored
either: the ledger's finished points, in the order their first runs were created, make
generations of :func:`population_size` points each (what NSGA-II itself would have made had
they finished in that order).
"""
from __future__ import annotations

import warnings
from typing import Optional, Sequence

from sweeper.plan.search.base import Observation, Sampler, Space, derived_seed, tidy
from sweeper.spec.config import canonical_json

#: Proposals drawn at random before the model is used (Optuna's default).
STARTUP_TRIALS = 10


def distributions(space: Space) -> dict:
    """Optuna's distribution of each knob; a list knob is a categorical over its value indices
    (Optuna's choices must be scalars; a list may hold ``[64, 32]``)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    out = {}
    for name in space.names:
        choices = space.choices(name)
        if choices is not None:
            out[name] = CategoricalDistribution(list(range(len(choices))))
            continue
        knob = space.knobs[name]
        if knob.integer:
            out[name] = IntDistribution(int(knob.low), int(knob.high), log=knob.log, step=1 if knob.log else int(knob.step))
        else:
            out[name] = FloatDistribution(knob.low, knob.high, log=knob.log, step=knob.step)
    return out


def to_params(space: Space, values: dict, dists: dict):
    """``values`` as Optuna params (list knobs as indices); None when a value is outside the space
    (the sweep file changed since the ledger recorded it)."""
    params = {}
    for name, value in values.items():
        if name not in dists:
            return None
        choices = space.choices(name)
        if choices is not None:
            keys = [canonical_json(c) for c in choices]
            if canonical_json(value) not in keys:
                return None
            params[name] = keys.index(canonical_json(value))
        else:
            if not dists[name]._contains(dists[name].to_internal_repr(value)):
                return None
            params[name] = value
    return params


def population_size(budget: Optional[int]) -> int:
    """NSGA-II's points per generation: a fifth of the budget's points, between 4 and Optuna's
    default of 50, so that a budget of tens of points still breeds a few generations."""
    return 50 if budget is None else max(4, min(50, budget // 5))


class TpeSampler(Sampler):
    """Tree-structured Parzen estimator; conditional knobs are asked define-by-run."""

    name = "tpe"

    def __init__(self, space: Space, seed: int, mode="max", budget: Optional[int] = None,
                 startup: int = STARTUP_TRIALS):
        super().__init__(space, seed, mode, budget)
        self.startup = startup
        self.dists = distributions(space)

    def make(self, seed: int):
        """The Optuna sampler of one proposal."""
        import optuna

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # constant_liar is marked experimental
            return optuna.samplers.TPESampler(seed=seed, n_startup_trials=self.startup, constant_liar=True)

    def extra(self, order: int) -> dict:
        """System attributes of the ``order``-th finished observation (NSGA-II: its generation)."""
        return {}

    def study(self, history: Sequence[Observation], index: int):
        """The in-memory study of ``history``, seeded for proposal ``index``."""
        import optuna
        from optuna.trial import TrialState, create_trial

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        sampler = self.make(derived_seed(self.seed, self.name, len(history), index))
        study = optuna.create_study(directions=["maximize" if m == "max" else "minimize" for m in self.modes],
                                    sampler=sampler)
        done = 0
        for obs in history:
            params = to_params(self.space, obs.values, self.dists)
            if params is None:
                continue
            dists = {k: self.dists[k] for k in params}
            if obs.failed:
                study.add_trial(create_trial(params=params, distributions=dists, state=TrialState.FAIL))
            elif obs.value is None:
                study.add_trial(create_trial(params=params, distributions=dists, state=TrialState.RUNNING))
            else:
                values = [float(v) for v in (obs.value if isinstance(obs.value, tuple) else (obs.value,))]
                study.add_trial(create_trial(params=params, distributions=dists, values=values,
                                             system_attrs=self.extra(done)))
                done += 1
        return study

    def ask(self, history: Sequence[Observation], index: int) -> dict:
        study = self.study(history, index)
        trial = study.ask()
        out: dict = {}
        for name in self.space.names:
            if not self.space.active(name, out):
                continue
            dist = self.dists[name]
            raw = trial._suggest(name, dist)
            choices = self.space.choices(name)
            if choices is not None:
                out[name] = choices[raw]
            else:
                knob = self.space.knobs[name]
                out[name] = int(raw) if knob.integer else (raw if knob.step else tidy(raw, knob))
        return out


class Nsga2Sampler(TpeSampler):
    """NSGA-II (:class:`optuna.samplers.NSGAIISampler`): a genetic search, usually with several
    objectives; its first generation is drawn at random."""

    name = "nsga2"

    def make(self, seed: int):
        import optuna

        return optuna.samplers.NSGAIISampler(population_size=population_size(self.budget), seed=seed)

    def extra(self, order: int) -> dict:
        from optuna.samplers import NSGAIISampler

        return {NSGAIISampler._get_generation_key(): order // population_size(self.budget)}
