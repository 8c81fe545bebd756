"""The report, section by section: :func:`compose` runs the builders of :data:`SECTIONS` in order.

Each builder takes the :class:`~dashboards.analysis.Facts` and the
:class:`~dashboards.analysis.Findings` (both frozen) and returns its sections; builders that
draw write their PNG into ``facts.out``. A new kind of analysis (a Pareto front for several
objectives, importance for non-grid searches) is one more builder in :data:`SECTIONS`.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import pandas as pd

from . import budget, figures, inference, stats
from .analysis import TOP, Facts, Findings, analyse
from .compare import matched
from .conclusion import conclusion
from .document import Section, interval, markdown_item, number
from ledger.tracking import shown_uri
from .front import pareto
from .nextsweep import changes


@dataclass(frozen=True)
class Report:
    """What :func:`compose` returns: the sections, the per-point table, the note for MLflow, and
    the next sweep file's text (None when the advice is to stop)."""

    sections: tuple[Section, ...]
    points: pd.DataFrame
    note: str
    next_yaml: str | None


def chosen_point(f: Facts, found: Findings) -> list[Section]:
    row = found.chosen_row
    section = Section("Chosen point")
    among = " on the Pareto front of the objectives" if f.selection.objectives else ""
    section.text(f"{row['point_name']}: the best mean {f.selection.metric}{among} over {int(row['repeats'])} "
                 f"repeat(s).")
    section.table(pd.DataFrame({"field": list(found.swept), "value": [stats.label(row[s]) for s in found.swept]}))
    metrics = found.choice.metrics
    shown = metrics.assign(**{"95% interval": [interval(lo, hi) for lo, hi in zip(metrics["lo"], metrics["hi"])]})
    section.table(shown[["metric", "mean", "95% interval", "repeats"]])
    section.text("test_accuracy is shown for this point only, measured once after it was chosen on validation"
                 + ("." if row["repeats"] > 1 else "; with one repeat there is no interval (– above)."))
    if f.with_plots and f.kernels is not None:
        w = f.kernels
        figures.kernels(w, f.out / "kernels.png", f"{row['point_name']}: first-layer kernels, {w.shape[0]} filter(s) x "
                                                  f"{w.shape[1]} channel(s), {w.shape[2]}x{w.shape[3]}; colour: weight")
        section.image("kernels.png", f"First-layer kernels of {row['point_name']} (its best repeat on "
                                     f"{f.selection.metric}), all on one colour scale centred at 0.")
    return [section]


def early_stopping(f: Facts, found: Findings) -> list[Section]:
    """Where early stopping ended the trials, when it ended any."""
    said = budget.describe(found.stopping) if found.stopping is not None else None
    if said is None:
        return []
    section = Section("Early stopping").text(said[0].upper() + said[1:])
    ended = found.stopping["stopped"].map({True: "stopped early", False: "ran to the end"})
    section.table(found.stopping.assign(ended=ended)[["epoch", "trials", "ended"]])
    if found.effects is not None and found.effects.epoch:
        section.text(f"The knob analysis below (ANOVA, means, differences, next sweep, pairs of knobs) compares "
                     f"every trial at epoch {found.effects.epoch}, the epoch every trial reached; the chosen point "
                     f"and the leaderboard rank the final values (ledger/selection.py).")
    return [section]


