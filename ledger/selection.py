"""The one rule that says which point of a sweep is best: by a validation metric, never by test.

A sweep's points are ranked by the mean of the *selection metric* over their FINISHED repeats
(``val_accuracy``, higher is better, unless the sweep file's ``selection`` section says
otherwise); ties go to the cheaper point (fewer forward FLOPs), then to the point that started
first. Test metrics are looked at only for the point this rule chose: choosing on the test set
would make the reported test accuracy an optimistic estimate.

Used by the report (:mod:`dashboards`), by ``sweeper status`` and by the live progress line, so
all three name the same point. Pure functions on the run frame of :func:`ledger.frame.load_runs`
(or on plain numbers); nothing here reads or writes MLflow.

The parent run records the rule it was run with in the tags :data:`METRIC_TAG` and
:data:`MODE_TAG` (see :func:`selection_tags`).

**Several objectives** (the sweep file's ``objectives:``, recorded in :data:`OBJECTIVES_TAG`): a
point is on the Pareto front when no other point is at least as good on every objective (mean
over its repeats) and better on one (:func:`non_dominated`). The chosen point is the best by the
selection metric *among the front*. The sweep file makes the selection metric one of the
objectives, so this is the selection metric's best point, ties going to the one no tied point
dominates: a user asking for accuracy and speed gets the most accurate point, and of equally
accurate ones the faster.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Iterable, Mapping, Optional, Sequence

from .schema import OBJECTIVES as OBJECTIVES_TAG, SELECTION_METRIC as METRIC_TAG, SELECTION_MODE as MODE_TAG  # noqa: E402


@dataclass(frozen=True)
class Selection:
    """Which metric chooses, and whether higher (``max``) or lower (``min``) is better;
    ``objectives``: ``((metric, mode), ...)`` of a sweep with several (the choice is then made
    among the Pareto front of these), else empty."""

    metric: str = "val_accuracy"
    mode: str = "max"
    objectives: tuple = ()

    def __post_init__(self):
        if self.mode not in ("max", "min"):
            raise ValueError(f"selection mode must be max or min, not {self.mode!r}")
        object.__setattr__(self, "objectives", tuple((str(m), str(d)) for m, d in self.objectives))
        if any(d not in ("max", "min") for _, d in self.objectives):
            raise ValueError(f"objective modes must be max or min: {self.objectives!r}")

    def better(self, value: float, than: Optional[float]) -> bool:
        """True when ``value`` beats ``than`` (anything beats None or NaN; NaN beats nothing)."""
        if value is None or _nan(value):
            return False
        if than is None or _nan(than):
            return True
        return value > than if self.mode == "max" else value < than

    @property
    def text(self) -> str:
        return f"{self.metric} ({'higher' if self.mode == 'max' else 'lower'} is better)"


DEFAULT = Selection()


#: Parts of a metric's name that make lower better: losses and costs (time, FLOPs, size, memory).
LOWER_IS_BETTER = ("loss", "seconds", "flops", "params", "rss")


def natural_mode(metric: str) -> str:
    """``min`` for losses and costs (:data:`LOWER_IS_BETTER`), ``max`` for anything else."""
    return "min" if any(part in metric for part in LOWER_IS_BETTER) else "max"


def selection_tags(selection: Selection) -> dict[str, str]:
    tags = {METRIC_TAG: selection.metric, MODE_TAG: selection.mode}
    if selection.objectives:
        tags[OBJECTIVES_TAG] = json.dumps([list(o) for o in selection.objectives])
    return tags


def selection_from_tags(tags: Mapping[str, str]) -> Selection:
    """The rule a parent run recorded; :data:`DEFAULT` for runs logged before there was one."""
    metric = tags.get(METRIC_TAG) or DEFAULT.metric
    try:
        objectives = tuple(tuple(o) for o in json.loads(tags.get(OBJECTIVES_TAG) or "[]"))
        return Selection(metric, tags.get(MODE_TAG) or natural_mode(metric), objectives)
    except (ValueError, TypeError):  # a tag edited by hand: one objective, as before there were several
        return Selection(metric, tags.get(MODE_TAG) or natural_mode(metric))


def non_dominated(values, modes: Sequence[str]):
    """The Pareto front of ``values`` ``(n, k)``, one column per objective, ``modes`` ``max`` or
    ``min`` each: a boolean mask ``(n,)``, True where no other row is at least as good on every
    column and better on one. Rows with a NaN are never on the front (and dominate nothing)."""
    import numpy as np

    x = np.asarray(values, dtype=float).reshape(len(values), len(modes))
    x = np.where(np.array([m == "max" for m in modes]), -x, x)  # every column: lower is better
    finite = ~np.isnan(x).any(axis=1)
    y = x[finite]
    # dominated[i]: some j is <= on every column and < on one (O(n^2 k), n in the thousands at most)
    le = (y[:, None, :] <= y[None, :, :]).all(axis=2)  # le[j, i]: j at least as good as i everywhere
    lt = (y[:, None, :] < y[None, :, :]).any(axis=2)
    dominated = (le & lt).any(axis=0)
    mask = np.zeros(len(x), dtype=bool)
    mask[np.flatnonzero(finite)[~dominated]] = True
    return mask


def _nan(value) -> bool:
    try:
        return math.isnan(value)
    except TypeError:
        return value is None


def best_mean(scores: Mapping[str, Iterable[float]], selection: Selection = DEFAULT) -> Optional[tuple[str, float]]:
    """``(name, mean)`` of the best entry of ``{name: [values of its repeats]}`` by mean value.

    For callers holding plain numbers (the live progress line): the same rule as
    :func:`rank_points` without the cost tie-break. None when no entry has a value.
    """
    best = None
    for name, values in scores.items():
        values = [float(v) for v in values if v is not None and not _nan(v)]
        if values:
            mean = sum(values) / len(values)
            if best is None or selection.better(mean, best[1]):
                best = (name, mean)
    return best


def rank_points(runs, selection: Selection = DEFAULT):
    """Points ranked best first by the mean selection metric over their FINISHED repeats.

    ``runs``: a run frame (:func:`ledger.frame.load_runs`; needs ``point``, ``status``,
    ``repeat``, ``start_time``, ``run_id`` and the metric columns). Duplicates and runs of other
    states are left out; of several FINISHED runs of one ``(point, repeat)`` the earliest counts.

    Returns a DataFrame indexed by ``point`` with ``point_name``, ``repeats``, ``score`` (the
    mean selection metric), ``score_std`` and ``forward_flops`` (when present), sorted best
    first (ties: fewer FLOPs, then earlier start). Points without the metric are left out: an
    empty frame when the sweep logged no such metric (``val_fraction: 0``).

    With ``selection.objectives`` also ``front`` (on the Pareto front of the objectives' means)
    and each objective's mean under its name; the first row is the best on the front: among
    equal scores the front comes first, and when the selection metric is not an objective
    (a rule given by hand) the front comes before everything else.
    """
    import pandas as pd

    done = runs[runs["status"] == "FINISHED"]
    if "duplicate" in done.columns:
        done = done[~done["duplicate"].astype(bool)]
    done = done.sort_values(["start_time", "run_id"]).drop_duplicates(["point", "repeat"], keep="first")
    if selection.metric not in done.columns:
        done = done.assign(**{selection.metric: math.nan})
    done = done.dropna(subset=[selection.metric])
    groups = done.groupby("point", sort=False)
    table = pd.DataFrame({
        "point_name": groups["point_name"].first() if "point_name" in done.columns else groups.size().index,
        "repeats": groups.size(),
        "score": groups[selection.metric].mean(),
        "score_std": groups[selection.metric].std(ddof=1),
        "forward_flops": (groups["forward_flops"].first().astype("float64") if "forward_flops" in done.columns
                          else math.nan),
        "order": range(groups.ngroups),
    })
    keys, ascending = ["score", "forward_flops", "order"], [selection.mode == "min", True, True]
    if selection.objectives:
        names = [m for m, _ in selection.objectives]
        means = groups[[m for m in names if m in done.columns]].mean().reindex(columns=names)
        table = table.join(means.drop(columns=[c for c in means.columns if c in table.columns]))
        table["front"] = non_dominated(means.reindex(table.index).to_numpy(), [d for _, d in selection.objectives])
        at = 1 if selection.metric in names else 0
        keys.insert(at, "front")
        ascending.insert(at, False)
    table = table.sort_values(keys, ascending=ascending, kind="stable", na_position="last")
    return table.drop(columns="order")


def choose_point(runs, selection: Selection = DEFAULT) -> Optional[str]:
    """The point hash :func:`rank_points` puts first, or None when nothing has the metric."""
    ranked = rank_points(runs, selection)
    return None if ranked.empty else ranked.index[0]


__all__ = ["DEFAULT", "LOWER_IS_BETTER", "METRIC_TAG", "MODE_TAG", "OBJECTIVES_TAG", "Selection", "best_mean",
           "choose_point", "non_dominated", "selection_from_tags", "natural_mode", "rank_points", "selection_tags"]
