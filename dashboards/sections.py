"""What the report says, section by section, from a run frame (see :func:`compose`).

Selection discipline: the point the report *chooses* is the one :func:`ledger.rank_points` puts
first (the mean of the sweep's validation metric over repeats); every table ranks and compares
points on that metric, and test metrics appear only for the chosen point.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import pandas as pd

from ledger import Selection, rank_points

from . import checks, figures, inference, plots, stats
from .compare import matched
from .report import Section

TOP = 10


@dataclass
class Facts:
    """What the sections are built from; ``note`` is filled with the Markdown leaderboard."""

    name: str
    uri: str
    runs: pd.DataFrame
    parent: Optional[dict]
    selection: Selection
    history: pd.DataFrame
    out: Path
    with_plots: bool
    kernels: Optional[Path] = None
    against: Optional[tuple[str, pd.DataFrame]] = None
    note: str = ""
    figures: list = field(default_factory=list)


def _interval(lo, hi) -> str:
    return "–" if lo is None or (isinstance(lo, float) and math.isnan(lo)) else f"[{lo:.4f}, {hi:.4f}]"


def compose(f: Facts) -> tuple[list[Section], pd.DataFrame]:
    runs, selection, metric = f.runs, f.selection, f.selection.metric
    points = stats.per_point(runs)
    # Swept fields that took two values or more among the finished trials (one value: nothing to compare).
    done = stats.finished_trials(runs)
    swept = [s for s in stats.swept_fields(runs) if len(stats.ordered_labels(done[s].dropna())) > 1]
    ranked = rank_points(runs, selection)
    overview = Section("Overview")
    overview.text(f"Sweep {f.name}: {len(runs)} trial run(s) in {f.uri}, {len(points)} point(s) with finished "
                  f"trials; swept: {', '.join(swept) or 'nothing'}. Generated "
                  f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}.")
    if f.parent:
        overview.text(f"Latest submission: {f.parent['run_name']} ({f.parent['status']}), parent run "
                      f"{f.parent['run_id']}, {f.parent['submissions']} submission(s) in all.")
    overview.text(f"Selection: every 'best' in this report is the highest mean {selection.text} over a point's "
                  f"finished repeats (the sweep's selection rule). Test metrics are reported only for the chosen "
                  f"point: ranking on the test set would make its test accuracy optimistic.")
    overview.text("Intervals: 95% Student-t intervals over repeats. Repeat k of every point shares its seed (data "
                  "order, initial weights), so differences between points are paired by repeat.")
    sections = [overview]
    if ranked.empty:
        overview.text(f"No finished trial has {metric}: nothing can be chosen or compared"
                      + (" (set data.val_fraction > 0)." if len(stats.finished_trials(runs)) else "."))
        return [*sections, _states(runs)], points
    if not f.with_plots:
        overview.text("matplotlib is not installed: this report has tables only.")

    table = inference.trials(runs, swept, metric)
    if table.attrs["binned"]:
        overview.text(f"Fields with more than {inference.MAX_LEVELS} numeric values are analysed in "
                      f"{inference.BINS} quantile bins: {', '.join(table.attrs['binned'])}.")
    intervals = inference.point_intervals(table)
    noise_std, noise_df = inference.pooled_noise(table)
    chosen = ranked.index[0]
    chosen_row = points.set_index("point").loc[chosen]
    chosen_runs = stats.finished_trials(runs)[lambda d: d["point"] == chosen]

    sections.append(_chosen(f, chosen_row, chosen_runs, intervals.loc[chosen], swept))
    differences = pd.concat([inference.level_differences(table, s, swept) for s in swept], ignore_index=True) \
        if swept else pd.DataFrame(columns=["field", "a", "b", "contexts", "pairs", "diff", "lo", "hi"])
    for column in ("contexts", "pairs", "diff", "se", "lo", "hi", "df"):
        if column in differences:
            differences[column] = pd.to_numeric(differences[column])
    anova_table, notes, matters = _anova(f, table, points, swept, metric)
    p_values = dict(zip(anova_table.get("term", []), anova_table.get("p", [])))
    curve = stats.learning_curves(f.history, runs, "val_accuracy")
    curve = curve[curve["point"] == chosen] if len(curve) else None
    warnings = [*checks.edges(runs, chosen_row, swept, p_values), *checks.noise(noise_std, ranked, differences, metric),
                *checks.overfitting(chosen_runs, curve, noise_std)]
    section = Section("Checks")
    for line in warnings or ["Nothing to warn about: the chosen values are inside the grid, the top points differ by "
                             "more than the seed noise and the chosen point does not overfit."]:
        section.text(("Warning: " if warnings else "") + line)
    sections.append(section)

    sections.append(matters)
    sections.append(_differences(f, table, swept, differences, noise_std, noise_df, metric))
    sections.append(_leaderboard(ranked, intervals, points, metric))
    sections += _pictures(f, table, points, swept, chosen, metric)
    if f.against:
        sections.append(_against(f, swept, metric))
    sections.append(_states(runs))
    f.note = _note(f, ranked, intervals, chosen_row, chosen_runs, anova_table, warnings)
    return sections, points


def _chosen(f: Facts, row: pd.Series, runs: pd.DataFrame, interval: pd.Series, swept) -> Section:
    metric = f.selection.metric
    section = Section("Chosen point")
    section.text(f"{row['point_name']}: the best mean {metric} over {int(row['repeats'])} repeat(s).")
    section.table(pd.DataFrame({"field": swept, "value": [stats.label(row[s]) for s in swept]}))
    lines = []
    for name in dict.fromkeys([metric, "test_accuracy", "train_accuracy", "val_accuracy", "train_seconds"]):
        if name in runs.columns and runs[name].notna().any():
            values = runs[name].dropna()
            n = len(values)
            half = values.std(ddof=1) / math.sqrt(n) * inference._t(n - 1, inference.LEVEL) if n > 1 else math.nan
            lines.append({"metric": name, "mean": values.mean(), "95% interval": _interval(values.mean() - half,
                                                                                             values.mean() + half),
                          "repeats": n})
    section.table(pd.DataFrame(lines))
    section.text("test_accuracy is shown for this point only, measured once after it was chosen on validation.")
    if f.kernels is not None:
        section.image(f.kernels.name, f"First-layer kernels of {row['point_name']} (its best repeat on {metric}).")
    return section


def _anova(f: Facts, table, points, swept, metric):
    section = Section("Which knobs matter")
    anova_table, notes = inference.anova(table, swept)
    if anova_table.empty:
        section.text(notes[0] if notes else "Nothing to analyse.")
        return anova_table, notes, section
    section.text(f"Factorial ANOVA of {metric} per trial (type II sums of squares, statsmodels OLS; valid on "
                 f"unbalanced grids): main effects, two-way interactions and the repeat as a block. partial_eta2 = "
                 f"SS / (SS + SS_residual); partial_omega2 corrects it for chance; share = SS / total SS.")
    shown = anova_table.sort_values("sum_sq", ascending=False, key=lambda s: s.where(anova_table["term"] != "residual", -1))
    section.table(shown)
    for note in notes:
        section.text(note)
    significant = anova_table.dropna(subset=["p"])
    significant = significant[(significant["p"] < 0.05) & (significant["term"] != "repeat (block)")]
    significant = significant.sort_values("eta2_partial", ascending=False)
    if len(significant):
        section.text("Significant at 5%: " + "; ".join(
            f"{r.term} (p {_p(r.p)}, partial eta^2 {r.eta2_partial:.2f})" for r in significant.itertuples()) + ".")
    elif anova_table["p"].notna().any():
        section.text("No term is significant at 5%.")
    if (f.parent or {}).get("method") == "random" or len(points) < math.prod(table[s].nunique() for s in swept):
        imp = inference.importance(points, swept, metric)
        section.text("Variance-based importance over points (a main-effects ANOVA of the per-point means, numeric "
                     "fields with many values binned into quartiles): the share of the variance each field explains "
                     "alone. Used for random search and grids with missing points.")
        section.table(imp)
    return anova_table, notes, section


def _p(p: float) -> str:
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def _differences(f, table, swept, differences, noise_std, noise_df, metric) -> Section:
    section = Section("Differences between values")
    section.text(f"For each field, every two values a and b: the mean difference b - a in {metric} over matched "
                 f"points (the same values of the other fields, trained at both) and repeats, paired by repeat; "
                 f"the 95% t-interval comes from the pooled repeat-to-repeat spread of those differences "
                 f"(– with one repeat; per comparison, not adjusted for how many there are). Seed noise of one run: "
                 + ("unknown (one repeat)." if math.isnan(noise_std) else f"{noise_std:.4f} std ({noise_df} df)."))
    if len(differences):
        shown = differences.assign(interval=[_interval(lo, hi) for lo, hi in zip(differences["lo"], differences["hi"])])
        section.table(shown[["field", "a", "b", "contexts", "pairs", "diff", "interval"]])
    if f.with_plots and swept:
        means = {s: inference.level_means(table, s) for s in swept}
        figures.level_intervals(means, f.out / "levels.png", metric)
        f.figures.append("levels.png")
        section.image("levels.png", f"Mean {metric} over points at each value, with a 95% interval for the seed "
                                    f"noise (values in numeric order).")
    return section


def _leaderboard(ranked, intervals, points, metric) -> Section:
    top = ranked.head(TOP).join(intervals[["lo", "hi"]])
    extra = points.set_index("point")
    table = pd.DataFrame({"rank": range(1, len(top) + 1), "point": top["point_name"], "repeats": top["repeats"],
                          metric: top["score"], "95% interval": [_interval(lo, hi) for lo, hi in zip(top["lo"], top["hi"])],
                          "train_seconds": extra.loc[top.index, "train_seconds"],
                          "n_params": extra.loc[top.index, "n_params"] if "n_params" in extra else math.nan,
                          "forward_flops": extra.loc[top.index, "forward_flops"] if "forward_flops" in extra else math.nan})
    table = table.reset_index(drop=True)
    return Section(f"Leaderboard ({metric})").table(table).text(
        f"The {len(top)} best points by mean {metric} over repeats; no test metric: the test set chooses nothing.")


def _pictures(f, table, points, swept, chosen, metric) -> list[Section]:
    if not f.with_plots:
        return []
    out = []
    if len(swept) >= 2:
        figures.heatmaps(table, swept, f.out / "heatmaps.png", metric)
        out.append(Section("Pairs of knobs").image("heatmaps.png", f"Mean {metric} for every pair of swept fields, "
                                                                   f"averaged over the other fields."))
    figures.cost_fronts(points, f.out / "cost.png", metric, chosen)
    front = stats.pareto_front(points, "forward_flops", metric) if "forward_flops" in points else pd.DataFrame()
    section = Section("Accuracy against cost").image("cost.png", f"Mean {metric} against forward FLOPs, parameters "
                                                                 f"and training time; red: the Pareto front; ringed: "
                                                                 f"the chosen point.")
    if len(front):
        section.text("The Pareto front on FLOPs: no other point is both cheaper and better.")
        section.table(front.drop(columns=[c for c in ("point", f"{metric}_std") if c in front]))
    out.append(section)
    curves = stats.learning_curves(f.history, f.runs, "val_accuracy")
    if len(curves):
        plots.learning_curves(curves, f.out / "learning_curves.png")
        out.append(Section("Learning curves").image("learning_curves.png", f"Validation accuracy per epoch of the "
                                                                           f"{TOP} best points, mean over repeats."))
    if swept:
        figures.parallel(points, swept, f.out / "parallel.png", metric, chosen)
        out.append(Section("All points").image("parallel.png", f"Every point across the swept fields (values in "
                                                               f"order), coloured by mean {metric}; black: chosen."))
    f.figures += ["heatmaps.png", "cost.png", "learning_curves.png", "parallel.png"]
    return out


def _against(f: Facts, swept, metric) -> Section:
    other, runs_b = f.against
    section = Section(f"Compared with {other}")
    try:
        table, overall = matched(f.runs, runs_b, swept, metric)
    except ValueError as exc:
        return section.text(f"Cannot compare: {exc}.")
    section.text(f"Points matched by {', '.join(swept)}: {overall['points']} ({overall['only_a']} only in {f.name}, "
                 f"{overall['only_b']} only in {other}). Mean {metric} in {f.name} (a) and {other} (b), difference "
                 f"b - a with a 95% interval (paired by repeat where both ran the same seeds, else Welch).")
    if overall["points"]:
        section.text(f"Average difference over matched points: {overall['diff']:+.4f} "
                     f"{_interval(overall['lo'], overall['hi'])}.")
        shown = table.assign(interval=[_interval(lo, hi) for lo, hi in zip(table["lo"], table["hi"])])
        section.table(shown[["point_name", "a", "n_a", "b", "n_b", "diff", "interval", "paired"]])
    return section


def _states(runs: pd.DataFrame) -> Section:
    section = Section("Trial states").table(stats.state_counts(runs)).text(
        "runs: MLflow child runs per state; trials: (point, repeat) pairs, each counted once.")
    fails = stats.failures(runs)
    if len(fails):
        section.text("Failed and killed runs by reason (unresolved: not finished since):").table(fails)
    return section


def _note(f, ranked, intervals, row, chosen_runs, anova_table, warnings) -> str:
    """The short Markdown the parent run's description shows in MLflow's UI."""
    metric = f.selection.metric
    lines = [f"**Sweep report** (chosen by mean {metric} over repeats; full report: artifacts `report/report.html`)",
             "", f"| # | point | {metric} | 95% interval | repeats |", "|---|---|---|---|---|"]
    for i, (point, r) in enumerate(ranked.head(5).iterrows(), 1):
        iv = intervals.loc[point]
        lines.append(f"| {i} | {r['point_name']} | {r['score']:.4f} | {_interval(iv['lo'], iv['hi'])} | {r['repeats']} |")
    test = chosen_runs["test_accuracy"].mean() if "test_accuracy" in chosen_runs else math.nan
    lines += ["", f"Chosen: **{row['point_name']}**, test accuracy {test:.4f} (test looked at for this point only)."]
    if len(anova_table) and anova_table["p"].notna().any():
        sig = anova_table[(anova_table["p"] < 0.05) & ~anova_table["term"].isin(["residual", "repeat (block)"])]
        sig = sig.sort_values("eta2_partial", ascending=False)
        lines.append("Knobs that matter (ANOVA, p < 0.05): " + (", ".join(
            f"{t.term} (partial eta² {t.eta2_partial:.2f})" for t in sig.itertuples()) or "none") + ".")
    if warnings:
        lines.append(f"{len(warnings)} warning(s): see Checks in the report.")
    return "\n".join(lines)


__all__ = ["Facts", "TOP", "compose"]
