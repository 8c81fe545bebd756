"""Comparisons of a sweep's points: pure functions from DataFrames to DataFrames.

Two stages, so that a point trained three times weighs as much as a point trained once:
:func:`per_point` averages a point's FINISHED repeats, and every comparison after it
(:func:`by_value`, :func:`marginal_effects`, :func:`pivot`, :func:`best_points`,
:func:`pareto_front`) works on those per-point rows. :func:`state_counts` and :func:`failures`
read the run frame itself, every status included.

Input: a run frame as :func:`ledger.frame.load_runs` makes it (a hand-made frame needs
``run_id``, ``run_name``, ``status``, ``point``, ``repeat``, ``start_time``, the metrics and the
hyperparameter columns; the rest is optional).

Values are grouped by a text *label* (:func:`label`), ordered naturally (numbers ascending,
then text, then lists): a field such as ``padding`` mixes 0 and ``"same"``, which pandas can
neither sort nor, for list values like ``dense``, hash.
"""
from __future__ import annotations

import json
import math
import numbers
from typing import Iterable, Optional, Sequence

import numpy as np
import pandas as pd

from ledger import rules
from ledger.frame import FINAL_METRICS, LECTURE_KNOBS, RUN_COLUMNS

#: What the per-value tables summarise by default.
SUMMARY_METRICS = ("test_accuracy", "val_accuracy", "train_seconds", "n_params")
STATS = ("mean", "std", "min", "max", "count")
#: Display order of run states; anything else follows.
STATES = ("FINISHED", "RUNNING", "SCHEDULED", "FAILED", "KILLED", "DUPLICATE")


