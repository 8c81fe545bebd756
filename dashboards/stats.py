"""Comparisons of a sweep's points: pure functions from DataFrames to DataFrames.

Two stages, so that a point trained three times weighs as much as a point trained once:
:func:`per_point` averages a point's FINISHED repeats, and comparisons after it (the Pareto
front of :func:`pareto_front`, the report's statistics in :mod:`dashboards.inference`) work on
those per-point rows. :func:`state_counts` and :func:`failures` read the run frame itself, every
status included. Whatever is called "best" follows the sweep's :class:`ledger.Selection` (a
validation metric and its direction), which every such function takes: there is no default
metric, so nothing here can rank on the test set by accident.

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

from ledger import Selection, rules
from ledger.frame import FINAL_METRICS, LECTURE_KNOBS, RUN_COLUMNS

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


def per_point(runs: pd.DataFrame, selection: Selection, metrics: Optional[Sequence[str]] = None) -> pd.DataFrame:
    """One row per point over its finished trials, in the order the points first started.

    Columns: ``point``, ``point_name``, every hyperparameter column and ``n_params``,
    ``forward_flops`` (a point's own: the first run's), ``repeats`` (finished trials), then for
    each metric (default: those of :data:`FINAL_METRICS` present) the mean over repeats under
    the metric's name and the std over repeats as ``<metric>_std`` (NaN with one repeat), and
    ``best_run_id``: the repeat that is best by ``selection`` (the first of equals; none when no
    repeat has the selection metric). ``attrs["swept"]`` is kept.
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
    out["best_run_id"] = best_runs(done, selection)
    out = out.reset_index().rename(columns={"index": "point"})
    out.attrs["swept"] = swept_fields(runs)
    return out


def best_runs(done: pd.DataFrame, selection: Selection) -> pd.Series:
    """Per point (index), the ``run_id`` of its repeat that is best by ``selection``; ties go to
    the run that started first. ``done``: finished trials (:func:`finished_trials`)."""
    if selection.metric not in done.columns or done.empty:
        return pd.Series(dtype="str")
    scored = done.dropna(subset=[selection.metric]).sort_values(
        [selection.metric, "start_time"], ascending=[selection.mode == "min", True], kind="stable")
    return scored.drop_duplicates("point").set_index("point")["run_id"]


def pareto_front(points: pd.DataFrame, cost: str, selection: Selection) -> pd.DataFrame:
    """The points no other point beats on both ``cost`` (lower) and the selection metric (better
    by ``selection``), cheapest first.

    Columns: ``point_name``, ``cost``, the metric, ``<metric>_std``, ``n_params``,
    ``train_seconds``, ``point`` (those present). Of points with equal cost and metric only the
    first is kept; points missing either value are left out.
    """
    metric = selection.metric
    ranked = points.dropna(subset=[cost, metric]).sort_values([cost, metric], ascending=[True, selection.mode == "min"],
                                                              kind="stable")
    keep, best = [], None
    for index, value in ranked[metric].items():  # cheapest first: on the front iff it beats all cheaper
        if selection.better(value, best):
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


def learning_curves(history: pd.DataFrame, runs: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Mean ``metric`` per point and epoch over the point's finished trials.

    ``history`` as :func:`ledger.frame.load_history` returns it. Columns: ``point``,
    ``point_name``, ``epoch``, ``mean``, ``std`` (over repeats), ``repeats``.
    """
    done = finished_trials(runs)[["run_id", "point", "point_name"]]
    curves = history[history["metric"] == metric].merge(done, on="run_id")
    table = curves.groupby(["point", "point_name", "epoch"], sort=False)["value"].agg(
        mean="mean", std="std", repeats="count").reset_index()
    return table.astype({"epoch": "int64", "repeats": "int64"})


__all__ = ["STATES", "best_runs", "failures", "finished_trials", "label", "learning_curves", "ordered_labels",
           "pareto_front", "per_point", "state_counts", "swept_fields"]
