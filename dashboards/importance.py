"""Knob importance for searches that are not grids (random, sobol, tpe): Optuna's PED-ANOVA.

A grid has its ANOVA table; a search's points do not form a factorial design, and a learning
rate drawn from a range has as many values as points. PED-ANOVA (Watanabe et al., 2023;
:class:`optuna.importance.PedAnovaImportanceEvaluator`) asks instead how differently each knob
is distributed among the best points (the top 10% by default) than among all of them, which
needs no design. Optuna is used as a library: an in-memory study is built from the per-point
means of the report (:func:`dashboards.stats.per_point`), nothing is stored. The intervals are a
bootstrap over points (the points resampled with replacement, the importances recomputed).
"""
from __future__ import annotations

import math
import warnings
from typing import Sequence

import numpy as np
import pandas as pd

#: Bootstrap resamples for the intervals.
BOOTSTRAP = 50


def _distributions(points: pd.DataFrame, fields: Sequence[str]) -> dict:
    """Optuna distributions of the fields that vary: numbers as float ranges (log when positive
    over two decades or more), everything else as categories of its text."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    out = {}
    for field in fields:
        values = points[field]
        if values.map(lambda v: json_text(v)).nunique() < 2:
            continue
        if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
            lo, hi = float(values.min()), float(values.max())
            out[field] = FloatDistribution(lo, hi, log=lo > 0 and hi / lo >= 100)
        else:
            out[field] = CategoricalDistribution(sorted(values.map(json_text).unique()))
    return out


def json_text(value) -> str:
    return str(list(value)) if isinstance(value, (list, tuple)) else str(value)


def _importances(points: pd.DataFrame, dists: dict, metric: str, mode: str) -> dict[str, float]:
    import optuna
    from optuna.trial import create_trial

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize" if mode == "max" else "minimize")
    for row in points.to_dict("records"):
        params = {f: (float(row[f]) if isinstance(d, optuna.distributions.FloatDistribution) else json_text(row[f]))
                  for f, d in dists.items()}
        study.add_trial(create_trial(params=params, distributions=dists, value=float(row[metric])))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PED-ANOVA is marked experimental
        evaluator = optuna.importance.PedAnovaImportanceEvaluator()
        return optuna.importance.get_param_importances(study, evaluator=evaluator, normalize=True)


def ped_anova(points: pd.DataFrame, fields: Sequence[str], metric: str, mode: str = "max",
              boots: int = BOOTSTRAP, seed: int = 0) -> pd.DataFrame:
    """Columns ``field``, ``importance`` (normalised to sum to 1), ``lo``, ``hi`` (95% bootstrap
    interval over points); most important first. Empty with fewer than 5 points or nothing varying."""
    data = points.dropna(subset=[metric]).reset_index(drop=True)
    dists = _distributions(data, fields) if len(data) >= 5 else {}
    if not dists:
        return pd.DataFrame(columns=["field", "importance", "lo", "hi"])
    full = _importances(data, dists, metric, mode)
    rng = np.random.default_rng(seed)
    draws = {f: [] for f in dists}
    for _ in range(boots):
        sample = data.iloc[rng.integers(0, len(data), len(data))]
        try:
            got = _importances(sample, dists, metric, mode)
        except Exception:  # noqa: BLE001 -- a resample without spread in the metric: skip it
            continue
        for f in dists:
            draws[f].append(got.get(f, 0.0))
    rows = [{"field": f, "importance": full.get(f, 0.0),
             "lo": float(np.percentile(draws[f], 2.5)) if draws[f] else math.nan,
             "hi": float(np.percentile(draws[f], 97.5)) if draws[f] else math.nan} for f in dists]
    return pd.DataFrame(rows).sort_values("importance", ascending=False).reset_index(drop=True)


__all__ = ["ped_anova", "BOOTSTRAP"]
