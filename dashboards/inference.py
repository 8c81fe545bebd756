"""How sure the report is: intervals over repeats, paired differences, factorial ANOVA, importance.

All functions take the *trial table* of :func:`trials` (one row per FINISHED trial: the swept
fields as value labels, ``repeat``, ``point``, and ``y`` = the selection metric), so they run on
any run frame :func:`ledger.frame.load_runs` returns, or on a hand-made one.

Noise model. A trial's value is ``y = mu_point + e``, where ``e`` is what the seed brings (data
order, initial weights). Repeat ``k`` of every point shares its seed (``sweeper.plan.points.
trial_seed``), so comparisons are *paired by repeat*: the part of ``e`` common to repeat ``k``
cancels in a difference. The intervals below are about this seed noise for the points that were
trained; they say nothing about points the grid left out.

* :func:`point_intervals`: Student-t interval of each point's mean over its repeats,
  ``mean +- t(1 - a/2, n - 1) * s / sqrt(n)``; none with a single repeat.
* :func:`level_differences`: for two values ``a``, ``b`` of a field, the mean over *contexts*
  (the same values of every other swept field, trained at both) of the paired differences
  ``d_ck = y(b, c, k) - y(a, c, k)``; its standard error from the pooled within-context variance
  of ``d_ck`` over repeats (``df = sum_c (n_c - 1)``), a t-interval. Unmatched points drop out,
  so excluded or infeasible points do not bias it.
* :func:`level_means`: each value's mean over its points, with the same pooled seed-noise interval.
* :func:`versus`: every point against one (the chosen point), ``d_pk = y(p, k) - y(chosen, k)``
  paired by repeat, the variance of ``d`` pooled over the points compared (as for contexts above).
* :func:`anova`: type II sums of squares of main effects and two-way interactions (plus the
  repeat as a block), by nested least-squares fits (statsmodels OLS) so that designs with empty
  cells (unbalanced grids) keep the right degrees of freedom; F tests against the full model's
  residual (scipy.stats), partial eta^2 = SS / (SS + SS_res), partial omega^2 =
  df (F - 1) / (df (F - 1) + N). With one repeat the residual holds the higher-order
  interactions and no seed noise: sums of squares only, no tests.
* :func:`importance`: share of the variance of the per-point means explained by each field
  alone (type II SS of a main-effects model / total SS), numeric fields with many values binned
  into quartiles: the variance-based importance for random search.
"""
from __future__ import annotations

import itertools
import math
from typing import Sequence

import numpy as np
import pandas as pd

from .stats import finished_trials, label, ordered_labels

LEVEL = 0.95
#: A numeric field with more values than this is analysed in :data:`BINS` quantile bins.
MAX_LEVELS, BINS = 8, 4


def _binned(values: pd.Series) -> tuple[pd.Series, list[str]]:
    """Quantile bins of a numeric column as labels ``"[lo, hi]"``, in ascending order."""
    numbers = pd.to_numeric(values, errors="coerce").astype(float)
    bins = pd.qcut(numbers, BINS, duplicates="drop")
    labels = {interval: f"[{numbers[bins == interval].min():.3g}, {numbers[bins == interval].max():.3g}]"
              for interval in bins.cat.categories}
    return bins.map(labels).astype(str), [labels[i] for i in bins.cat.categories]


def trials(runs: pd.DataFrame, fields: Sequence[str], metric: str) -> pd.DataFrame:
    """One row per FINISHED trial: ``point``, ``point_name``, the ``fields`` as labels, ``repeat``, ``y``.

    ``attrs["order"]``: each field's labels in natural order (numbers ascending); ``attrs["binned"]``:
    the numeric fields with more than :data:`MAX_LEVELS` values, whose labels are quantile bins."""
    done = finished_trials(runs)
    done = (done[done[metric].notna()] if metric in done.columns else done.iloc[0:0]).reset_index(drop=True)
    table = pd.DataFrame({"point": done["point"].astype(str), "point_name": done.get("point_name", done["point"]),
                          **{f: done[f].map(label) for f in fields},
                          "repeat": done["repeat"].astype("int64"),
                          "y": done[metric].astype("float64") if metric in done.columns else []})
    order, binned = {}, []
    for f in fields:
        order[f] = [v for v in ordered_labels(done[f]) if v in set(table[f])]
        if len(order[f]) > MAX_LEVELS and pd.api.types.is_numeric_dtype(done[f]):
            table[f], order[f] = _binned(done[f])
            binned.append(f)
    table.attrs.update(order=order, binned=binned)
    return table


