"""What the report is built from (:class:`Facts`) and what it finds in it (:class:`Findings`).

Both are frozen: :func:`analyse` computes every table once, and each section of the report
(:mod:`dashboards.sections`), its conclusion (:mod:`dashboards.conclusion`) and the next sweep
file read the same tables, so the words at the top cannot disagree with the tables below.

Selection discipline: the point the report *chooses* is the one :func:`ledger.rank_points`
puts first (the mean of the sweep's validation metric over repeats); every table ranks and
compares points on that metric, and test metrics appear only for the chosen point.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Optional

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from ledger import Selection, rank_points

from . import budget, checks, inference, stats
from .advice import Advice, advise
from .nextsweep import NextSweepError, SweepFile, next_sweep

#: Points shown in the leaderboard and drawn as learning curves.
TOP = 10
DIFFERENCE_COLUMNS = ["field", "a", "b", "contexts", "pairs", "diff", "se", "lo", "hi", "df"]


def _no_history() -> pd.DataFrame:
    return pd.DataFrame(columns=["run_id", "epoch", "metric", "value"])


@dataclass(frozen=True)
class Facts:
    """The sweep as read from the ledger (or made by hand): its runs, the rule that chooses, the
    folder the report goes to, and what the pictures and the next sweep file need."""

    name: str
    uri: str
    runs: pd.DataFrame
    selection: Selection
    out: Path
    parent: Optional[Mapping] = None
    history: pd.DataFrame = field(default_factory=_no_history)  # the best points' per-epoch metric
    with_plots: bool = False
    kernels: Optional[np.ndarray] = None  # first-layer weights (F, C, kh, kw) of the chosen point's best repeat
    sweep: Optional[SweepFile] = None  # the sweep file the last submission ran with
    against: Optional[tuple[str, pd.DataFrame]] = None  # another sweep's name and runs, to compare with
    # every finished trial's per-epoch selection metric (load_history's columns), loaded when early
    # stopping ended trials at different epochs: the knob analysis reads them at a common epoch
    epochs: Optional[pd.DataFrame] = None


@dataclass(frozen=True)
class Choice:
    """The chosen point and how the others compare with it."""

    ranked: pd.DataFrame  # ledger.rank_points: best first
    chosen: str  # the chosen point's hash
    intervals: pd.DataFrame  # inference.point_intervals
    versus: pd.DataFrame  # inference.versus the chosen point
    metrics: pd.DataFrame  # the chosen point's metrics: metric, mean, lo, hi, repeats
    curve: Optional[pd.DataFrame] = None  # its mean learning curve


@dataclass(frozen=True)
class Effects:
    """What each swept knob does to the selection metric: at ``epoch`` for every trial when early
    stopping ended trials at different epochs (:mod:`dashboards.budget`), else its final value."""

    table: pd.DataFrame  # inference.trials, y at `epoch` (or final)
    noise: tuple[float, int]  # pooled seed std of one trial, its df (NaN, 0 with one repeat)
    differences: pd.DataFrame  # inference.level_differences of every swept knob
    anova: pd.DataFrame
    notes: tuple[str, ...]  # what the ANOVA could not estimate
    means: Mapping[str, pd.DataFrame]  # per knob, inference.level_means
    numeric: frozenset  # knobs whose values are numbers (ordered, joined in plots)
    points: pd.DataFrame  # stats.per_point at `epoch` (or final): for importance over points
    epoch: Optional[int] = None  # the common budget: the largest epoch every analysed trial reached

    def measure(self, metric: str) -> str:
        """``val_accuracy`` or ``val_accuracy at epoch 3``: what the knob tables compare."""
        return budget.measure(metric, self.epoch)


@dataclass(frozen=True)
class Findings:
    """Every table the report shows, computed once; ``choice`` and ``effects`` are None when no
    finished trial has the selection metric."""

    points: pd.DataFrame  # stats.per_point
    swept: tuple[str, ...]  # swept fields with two values or more among finished trials
    ranked: pd.DataFrame  # ledger.rank_points: best first (empty when nothing can be chosen)
    choice: Optional[Choice] = None
    effects: Optional[Effects] = None
    advice: Optional[Advice] = None
    warnings: tuple[str, ...] = ()
    next_yaml: Optional[str] = None  # the next sweep file's text (None: the advice is to stop, or see next_problem)
    next_problem: Optional[str] = None  # why no next sweep file was written although the advice moves the grid
    stopping: Optional[pd.DataFrame] = None  # budget.stopping: finished trials per epoch trained

    @property
    def chosen(self) -> Optional[str]:
        return self.choice.chosen if self.choice else None

    @property
    def noise_known(self) -> bool:
        return self.effects is not None and not math.isnan(self.effects.noise[0])

    @property
    def chosen_row(self) -> pd.Series:
        return self.points.set_index("point").loc[self.chosen]


def _chosen_metrics(runs: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Mean and 95% t-interval over the chosen point's repeats of the selection metric, test
    accuracy, train accuracy and training time (NaN intervals with one repeat)."""
    rows = []
    for name in dict.fromkeys([metric, "test_accuracy", "train_accuracy", "val_accuracy", "train_seconds"]):
        if name in runs.columns and runs[name].notna().any():
            values = runs[name].dropna()
            n = len(values)
            t = inference.t_quantile(n - 1, inference.LEVEL)
            half = values.std(ddof=1) / math.sqrt(n) * t if n > 1 else math.nan
            rows.append({"metric": name, "mean": values.mean(), "lo": values.mean() - half,
                         "hi": values.mean() + half, "repeats": n})
    return pd.DataFrame(rows, columns=["metric", "mean", "lo", "hi", "repeats"])


