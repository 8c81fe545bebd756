"""Comparison reports of sweeps, aggregated with pandas from what MLflow holds. Reads only.

* :mod:`ledger.frame`: :func:`load_runs` (one row per trial run), :func:`load_history`
  (per-epoch metrics, long), :func:`load_parent` (the latest submission);
* :mod:`dashboards.stats`: pure DataFrame -> DataFrame comparisons (per point, by value,
  marginal effects, pivots, best points, Pareto front, state counts, failures);
* :mod:`dashboards.report`: :func:`build_report` writes report.md, report.html and the plots;
* :mod:`dashboards.cli`: :func:`report_command`, behind ``sweeper report``.
"""
from ledger.frame import LECTURE_KNOBS, SweepNotFound, load_history, load_parent, load_runs
from .report import build_report
from .stats import (best_points, by_value, failures, finished_trials, learning_curves, marginal_effects,
                    pareto_front, per_point, pivot, state_counts, swept_fields)

__all__ = ["LECTURE_KNOBS", "SweepNotFound", "best_points", "build_report", "by_value", "failures",
           "finished_trials", "learning_curves", "load_history", "load_parent", "load_runs", "marginal_effects",
           "pareto_front", "per_point", "pivot", "state_counts", "swept_fields"]