def t_quantile(df: float, level: float) -> float:
    """The two-sided Student-t quantile of a ``level`` interval with ``df`` degrees of freedom (NaN for df <= 0)."""
    from scipy import stats

    return float(stats.t.ppf(0.5 + level / 2, df)) if df > 0 else math.nan


def point_intervals(table: pd.DataFrame, level: float = LEVEL) -> pd.DataFrame:
    """Per point: ``mean``, ``n``, ``std``, ``lo``, ``hi`` (t-interval; NaN with one repeat)."""
    groups = table.groupby("point", sort=False)["y"]
    out = pd.DataFrame({"point_name": table.groupby("point", sort=False)["point_name"].first(),
                        "mean": groups.mean(), "n": groups.size(), "std": groups.std(ddof=1)})
    half = out["std"] / np.sqrt(out["n"]) * out["n"].map(lambda n: t_quantile(n - 1, level))
    out["lo"], out["hi"] = out["mean"] - half, out["mean"] + half
    return out


def pooled_noise(table: pd.DataFrame) -> tuple[float, int]:
    """``(s, df)``: the seed noise of one trial, pooled over points (std within points)."""
    centred = table["y"] - table.groupby("point")["y"].transform("mean")
    df = int(len(table) - table["point"].nunique())
    return (math.sqrt(float((centred ** 2).sum()) / df) if df > 0 else math.nan), df


def level_means(table: pd.DataFrame, field: str, level: float = LEVEL) -> pd.DataFrame:
    """Per value of ``field`` (natural order): ``points``, ``mean`` of the point means, ``lo``/``hi``."""
    s, df = pooled_noise(table)
    means = table.groupby("point", sort=False).agg(value=(field, "first"), y=("y", "mean"), n=("y", "size"))
    rows = []
    for value in [v for v in table.attrs["order"][field] if v in set(means["value"])]:
        mine = means[means["value"] == value]
        se = s * math.sqrt(float((1 / mine["n"]).sum())) / len(mine)
        half = se * t_quantile(df, level)
        rows.append({field: value, "points": len(mine), "mean": mine["y"].mean(), "lo": mine["y"].mean() - half,
                     "hi": mine["y"].mean() + half})
    return pd.DataFrame(rows, columns=[field, "points", "mean", "lo", "hi"])


def level_differences(table: pd.DataFrame, field: str, fields: Sequence[str], level: float = LEVEL) -> pd.DataFrame:
    """Paired differences between every two values ``a < b`` of ``field`` (see the module docstring).

    Columns: ``field``, ``a``, ``b``, ``contexts`` (matched), ``pairs`` (matched trials),
    ``diff`` (b - a), ``se``, ``lo``, ``hi``, ``df``. Intervals are NaN with one repeat.
    """
    others = [f for f in fields if f != field]
    key = (table[others].astype(str).agg("|".join, axis=1) if others else pd.Series("", index=table.index))
    wide = table.assign(context=key).pivot_table(index=["context", "repeat"], columns=field, values="y",
                                                 aggfunc="mean")
    order = [v for v in table.attrs["order"][field] if v in wide.columns]
    rows = []
    for a, b in itertools.combinations(order, 2):
        d = (wide[b] - wide[a]).dropna()
        if d.empty:
            rows.append({"field": field, "a": a, "b": b, "contexts": 0, "pairs": 0})
            continue
        by_context = d.groupby(level="context")
        n_c, mean_c = by_context.size(), by_context.mean()
        df = int((n_c - 1).sum())
        ss = float(((d - mean_c.reindex(d.index.get_level_values("context")).to_numpy()) ** 2).sum())
        s2 = ss / df if df > 0 else math.nan
        se = math.sqrt(s2 * float((1 / n_c).sum())) / len(n_c) if df > 0 else math.nan
        diff = float(mean_c.mean())
        half = se * t_quantile(df, level)
        rows.append({"field": field, "a": a, "b": b, "contexts": len(n_c), "pairs": len(d), "diff": diff,
                     "se": se, "lo": diff - half, "hi": diff + half, "df": df})
    return pd.DataFrame(rows, columns=["field", "a", "b", "contexts", "pairs", "diff", "se", "lo", "hi", "df"])


