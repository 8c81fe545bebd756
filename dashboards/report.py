"""Build the report of one sweep: read it through :mod:`ledger`, compose it, write the files.

:func:`build_report` reads the runs, the sweep's parent run (its selection rule and the sweep
file it ran), the learning curves of the best points (of every finished trial when early stopping
ended trials at different epochs: :mod:`dashboards.budget`) and the chosen run's ``model.npz``; lets
:mod:`dashboards.sections` compose the report, and writes into ``out_dir``:

* ``report.md`` and ``report.html``: the same sections, the conclusion first; the HTML is one
  self-contained file (:mod:`dashboards.document`);
* the plots as PNG files (when matplotlib is installed; the report says so when it is not);
* ``next.yaml``: the next sweep file, when the advice is to widen or refine;
* ``note.md``: the conclusion and the top points, for the parent run's description;
* ``runs.csv`` (:func:`~ledger.frame.load_runs`) and ``points.csv``
  (:func:`~dashboards.stats.per_point`) for anyone who wants the numbers behind the tables.

Nothing is written to MLflow here; ``sweeper report`` attaches the folder afterwards (ledger.reports).
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from ledger import (Selection, fetch_artifact, load_history, load_parent, load_runs, rank_points,
                    resolve_tracking_uri, submitted_sweep)

from . import budget, figures, stats
from .analysis import TOP, Facts
from .document import to_html, to_markdown
from .nextsweep import SweepFile
from .sections import compose

#: Files a build writes besides the PNGs; an earlier build's are removed first, so that nothing
#: outlives the data it showed (a next.yaml after the advice turned to stop, a plot no longer drawn).
OUTPUTS = ("report.md", "report.html", "note.md", "runs.csv", "points.csv", "next.yaml")


def first_kernels(uri: str, run_id: str) -> Optional[np.ndarray]:
    """The first convolution's weights ``(F, C, kh, kw)`` from run ``run_id``'s ``model.npz``,
    read-only; None when the run has no model file or it does not load."""
    from cnn import load_model
    from cnn.io import ModelFileError

    with tempfile.TemporaryDirectory() as tmp:
        found = fetch_artifact(uri, run_id, "model.npz", tmp)
        if found is None:
            return None
        try:
            model = load_model(found)
        except (ModelFileError, OSError):
            return None
    layer = next((layer for layer in model.layers if "W" in layer.params and layer.params["W"].ndim == 4), None)
    if layer is None:
        return None
    weights = np.array(layer.params["W"])
    weights.setflags(write=False)
    return weights


def build_report(tracking_uri: Optional[str], sweep_name: str, out_dir, against: Optional[str] = None,
                 selection: Optional[Selection] = None) -> Path:
    """Write the report of ``sweep_name`` into ``out_dir`` (created); returns ``report.html``'s path.

    ``against``: another sweep of the same store to compare with. ``selection``: the rule that
    chooses (default: the one the sweep's parent run recorded, else ``val_accuracy``).
    Raises :class:`ledger.frame.SweepNotFound` when the store has no such sweep (or no ``against``).
    """
    uri = resolve_tracking_uri(tracking_uri)
    runs = load_runs(uri, sweep_name)
    other = (against, load_runs(uri, against)) if against else None
    parent = load_parent(uri, sweep_name)
    selection = selection or (parent["selection"] if parent else Selection())
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for old in [*out.glob("*.png"), *(out / name for name in OUTPUTS)]:
        old.unlink(missing_ok=True)
    with_plots = figures.available()
    ranked = rank_points(runs, selection)
    done = stats.finished_trials(runs)
    top = done[done["point"].isin(ranked.index[:TOP])]  # curves of the best points only: fast on 2,000 runs
    epochs = None
    if budget.common_epoch(runs, selection.metric) is not None:
        # Early stopping ended trials at different epochs: the knob analysis reads every finished
        # trial's curve at a common epoch (one query on a database store); the best points' are among them.
        epochs = load_history(uri, sweep_name, done["run_id"], metrics=[selection.metric], runs=runs)
    if with_plots and len(top):
        history = (epochs[epochs["run_id"].isin(top["run_id"])].reset_index(drop=True) if epochs is not None
                   else load_history(uri, sweep_name, top["run_id"], metrics=[selection.metric], runs=runs))
    else:
        history = pd.DataFrame(columns=["run_id", "epoch", "metric", "value"])
    kernels = None
    if with_plots and len(ranked):
        best = stats.best_runs(top[top["point"] == ranked.index[0]], selection)
        kernels = first_kernels(uri, best.iloc[0]) if len(best) else None
    submitted = submitted_sweep(uri, parent["run_id"]) if parent else None
    facts = Facts(sweep_name, uri, runs, selection, out, parent, history, with_plots, kernels,
                  SweepFile(*submitted) if submitted else None, other, epochs)
    report = compose(facts)
    title = f"Sweep report: {sweep_name}"
    (out / "report.md").write_text(to_markdown(list(report.sections), title), encoding="utf-8")
    images = {p.name: p.read_bytes() for p in out.glob("*.png")}
    (out / "report.html").write_text(to_html(list(report.sections), title, images), encoding="utf-8")
    (out / "note.md").write_text(report.note, encoding="utf-8")
    if report.next_yaml:
        (out / "next.yaml").write_text(report.next_yaml, encoding="utf-8")
    runs.to_csv(out / "runs.csv", index=False)
    report.points.to_csv(out / "points.csv", index=False)
    return out / "report.html"


__all__ = ["OUTPUTS", "build_report", "first_kernels"]