def knobs(f: Facts, found: Findings) -> list[Section]:
    section = Section("Which knobs matter")
    table = found.effects.anova
    if table.empty:
        return [section.text(found.effects.notes[0] if found.effects.notes else "Nothing to analyse.")]
    measure = found.effects.measure(f.selection.metric)
    section.text(f"Factorial ANOVA of {measure} per trial (type II sums of squares, statsmodels OLS; "
                 f"valid on unbalanced grids): main effects, two-way interactions and the repeat as a block. "
                 f"partial_eta2 = SS / (SS + SS_residual); partial_omega2 corrects it for chance; "
                 f"share = SS / total SS. " + budget.sentence(f.selection.metric, found.effects.epoch))
    section.table(table.sort_values("sum_sq", ascending=False, key=lambda s: s.where(table["term"] != "residual", -1)))
    for note in found.effects.notes:
        section.text(note)
    significant = table.dropna(subset=["p"])
    significant = significant[(significant["p"] < 0.05) & (significant["term"] != "repeat (block)")]
    if len(significant):
        section.text("Significant at 5%: " + "; ".join(
            f"{r.term} (p {number(r.p, 'p')}, partial eta² {number(r.eta2_partial, 'ratio')})"
            for r in significant.sort_values("eta2_partial", ascending=False).itertuples()) + ".")
    elif table["p"].notna().any():
        section.text("No term is significant at 5%.")
    grid, points = math.prod(found.effects.table[s].nunique() for s in found.swept), found.effects.points
    if (f.parent or {}).get("method") == "random" or len(points) < grid:
        section.text("Variance-based importance over points (a main-effects ANOVA of the per-point means, numeric "
                     "fields with many values binned into quartiles): the share of the variance each field explains "
                     "alone. Used for random search and grids with missing points.")
        section.table(inference.importance(points, list(found.swept), f.selection.metric))
    if (f.parent or {}).get("method") in ("random", "sobol", "tpe"):
        from .importance import BOOTSTRAP, ped_anova

        table = ped_anova(points, list(found.swept), f.selection.metric, f.selection.mode)
        if len(table):
            section.text(f"PED-ANOVA importance (Optuna's evaluator; needs no factorial design): how differently "
                         f"each knob is spread among the best 10% of the points than among all of them, normalised "
                         f"to sum to 1, with a 95% bootstrap interval over points ({BOOTSTRAP} resamples).")
            section.table(table)
    return [section]


def values(f: Facts, found: Findings) -> list[Section]:
    metric, noise = found.effects.measure(f.selection.metric), found.effects.noise
    verdicts = {k.field: k for k in found.advice.knobs} if found.advice else {}
    rows = []
    for field, means in found.effects.means.items():
        knob = verdicts.get(field)
        for r in means.to_dict("records"):
            value = r[field]
            mark = ("" if knob is None else "best" if value == knob.best else
                    "" if not found.noise_known else "tie" if value in knob.tied else "worse")
            rows.append({"field": field, "value": value, "points": r["points"], "mean": r["mean"],
                         "95% interval": interval(r["lo"], r["hi"]), "vs best": mark})
    means = Section("Means by value")
    means.text(f"Mean {metric} over the points at each value of each knob, with a 95% interval for the seed noise "
               + ("(pooled over points; none with one repeat). " if not found.noise_known else "(pooled over points). ")
               + "vs best: the value that beats the most others over matched points in the next table, and whether "
                 "each other value ties with it (their paired difference holds 0) or is worse beyond the noise. Where "
                 "the grid skipped points (excluded or infeasible) the plain means here mix in the other knobs' "
                 "effects and may rank values differently; the matched differences compare like with like. "
               + budget.sentence(f.selection.metric, found.effects.epoch))
    if rows:
        means.table(pd.DataFrame(rows))
    if f.with_plots and found.swept:
        figures.level_intervals(dict(found.effects.means), f.out / "levels.png", metric, found.effects.numeric)
        means.image("levels.png", f"Mean {metric} at each value; numeric knobs joined in order, categorical knobs as "
                                  f"separate points" + (", each with its 95% interval." if found.noise_known else
                                                        " (no intervals: one repeat per point)."))
    section = Section("Differences between values")
    section.text(f"For each field, every two values a and b: the mean difference b - a in {metric} over matched "
                 f"points (the same values of the other fields, trained at both) and repeats, paired by repeat; "
                 f"the 95% t-interval comes from the pooled repeat-to-repeat spread of those differences "
                 f"(– with one repeat; per comparison, not adjusted for how many there are). Seed noise of one run: "
                 + ("unknown (one repeat)." if math.isnan(noise[0]) else f"{noise[0]:.4f} std ({noise[1]} df)."))
    d = found.effects.differences
    if len(d):
        shown = d.assign(interval=[interval(lo, hi, "signed") for lo, hi in zip(d["lo"], d["hi"])])
        section.table(shown[["field", "a", "b", "contexts", "pairs", "diff", "interval"]])
    return [means, section]


