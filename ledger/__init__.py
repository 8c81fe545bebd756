"""The sweep's record in MLflow, owned in one place.

* the schema: tag, param and metric names (:mod:`ledger.tracking` for now);
* the only code that writes MLflow: :class:`Tracker` (experiments, parent and child runs) and
  :class:`~ledger.recorder.RunRecorder` (one trial's run, written by the driver);
* the read API: :func:`load_runs` (one typed row per trial run), :func:`load_history`,
  :func:`load_parent`;
* the rule that says which point is best (by a validation metric): :mod:`ledger.selection`.

Imports neither ``sweeper`` nor ``dashboards``. Names load on first use: importing the package
costs nothing, and MLflow and pandas are imported only by the modules that need them.
"""
import importlib

_EXPORTS = {
    "Tracker": "tracking", "resolve_tracking_uri": "tracking", "shown_uri": "tracking", "knob_params": "schema",
    "KIND": "tracking", "POINT": "tracking", "REPEAT": "tracking", "ATTEMPT": "tracking", "REASON": "tracking",
    "NAME": "tracking", "SUBMISSION": "tracking", "ERROR_KIND": "tracking", "DETERMINISTIC": "tracking",
    "RunRecorder": "recorder",
    "SweepNotFound": "tracking", "LECTURE_KNOBS": "frame", "EPOCH_METRICS": "frame", "FINAL_METRICS": "frame",
    "RUN_COLUMNS": "frame", "load_runs": "frame", "load_history": "frame", "load_parent": "frame",
    "runs_frame": "frame", "parse_value": "frame", "experiment_for": "frame",
    "Selection": "selection", "rank_points": "selection", "choose_point": "selection", "best_mean": "selection",
    "selection_tags": "selection", "selection_from_tags": "selection", "non_dominated": "selection",
    "attach_report": "reports", "set_note": "reports", "fetch_artifact": "reports", "set_tags": "reports",
    "submitted_sweep": "reports", "register_champion": "models", "Champion": "models",
}

__all__ = list(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
