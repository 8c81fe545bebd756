"""Reports of sweeps: what a sweep found and what to try next, from what MLflow holds (read through ``ledger``).

The flow, one module per step:

* :mod:`ledger.frame` reads the sweep (:func:`load_runs`, :func:`load_history`, :func:`load_parent`);
* :mod:`dashboards.stats`: per-point tables, the Pareto front, trial states and failures;
* :mod:`dashboards.inference`: intervals over repeats, paired differences, type II ANOVA,
  variance-based importance; :mod:`dashboards.checks`: the tuning playbook's warnings;
  :mod:`dashboards.compare`: two sweeps side by side;
* :mod:`dashboards.analysis` computes every table once (frozen :class:`~dashboards.analysis.Findings`);
  :mod:`dashboards.advice` reads what to try next off those tables (:mod:`dashboards.steps`:
  the values of a moved or refined grid) and :mod:`dashboards.nextsweep` writes it as ``next.yaml``;
* :mod:`dashboards.conclusion` says it in words, first; :mod:`dashboards.sections` builds the rest;
  :mod:`dashboards.figures` draws; :mod:`dashboards.document` renders Markdown and HTML;
* :mod:`dashboards.report`: :func:`build_report` reads, composes and writes the folder;
  ``sweeper report`` (sweeper/app/report.py) calls it and attaches the folder through :mod:`ledger.reports`.

Whatever is called "best" follows the sweep's selection rule (:mod:`ledger.selection`, a
validation metric): no function here has a default metric.
"""
from ledger.frame import LECTURE_KNOBS, SweepNotFound, load_history, load_parent, load_runs

from .report import build_report
from .stats import failures, finished_trials, learning_curves, pareto_front, per_point, state_counts, swept_fields

__all__ = ["LECTURE_KNOBS", "SweepNotFound", "build_report", "failures", "finished_trials", "learning_curves",
           "load_history", "load_parent", "load_runs", "pareto_front", "per_point", "state_counts", "swept_fields"]