def leaderboard(f: Facts, found: Findings) -> list[Section]:
    metric = f.selection.metric
    top = found.ranked.head(TOP).join(found.choice.intervals[["lo", "hi"]])
    extra = found.points.set_index("point")
    versus = found.choice.versus.reindex(top.index)
    tie = ["chosen" if p == found.chosen else "tie" if lo <= 0 <= hi else ""
           for p, lo, hi in zip(top.index, versus["lo"], versus["hi"])]
    table = pd.DataFrame({
        "rank": range(1, len(top) + 1), "point": top["point_name"], "repeats": top["repeats"], metric: top["score"],
        "95% interval": [interval(lo, hi) for lo, hi in zip(top["lo"], top["hi"])],
        "vs chosen": [("" if p == found.chosen else number(d, "signed") + ("" if interval(lo, hi) == "–" else
                                                                         " " + interval(lo, hi, "signed")))
                      for p, d, lo, hi in zip(top.index, versus["diff"], versus["lo"], versus["hi"])],
        "tie": tie,
        **{c: extra.loc[top.index, c] for c in ("train_seconds", "n_params", "forward_flops") if c in extra}})
    return [Section(f"Leaderboard ({metric})").table(table.reset_index(drop=True)).text(
        f"The {len(top)} best points by mean {metric} over repeats; vs chosen: the difference to the chosen point, "
        f"paired by repeat, with its 95% interval; tie: that interval holds 0. No test metric: the test set chooses "
        f"nothing.")]


def next_sweep(f: Facts, found: Findings) -> list[Section]:
    if found.advice is None:
        return []
    section = Section("Next sweep")
    at = f"at epoch {found.effects.epoch}, the epoch every trial reached; " if found.effects.epoch else ""
    section.text(f"Per knob, what the tables above say ({at}largest effect first). Advice: {found.advice.verdict}.")
    section.items(k.reason for k in found.advice.knobs)
    if found.next_yaml:
        section.text(f"Written to {f.out / 'next.yaml'} (the sweep as it ran, with these changes):")
        section.items(changes(found.next_yaml))
    elif found.next_problem:
        section.text(f"No next sweep file: {found.next_problem}.")
    return [section]


def checks(f: Facts, found: Findings) -> list[Section]:
    lines = found.warnings or ("Nothing to warn about: the top points differ by more than the seed noise and the "
                               "chosen point does not overfit.",)
    return [Section("Checks").items(("Warning: " if found.warnings else "") + line for line in lines)]


def pictures(f: Facts, found: Findings) -> list[Section]:
    if not f.with_plots:
        return []
    metric, out, swept, points = f.selection.metric, [], list(found.swept), found.points
    if len(swept) >= 2:
        measure = found.effects.measure(metric)
        figures.heatmaps(found.effects.table, swept, f.out / "heatmaps.png", measure)
        out.append(Section("Pairs of knobs").image("heatmaps.png", f"Mean {measure} for every pair of swept fields, "
                                                                   f"averaged over the other fields" + (
            f"; epoch {found.effects.epoch} is the epoch every trial reached." if found.effects.epoch
            else ".")))
    figures.cost_fronts(points, f.out / "cost.png", f.selection, found.chosen)
    section = Section("Accuracy against cost").image("cost.png", f"Mean {metric} against forward FLOPs, parameters "
                                                                 f"and training time; red: the Pareto front; ringed: "
                                                                 f"the chosen point.")
    front = stats.pareto_front(points, "forward_flops", f.selection) if "forward_flops" in points else pd.DataFrame()
    if len(front):
        section.text("The Pareto front on FLOPs: no other point is both cheaper and better.")
        section.table(front.drop(columns=[c for c in ("point", f"{metric}_std") if c in front]))
    out.append(section)
    curves = stats.learning_curves(f.history, f.runs, metric)
    if len(curves):
        figures.learning_curves(curves, f.out / "learning_curves.png", f.selection)
        out.append(Section("Learning curves").image("learning_curves.png", f"{metric} per epoch of the {TOP} best "
                                                                           f"points, mean over repeats."))
    if swept:
        figures.parallel(points, swept, f.out / "parallel.png", metric, found.chosen)
        out.append(Section("All points").image("parallel.png", f"Every point across the swept fields (values in "
                                                               f"order), coloured by mean {metric}; black: chosen."))
    return out


def against(f: Facts, found: Findings) -> list[Section]:
    if not f.against:
        return []
    (other, runs_b), metric, swept = f.against, f.selection.metric, list(found.swept)
    section = Section(f"Compared with {other}")
    try:
        table, overall = matched(f.runs, runs_b, swept, metric)
    except ValueError as exc:
        return [section.text(f"Cannot compare: {exc}.")]
    section.text(f"Points matched by {', '.join(swept)}: {overall['points']} ({overall['only_a']} only in {f.name}, "
                 f"{overall['only_b']} only in {other}). Mean {metric} in {f.name} (a) and {other} (b), difference "
                 f"b - a with a 95% interval (paired by repeat where both ran the same seeds, else Welch).")
    if overall["points"]:
        section.text(f"Average difference over matched points: {number(overall['diff'], 'signed')} "
                     f"{interval(overall['lo'], overall['hi'], 'signed')}.")
        shown = table.assign(interval=[interval(lo, hi, "signed") for lo, hi in zip(table["lo"], table["hi"])])
        section.table(shown[["point_name", "a", "n_a", "b", "n_b", "diff", "interval", "paired"]])
    return [section]