def label(value) -> str:
    """Text of one hyperparameter value: ``3``, ``0.001``, ``same``, ``[128, 64]``, ``n/a``."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return json.dumps(list(value))
    return str(value)


def _sort_key(value):
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return (3, 0, "")
    # numbers.Real, not (int, float): an Int64 column yields numpy integers, which would sort as text (16 < 4).
    if isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)):
        return (0, value, "")
    if isinstance(value, (list, tuple)):
        return (2, len(value), json.dumps(list(value)))
    return (1, 0, str(value))


def ordered_labels(values: Iterable) -> list[str]:
    """Distinct labels of ``values`` in natural order (3 < 5 < 7 < same; 0.001 < 0.01)."""
    firsts: dict[str, object] = {}
    for value in values:
        firsts.setdefault(label(value), value)
    return sorted(firsts, key=lambda text: _sort_key(firsts[text]))


def swept_fields(frame: pd.DataFrame) -> list[str]:
    """The fields a sweep varies: ``frame.attrs["swept"]`` when the loader set it, else the
    lecture knobs and other hyperparameter columns with more than one value."""
    if frame.attrs.get("swept"):
        return [f for f in frame.attrs["swept"] if f in frame.columns]
    candidates = frame.attrs.get("hyperparameters") or [
        c for c in frame.columns if c not in RUN_COLUMNS and c not in FINAL_METRICS
        and c not in ("n_params", "forward_flops", "repeats", "best_run_id") and not c.endswith("_std")]
    fields = [c for c in candidates if c in frame.columns and len(ordered_labels(frame[c])) > 1]
    return sorted(fields, key=lambda f: LECTURE_KNOBS.index(f) if f in LECTURE_KNOBS else len(LECTURE_KNOBS))


def finished_trials(runs: pd.DataFrame) -> pd.DataFrame:
    """The run deciding each finished ``(point, repeat)`` (:mod:`ledger.rules`), same columns as ``runs``."""
    return rules.deciding_rows(runs)


def per_point(runs: pd.DataFrame, metrics: Optional[Sequence[str]] = None) -> pd.DataFrame:
    """One row per point over its finished trials, in the order the points first started.

    Columns: ``point``, ``point_name``, every hyperparameter column and ``n_params``,
    ``forward_flops`` (a point's own: the first run's), ``repeats`` (finished trials), then for
    each metric (default: those of :data:`FINAL_METRICS` present) the mean over repeats under
    the metric's name and the std over repeats as ``<metric>_std`` (NaN with one repeat), and
    ``best_run_id`` (the repeat with the highest test accuracy). ``attrs["swept"]`` is kept.
    """
    done = finished_trials(runs)
    metrics = [m for m in (metrics or FINAL_METRICS) if m in done.columns]
    constant = [c for c in done.columns if c not in RUN_COLUMNS and c not in metrics
                and c not in (runs.attrs.get("metrics") or ())]
    groups = done.groupby("point", sort=False)
    out = groups[["point_name", *constant]].first() if len(done) else pd.DataFrame(columns=["point_name", *constant])
    out["repeats"] = groups.size()
    means, stds = groups[metrics].mean(), groups[metrics].std(ddof=1)
    for metric in metrics:
        out[metric] = means[metric]
        out[f"{metric}_std"] = stds[metric]
    if "test_accuracy" in done.columns and len(done):
        best = done.loc[done["test_accuracy"].fillna(-math.inf).groupby(done["point"], sort=False).idxmax()]
        out["best_run_id"] = best.set_index("point")["run_id"]
    else:
        out["best_run_id"] = pd.Series(dtype="str")
    out = out.reset_index().rename(columns={"index": "point"})
    out.attrs["swept"] = swept_fields(runs)
    return out


def by_value(points: pd.DataFrame, field: str, metrics: Sequence[str] = SUMMARY_METRICS) -> pd.DataFrame:
    """Per-point metrics grouped by the value of ``field``: mean, std, min, max, count over points.

    Index: the value labels (named ``field``), in natural order. Columns: a MultiIndex
    ``(metric, stat)`` with stats :data:`STATS` (``count`` = points with that metric).
    """
    metrics = [m for m in metrics if m in points.columns]
    order = ordered_labels(points[field])
    grouped = points[metrics].groupby(points[field].map(label).rename(field), sort=False)
    table = grouped.agg(list(STATS)).reindex(order)
    table.index.name = field
    return table


def marginal_effects(points: pd.DataFrame, fields: Optional[Sequence[str]] = None,
                     metric: str = "test_accuracy") -> pd.DataFrame:
    """How far each field's value moves the mean ``metric``, largest first.

    One row per field (default: the five lecture knobs, then any other swept field). Columns:
    ``field``, ``levels`` (distinct values; 1: not swept, 0: not recorded), ``best`` and
    ``best_mean``, ``worst`` and ``worst_mean`` (value labels and their mean over points),
    ``effect`` = ``best_mean - worst_mean`` (NaN when fewer than two levels). Marginal means
    over an unbalanced grid (excluded or infeasible points) mix in the other fields' effects.
    """
    fields = list(dict.fromkeys(fields or [*LECTURE_KNOBS, *swept_fields(points)]))
    rows = []
    for field in fields:
        if field not in points.columns or points.empty:
            rows.append({"field": field, "levels": 0})
            continue
        means = by_value(points, field, [metric])[(metric, "mean")].dropna()
        if means.empty:
            rows.append({"field": field, "levels": 0})
            continue
        best, worst = means.idxmax(), means.idxmin()
        rows.append({"field": field, "levels": len(means), "best": best, "best_mean": means[best],
                     "worst": worst, "worst_mean": means[worst],
                     "effect": means[best] - means[worst] if len(means) > 1 else math.nan})
    table = pd.DataFrame(rows, columns=["field", "levels", "best", "best_mean", "worst", "worst_mean", "effect"])
    table = table.sort_values("effect", ascending=False, na_position="last", kind="stable")
    return table.reset_index(drop=True)


def pivot(points: pd.DataFrame, rows: str, columns: str, metric: str = "test_accuracy") -> pd.DataFrame:
    """Mean ``metric`` over points for each pair of values: index ``rows`` labels, columns
    ``columns`` labels, both in natural order; NaN where no point has that pair."""
    labelled = pd.DataFrame({rows: points[rows].map(label), columns: points[columns].map(label),
                             metric: points[metric]})
    table = labelled.pivot_table(index=rows, columns=columns, values=metric, aggfunc="mean", dropna=False)
    return table.reindex(index=ordered_labels(points[rows]), columns=ordered_labels(points[columns]))


def best_points(points: pd.DataFrame, n: int = 10, metric: str = "test_accuracy") -> pd.DataFrame:
    """The top ``n`` points by mean ``metric`` (ties: fewer FLOPs first), ranked from 1.

    Columns: ``point_name``, the swept fields (labels), ``repeats``, ``metric`` and
    ``<metric>_std``, ``val_accuracy``, ``train_seconds``, ``n_params``, ``forward_flops``,
    ``point``, ``best_run_id`` (those present). Index ``rank``.
    """
    if "forward_flops" in points.columns:
        keys, ascending = [metric, "forward_flops"], [False, True]
    else:
        keys, ascending = [metric], [False]
    top = points.dropna(subset=[metric]).sort_values(keys, ascending=ascending, kind="stable").head(n)
    fields = swept_fields(points)
    wanted = ["point_name", *fields, "repeats", metric, f"{metric}_std", "val_accuracy", "train_seconds",
              "n_params", "forward_flops", "point", "best_run_id"]
    table = top[[c for c in dict.fromkeys(wanted) if c in top.columns]].copy()
    for field in fields:
        table[field] = table[field].map(label)
    table.index = pd.RangeIndex(1, len(table) + 1, name="rank")
    return table


def pareto_front(points: pd.DataFrame, cost: str = "forward_flops", metric: str = "test_accuracy") -> pd.DataFrame:
    """The points no other point beats on both ``cost`` (lower) and ``metric`` (higher), by cost.

    Columns: ``point_name``, ``cost``, ``metric``, ``<metric>_std``, ``n_params``,
    ``train_seconds``, ``point`` (those present). Of points with equal cost and metric only the
    first is kept; points missing either value are left out.
    """
    ranked = points.dropna(subset=[cost, metric]).sort_values([cost, metric], ascending=[True, False], kind="stable")
    keep, best = [], -math.inf
    for index, value in ranked[metric].items():  # cheapest first: on the front iff it beats all cheaper
        if value > best:
            keep.append(index)
            best = value
    wanted = ["point_name", cost, metric, f"{metric}_std", "n_params", "train_seconds", "point"]
    front = ranked.loc[keep, [c for c in dict.fromkeys(wanted) if c in ranked.columns]]
    return front.reset_index(drop=True)


def _state(runs: pd.DataFrame) -> pd.Series:
    duplicate = runs["duplicate"].astype(bool) if "duplicate" in runs.columns else False
    return runs["status"].where(~duplicate, "DUPLICATE")


def _key_state(runs: pd.DataFrame) -> pd.Series:
    """Per ``(point, repeat)``: FINISHED if a non-duplicate run finished, else the state of its
    latest run (duplicates only decide when nothing else exists)."""
    state = _state(runs)
    rank = state.map(lambda s: 0 if s == "FINISHED" else (2 if s == "DUPLICATE" else 1))
    ordered = runs.assign(state=state, rank=rank).sort_values(["rank", "start_time"], ascending=[True, False])
    return ordered.drop_duplicates(["point", "repeat"]).set_index(["point", "repeat"])["state"]


def state_counts(runs: pd.DataFrame) -> pd.DataFrame:
    """Runs and trials per state, then a ``total`` row.

    Columns: ``state`` (a run status, or DUPLICATE for a run KILLED as a duplicate), ``runs``
    (runs in that state) and ``trials`` (``(point, repeat)`` keys whose deciding run is in that
    state, see :func:`_key_state`; a trial retried after a failure counts once, as FINISHED).
    """
    runs_per = _state(runs).value_counts()
    trials_per = _key_state(runs).value_counts() if len(runs) else pd.Series(dtype="int64")
    states = [s for s in STATES if s in runs_per.index] + sorted(set(runs_per.index) - set(STATES))
    table = pd.DataFrame({"state": states, "runs": [int(runs_per.get(s, 0)) for s in states],
                          "trials": [int(trials_per.get(s, 0)) for s in states]})
    total = pd.DataFrame({"state": ["total"], "runs": [len(runs)], "trials": [int(trials_per.sum())]})
    return pd.concat([table, total], ignore_index=True)


def failures(runs: pd.DataFrame, examples: int = 3) -> pd.DataFrame:
    """FAILED and KILLED runs (not duplicates) grouped by status and reason, most frequent first.

    Columns: ``status``, ``reason``, ``runs``, ``unresolved`` (of those, runs whose trial has
    no finished run yet) and ``examples`` (the first ``examples`` run names, "; "-joined).
    """
    state = _state(runs)
    bad = runs[state.isin(["FAILED", "KILLED"])]
    columns = ["status", "reason", "runs", "unresolved", "examples"]
    if bad.empty:
        return pd.DataFrame(columns=columns)
    key_state = _key_state(runs)
    unresolved = [key_state.get((p, r)) != "FINISHED" for p, r in zip(bad["point"], bad["repeat"])]
    reason = bad["status_reason"].fillna("") if "status_reason" in bad.columns else pd.Series("", index=bad.index)
    frame = pd.DataFrame({"status": bad["status"], "reason": reason.replace("", "(no reason recorded)"),
                          "unresolved": unresolved, "run_name": bad["run_name"]})
    table = frame.groupby(["status", "reason"], sort=False).agg(
        runs=("run_name", "size"), unresolved=("unresolved", "sum"),
        examples=("run_name", lambda names: "; ".join(list(names)[:examples])))
    table = table.reset_index().sort_values("runs", ascending=False, kind="stable").reset_index(drop=True)
    return table.astype({"runs": "int64", "unresolved": "int64"})[columns]


def learning_curves(history: pd.DataFrame, runs: pd.DataFrame, metric: str = "val_accuracy") -> pd.DataFrame:
    """Mean ``metric`` per point and epoch over the point's finished trials.

    ``history`` as :func:`ledger.frame.load_history` returns it. Columns: ``point``,
    ``point_name``, ``epoch``, ``mean``, ``std`` (over repeats), ``repeats``.
    """
    done = finished_trials(runs)[["run_id", "point", "point_name"]]
    curves = history[history["metric"] == metric].merge(done, on="run_id")
    table = curves.groupby(["point", "point_name", "epoch"], sort=False)["value"].agg(
        mean="mean", std="std", repeats="count").reset_index()
    return table.astype({"epoch": "int64", "repeats": "int64"})


__all__ = ["STATES", "STATS", "SUMMARY_METRICS", "best_points", "by_value", "failures", "finished_trials", "label",
           "learning_curves", "marginal_effects", "ordered_labels", "pareto_front", "per_point", "pivot",
           "state_counts", "swept_fields"]