def versus(table: pd.DataFrame, point: str, level: float = LEVEL) -> pd.DataFrame:
    """Every other point against ``point``, paired by repeat (see the module docstring).

    Indexed by ``point``: ``pairs`` (repeats both have), ``diff`` (mean of ``y(p) - y(point)``
    over them), ``lo``, ``hi`` (t-interval; NaN with one repeat). ``point`` itself is left out.
    """
    wide = table.pivot_table(index="repeat", columns="point", values="y", aggfunc="mean")
    columns = ["pairs", "diff", "lo", "hi"]
    if point not in wide.columns:
        return pd.DataFrame(columns=columns, index=pd.Index([], name="point"))
    d = wide.drop(columns=point).sub(wide[point], axis=0)
    n = d.notna().sum()
    mean = d.mean()
    df = int((n[n > 0] - 1).sum())
    ss = float(((d - mean) ** 2).sum().sum())
    s = math.sqrt(ss / df) if df > 0 else math.nan
    half = s / np.sqrt(n.where(n > 0)) * t_quantile(df, level)
    out = pd.DataFrame({"pairs": n, "diff": mean, "lo": mean - half, "hi": mean + half})
    out.index.name = "point"
    return out[out["pairs"] > 0]


# ---------------------------------------------------------------------------------------------
# ANOVA


def _design(frame: pd.DataFrame, fields: Sequence[str], interactions: bool, block: bool):
    """Treatment-coded design matrix and ``{term name: column indices}`` (patsy), fields renamed
    to safe names ``x0, x1, ...``."""
    import patsy

    safe = {f: f"x{i}" for i, f in enumerate(fields)}
    data = frame.rename(columns=safe)
    terms = [f"C({safe[f]})" for f in fields]
    pairs = [(a, b) for a, b in itertools.combinations(fields, 2)] if interactions else []
    formula = " + ".join([*terms, *(f"C({safe[a]}):C({safe[b]})" for a, b in pairs),
                          *(["C(repeat)"] if block else [])]) or "1"
    matrix = patsy.dmatrix(formula, data, return_type="dataframe")
    names = {**{f"C({safe[f]})": f for f in fields}, **{f"C({safe[a]}):C({safe[b]})": f"{a} x {b}" for a, b in pairs},
             "C(repeat)": "repeat (block)"}
    slices = {names[t.name()]: list(range(s.start, s.stop)) for t, s in matrix.design_info.term_slices.items()
              if t.name() != "Intercept"}
    return matrix.to_numpy(), slices


def _fit(y: np.ndarray, x: np.ndarray) -> tuple[float, int]:
    """(residual sum of squares, rank) of the least-squares fit of ``y`` on ``x`` (statsmodels OLS;
    it solves with the pseudo-inverse, so empty cells only lower the rank)."""
    import warnings

    import statsmodels.api as sm

    with warnings.catch_warnings():  # empty cells make the design rank-deficient: expected, handled by the rank
        warnings.simplefilter("ignore")
        fit = sm.OLS(y, x).fit()
    return float(fit.ssr), int(fit.df_model + 1 if fit.k_constant else fit.df_model)


