"""Two sweeps over the same knobs, side by side: ``sweeper report A --against B``.

Points are matched by the values of the swept fields of A (B may have run them with other
epochs, data or optimizer). For each matched point: the mean selection metric in A and in B and
the difference ``B - A`` with a 95% interval: paired by repeat (a t-interval of the per-repeat
differences) when both ran the same repeats with the same trial seeds, else Welch's unequal
variance t-interval (scipy.stats.ttest_ind). The average difference over matched points gets a
t-interval over the per-repeat averages when every match is paired (a seed effect shared by a
whole repeat is a real source of difference between two sweeps), else none.
"""
from __future__ import annotations

import math
from typing import Sequence

import pandas as pd

from .inference import LEVEL, t_quantile
from .stats import finished_trials, label


def _keyed(runs: pd.DataFrame, fields: Sequence[str], metric: str) -> pd.DataFrame:
    done = finished_trials(runs).dropna(subset=[metric])
    key = done[list(fields)].apply(lambda row: " ".join(f"{f}={label(row[f])}" for f in fields), axis=1)
    return pd.DataFrame({"key": key, "point_name": done["point_name"], "repeat": done["repeat"].astype(int),
                         "seed": done.get("trial_seed", pd.Series(math.nan, index=done.index)), "y": done[metric]})


def matched(runs_a: pd.DataFrame, runs_b: pd.DataFrame, fields: Sequence[str], metric: str,
            level: float = LEVEL) -> tuple[pd.DataFrame, dict]:
    """``(table, overall)``: one row per matched point (``point_name``, ``a``, ``n_a``, ``b``,
    ``n_b``, ``diff``, ``lo``, ``hi``, ``paired``), best in A first; ``overall``: ``points``,
    ``diff``, ``lo``, ``hi`` over matched points, ``only_a``, ``only_b`` (unmatched counts)."""
    from scipy import stats

    missing = [f for f in fields if f not in runs_b.columns]
    if missing:
        raise ValueError(f"the other sweep does not record {', '.join(missing)}")
    a, b = _keyed(runs_a, fields, metric), _keyed(runs_b, fields, metric)
    rows, table_keys = [], []
    for key in a["key"].unique():
        ya, yb = a[a["key"] == key], b[b["key"] == key]
        if yb.empty:
            continue
        pairs = ya.merge(yb, on="repeat", suffixes=("_a", "_b"))
        paired = len(pairs) >= 2 and len(pairs) == len(ya) == len(yb) and (pairs["seed_a"] == pairs["seed_b"]).all()
        diff = yb["y"].mean() - ya["y"].mean()
        if paired:
            d = pairs["y_b"] - pairs["y_a"]
            half = d.std(ddof=1) / math.sqrt(len(d)) * t_quantile(len(d) - 1, level)
            lo, hi = diff - half, diff + half
        elif len(ya) >= 2 and len(yb) >= 2:
            interval = stats.ttest_ind(yb["y"], ya["y"], equal_var=False).confidence_interval(level)
            lo, hi = float(interval.low), float(interval.high)
        else:
            lo = hi = math.nan
        table_keys.append(key)
        rows.append({"point_name": ya["point_name"].iloc[0], "a": ya["y"].mean(), "n_a": len(ya), "b": yb["y"].mean(),
                     "n_b": len(yb), "diff": diff, "lo": lo, "hi": hi, "paired": bool(paired)})
    table = pd.DataFrame(rows, columns=["point_name", "a", "n_a", "b", "n_b", "diff", "lo", "hi", "paired"])
    table = table.sort_values("a", ascending=False).reset_index(drop=True)
    mean = float(table["diff"].mean()) if len(table) else math.nan
    half = math.nan
    if len(table) and table["paired"].all():
        # Per repeat k, the mean difference over matched points: a seed effect shared by every
        # point of repeat k (one sweep luckier than the other) stays in the interval.
        both = a[a["key"].isin(table_keys)].merge(b, on=["key", "repeat"], suffixes=("_a", "_b"))
        per_repeat = (both["y_b"] - both["y_a"]).groupby(both["repeat"]).mean()
        if len(per_repeat) > 1:
            half = per_repeat.std(ddof=1) / math.sqrt(len(per_repeat)) * t_quantile(len(per_repeat) - 1, level)
    overall = {"points": len(table), "diff": mean, "lo": mean - half, "hi": mean + half,
               "only_a": int(a["key"].nunique() - len(table)), "only_b": int(len(set(b["key"]) - set(a["key"])))}
    return table, overall


__all__ = ["matched"]
