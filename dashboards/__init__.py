"""Reports of sweeps: which knobs matter, how sure, from what MLflow holds (read through ``ledger``).

* :mod:`ledger.frame`: :func:`load_runs` (one row per trial run), :func:`load_history`
  (per-epoch metrics, long), :func:`load_parent` (the latest submission);
* :mod:`dashboards.stats`: pure DataFrame -> DataFrame comparisons (per point, by value,
  marginal effects, pivots, best points, Pareto front, state counts, failures);
* :mod:`dashboards.inference`: intervals over repeats, paired differences, type II ANOVA,
  variance-based importance; :mod:`dashboards.checks`: the tuning playbook's warnings;
  :mod:`dashboards.compare`: two sweeps side by side;
* :mod:`dashboards.sections` says what the report finds (the point ``ledger.rank_points`` chose on
  validation first); :mod:`dashboards.report` renders it (:func:`build_report`: report.md,
  report.html, note.md, the plots of :mod:`dashboards.plots` and :mod:`dashboards.figures`);
* :mod:`dashboards.cli`: :func:`report_command` and :func:`ui_command`, behind ``sweeper report``
  and ``sweeper ui`` (MLflow writes go through :mod:`ledger.reports`).
"""
from ledger.frame import LECTURE_KNOBS, SweepNotFound, load_history, load_parent, load_runs
from .report import build_report
from .stats import (best_points, by_value, failures, finished_trials, learning_curves, marginal_effects,
                    pareto_front, per_point, pivot, state_counts, swept_fields)

__all__ = ["LECTURE_KNOBS", "SweepNotFound", "best_points", "build_report", "by_value", "failures",
           "finished_trials", "learning_curves", "load_history", "load_parent", "load_runs", "marginal_effects",
           "pareto_front", "per_point", "pivot", "state_counts", "swept_fields"]