def anova(table: pd.DataFrame, fields: Sequence[str], interactions: bool = True) -> tuple[pd.DataFrame, list[str]]:
    """Type II ANOVA of ``y`` on ``fields`` (+ two-way interactions, + the repeat as a block).

    Returns ``(table, notes)``: one row per term, then ``residual``: ``term``, ``df``,
    ``sum_sq``, ``F``, ``p``, ``eta2_partial``, ``omega2_partial``, ``share`` (SS / total SS).
    ``notes`` say what could not be estimated (F and p are NaN then).
    """
    notes: list[str] = []
    fields = [f for f in fields if table[f].nunique() > 1]
    columns = ["term", "df", "sum_sq", "F", "p", "eta2_partial", "omega2_partial", "share"]
    if not fields or len(table) < 3:
        return pd.DataFrame(columns=columns), ["nothing to analyse: fewer than two values of every field, or no trials"]
    repeated = table.groupby("point")["y"].size().max() > 1
    block = repeated and table["repeat"].nunique() > 1
    y = table["y"].to_numpy(float)
    x, slices = _design(table, fields, interactions, block)
    ss_res, rank = _fit(y, x)
    df_res = len(y) - rank
    if interactions and df_res <= 0:
        notes.append("too few trials for two-way interactions: main effects only")
        return _finish(anova(table, fields, interactions=False), notes)
    ss_total = float(((y - y.mean()) ** 2).sum())
    ms_res = ss_res / df_res if df_res > 0 else math.nan
    rows = []
    for term, cols in slices.items():
        parts = term.split(" x ")
        # Type II: the term against every other term that does not contain it.
        keep = [c for t, cs in slices.items() if t != term and not (len(parts) == 1 and parts[0] in t.split(" x "))
                for c in cs]
        base = [0, *keep]
        ss_without, rank_without = _fit(y, x[:, base])
        ss_with, rank_with = _fit(y, x[:, sorted([*base, *cols])])
        df, ss = rank_with - rank_without, max(ss_without - ss_with, 0.0)
        if df == 0:
            notes.append(f"{term}: not estimable, the points trained cannot tell it apart from the other terms "
                         f"(infeasible or excluded combinations)")
            continue
        row = {"term": term, "df": df, "sum_sq": ss, "share": ss / ss_total if ss_total else math.nan}
        if repeated and df > 0 and df_res > 0:
            from scipy import stats

            f = (ss / df) / ms_res
            row.update(F=f, p=float(stats.f.sf(f, df, df_res)), eta2_partial=ss / (ss + ss_res),
                       omega2_partial=max(df * (f - 1) / (df * (f - 1) + len(y)), 0.0))
        rows.append(row)
    rows.append({"term": "residual", "df": df_res, "sum_sq": ss_res, "share": ss_res / ss_total if ss_total else math.nan})
    if not repeated:
        notes.append("one repeat per point: the seed noise cannot be told apart from three-way and higher "
                     "interactions, so there are no F tests, p-values, effect sizes or intervals; only each "
                     "term's share of the variance. Run with repeats: 2 or more.")
    return _finish((pd.DataFrame(rows, columns=columns), []), notes)


def _finish(result, notes):
    frame, more = result
    return frame, [*notes, *more]


def importance(points: pd.DataFrame, fields: Sequence[str], metric: str, bins: int = 4,
               max_levels: int = 6) -> pd.DataFrame:
    """Variance share of each field in the per-point means of ``metric`` (main-effects model).

    ``points``: one row per point with the raw field values (:func:`dashboards.stats.per_point`).
    A numeric field with more than ``max_levels`` values is cut into ``bins`` quantile bins.
    Columns: ``field``, ``levels`` (as modelled), ``share`` (type II SS / total SS), ``df``;
    largest share first. The shares need not add up to 1 on unbalanced designs.
    """
    data = points.dropna(subset=[metric])
    frame = pd.DataFrame({"y": data[metric].to_numpy(float), "point": range(len(data)), "repeat": 0})
    levels = {}
    for f in fields:
        values = data[f]
        numeric = pd.api.types.is_numeric_dtype(values)
        if numeric and values.nunique() > max_levels:
            frame[f] = pd.qcut(values.astype(float), bins, duplicates="drop").astype(str).to_numpy()
        else:
            frame[f] = values.map(label).to_numpy()
        levels[f] = frame[f].nunique()
    frame.attrs["order"] = {f: sorted(frame[f].unique()) for f in fields}
    table, _ = anova(frame, fields, interactions=False)
    rows = [{"field": f, "levels": levels[f], "share": float(table.loc[table["term"] == f, "share"].iloc[0])
             if (table["term"] == f).any() else math.nan,
             "df": int(table.loc[table["term"] == f, "df"].iloc[0]) if (table["term"] == f).any() else 0}
            for f in fields]
    return pd.DataFrame(rows, columns=["field", "levels", "share", "df"]).sort_values(
        "share", ascending=False, na_position="last").reset_index(drop=True)


__all__ = ["LEVEL", "anova", "importance", "level_differences", "level_means", "point_intervals", "pooled_noise",
           "t_quantile", "trials", "versus"]