def about(f: Facts, found: Findings) -> list[Section]:
    runs, selection = f.runs, f.selection
    section = Section("About this report")
    section.text(f"Sweep {f.name}: {len(runs)} trial run(s) in {shown_uri(f.uri)}, {len(found.points)} point(s) with finished "
                 f"trials; swept: {', '.join(found.swept) or 'nothing'}. Generated "
                 f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}.")
    if f.parent:
        section.text(f"Latest submission: {f.parent['run_name']} ({f.parent['status']}), parent run "
                     f"{f.parent['run_id']}, {f.parent['submissions']} submission(s) in all.")
    section.text(f"Selection: every 'best' in this report is the best mean {selection.text} over a point's finished "
                 f"repeats (the sweep's selection rule, ledger/selection.py). Test metrics are reported only for the "
                 f"chosen point: ranking on the test set would make its test accuracy optimistic.")
    section.text("Intervals: 95% Student-t intervals over repeats. Repeat k of every point shares its seed (data "
                 "order, initial weights), so differences between points are paired by repeat."
                 + ("" if found.noise_known else " This sweep has one repeat per point: intervals need repeats, so "
                                                 "none is shown."))
    binned = found.effects.table.attrs["binned"] if found.effects else []
    if binned:
        section.text(f"Fields with more than {inference.MAX_LEVELS} numeric values are analysed in "
                     f"{inference.BINS} quantile bins: {', '.join(binned)}.")
    if not f.with_plots:
        section.text("matplotlib is not installed: this report has tables only.")
    return [section]


def states(f: Facts, found: Findings) -> list[Section]:
    section = Section("Trial states").table(stats.state_counts(f.runs)).text(
        "runs: MLflow child runs per state; trials: (point, repeat) pairs, each counted once.")
    fails = stats.failures(f.runs)
    if len(fails):
        section.text("Failed and killed runs by reason (unresolved: not finished since):").table(fails)
    return [section]


#: The report's sections in order; those in :data:`NEED_A_CHOICE` only when a point was chosen.
SECTIONS = (conclusion, chosen_point, pareto, early_stopping, knobs, values, leaderboard, next_sweep, checks, pictures, against, about,
            states)
NEED_A_CHOICE = {chosen_point, pareto, knobs, values, leaderboard, next_sweep, checks, pictures, against}


def note(f: Facts, found: Findings, lead: Section) -> str:
    """The short Markdown the parent run's description shows in MLflow's UI: the conclusion and
    the top five points."""
    metric = f.selection.metric
    lines = [f"**Sweep report** (chosen by mean {metric} over repeats; full report: artifacts `report/report.html`)",
             ""]
    lines += [f"- {markdown_item(*item)}" for block in lead.blocks if block[0] == "items" for item in block[1]]
    lines += ["", f"| # | point | {metric} | 95% interval | repeats |", "|---|---|---|---|---|"]
    for i, (point, r) in enumerate(found.ranked.head(5).iterrows(), 1):
        iv = found.choice.intervals.loc[point]  # ranked is empty when there is no choice
        shown = interval(iv["lo"], iv["hi"])
        lines.append(f"| {i} | {r['point_name']} | {r['score']:.4f} | {shown} | {r['repeats']} |")
    if found.chosen is not None:
        test = found.choice.metrics.set_index("metric")["mean"].get("test_accuracy", math.nan)
        lines += ["", f"Chosen: **{found.chosen_row['point_name']}**, test accuracy {test:.4f} "
                      f"(test looked at for this point only)."]
    return "\n".join(lines)


def compose(facts: Facts) -> Report:
    found = analyse(facts)
    builders = [b for b in SECTIONS if found.chosen is not None or b not in NEED_A_CHOICE]
    sections = tuple(s for build in builders for s in build(facts, found))
    return Report(sections, found.points, note(facts, found, sections[0]), found.next_yaml)


__all__ = ["NEED_A_CHOICE", "Report", "SECTIONS", "compose"]