def _next_sweep(facts: Facts, advice: Optional[Advice]) -> tuple[Optional[str], Optional[str]]:
    if advice is None or advice.verdict == "stop":
        return None, None
    if facts.sweep is None:
        return None, "the ledger holds no sweep file for this sweep"
    try:
        text = next_sweep(facts.sweep, advice, facts.name, str(facts.out / "report.html"))
    except NextSweepError as exc:
        return None, str(exc)
    return text, None if text else "the advice changes nothing the sweep file can say"


def analyse(facts: Facts) -> Findings:
    """Every table of the report, once. On one BLAS thread: the least-squares fits are small,
    and BLAS threads only contend for the cores with each other and with whatever else runs."""
    with threadpool_limits(1):
        return _analyse(facts)


def _analyse(facts: Facts) -> Findings:
    runs, selection, metric = facts.runs, facts.selection, facts.selection.metric
    points = stats.per_point(runs, selection)
    done = stats.finished_trials(runs)
    swept = tuple(s for s in stats.swept_fields(runs) if len(stats.ordered_labels(done[s].dropna())) > 1)
    ranked = rank_points(runs, selection)
    if ranked.empty:
        return Findings(points, swept, ranked, stopping=budget.stopping(runs, metric))
    stopping = budget.stopping(runs, metric)
    epoch = budget.common_epoch(runs, metric)
    knob_runs = budget.at_epoch(runs, facts.epochs, metric, epoch) if epoch and facts.epochs is not None else runs
    final = inference.trials(runs, swept, metric)  # the choice and the ranking: final values, ledger.selection
    table = inference.trials(knob_runs, swept, metric)  # the knobs: at the common budget
    noise = inference.pooled_noise(table)
    chosen = ranked.index[0]
    differences = pd.concat([inference.level_differences(table, s, swept) for s in swept], ignore_index=True) \
        if swept else pd.DataFrame(columns=DIFFERENCE_COLUMNS)
    for column in ("contexts", "pairs", "diff", "se", "lo", "hi", "df"):
        differences[column] = pd.to_numeric(differences[column])
    anova, notes = inference.anova(table, list(swept))
    means = {s: inference.level_means(table, s) for s in swept}
    binned = set(table.attrs["binned"])
    raw = {s: {} for s in swept}
    for s in swept:
        for value in done[s].dropna():
            raw[s].setdefault(stats.label(value), value)
        if s in binned:
            raw[s] = {v: v for v in table.attrs["order"][s]}
    numeric = frozenset(s for s in swept if s not in binned and all(
        isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))
        for v in raw[s].values()))
    mine = final[final["point"] == chosen]
    chosen_runs = done[done["point"] == chosen]
    curve = stats.learning_curves(facts.history, runs, metric)
    curve = curve[curve["point"] == chosen] if len(curve) else None
    chosen_labels = {s: mine[s].iloc[0] for s in swept}
    advice = advise(selection, swept, means, differences, anova, not math.isnan(noise[0]), raw, chosen_labels,
                    sorted(binned), int(points["repeats"].max())) if swept else None
    final_noise = inference.pooled_noise(final)
    # The gap between the top points against the final values' noise; the knobs' differences against
    # the noise at their own budget (the one-repeat sentence only once).
    warnings = (*checks.noise(final_noise[0], ranked, differences.iloc[0:0], metric),
                *(checks.noise(noise[0], ranked.iloc[0:1], differences, metric)[int(math.isnan(noise[0])):]),
                *checks.overfitting(chosen_runs, curve, final_noise[0], selection),
                *checks.budget(epoch, facts.epochs is not None, budget.missing(knob_runs, runs, metric), metric))
    choice = Choice(ranked, chosen, inference.point_intervals(final), inference.versus(final, chosen),
                    _chosen_metrics(chosen_runs, metric), curve)
    effects = Effects(table, noise, differences, anova, tuple(notes), means, numeric,
                      stats.per_point(knob_runs, selection), epoch if knob_runs is not runs else None)
    return Findings(points, swept, ranked, choice, effects, advice, tuple(warnings), *_next_sweep(facts, advice),
                    stopping)


__all__ = ["Facts", "Findings", "TOP", "analyse"]
