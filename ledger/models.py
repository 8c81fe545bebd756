"""The point a sweep chose, as a registered MLflow model: ``models:/<sweep>@champion``.

:func:`register_champion` runs at the end of a submission, after :mod:`ledger.selection` has
chosen its point (on validation): of that point's FINISHED repeats it takes the best by the same
metric (earliest on a tie), logs the run's ``model.npz`` as a pyfunc model from code
(:mod:`ledger.champion`: raw images in, ``label`` and ``prob_<k>`` out, with a signature and an
input example), linked to the trial run as its output, registers it under the sweep's name and
moves the alias ``champion`` to it. The version's description gives the validation and test
accuracy and links the sweep's parent run; its tags name the trial run and the point.

Idempotent: a version already holding the chosen run is reused (the alias set on it again), so a
resume that chooses the same point registers nothing new; another point makes a new version and
the alias moves. Nothing is registered when no point has the selection metric.
"""
from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from . import links
from .frame import runs_frame
from .reports import fetch_artifact
from .schema import CHAMPION_ALIAS, LABEL_COLUMN, MODEL_ARTIFACT, POINT, PROB_PREFIX, VERSION_POINT, VERSION_RUN
from .selection import Selection, choose_point
from .tracking import Tracker

CODE = Path(__file__).with_name("champion_code.py")


@dataclass(frozen=True)
class Champion:
    """A registered champion: ``uri`` (``models:/<name>@champion``), its version and page."""

    name: str
    version: str
    run_id: str
    point_name: str
    val_accuracy: float
    test_accuracy: float
    url: str
    created: bool  # False: the chosen run's version was there already
    seconds: float

    @property
    def uri(self) -> str:
        return f"models:/{self.name}@{CHAMPION_ALIAS}"

    def line(self) -> str:
        state = "registered" if self.created else "unchanged"
        return (f"champion {self.point_name} (val {self.val_accuracy:.4f}, test {self.test_accuracy:.4f}): "
                f"{self.uri} version {self.version} {state}; {self.url}")


def chosen_run(runs, selection: Selection):
    """The row of ``runs`` (a run frame) whose model stands for the chosen point, or None."""
    point = choose_point(runs, selection)
    if point is None:
        return None
    done = runs[(runs["point"] == point) & (runs["status"] == "FINISHED")]
    if "duplicate" in done.columns:
        done = done[~done["duplicate"].astype(bool)]
    done = done.dropna(subset=[selection.metric]).sort_values(["start_time", "run_id"])
    best = done[selection.metric].max() if selection.mode == "max" else done[selection.metric].min()
    return done[done[selection.metric] == best].iloc[0]


def signature_for(example: np.ndarray, classes: int):
    """Output: the label and the class probabilities. No input schema: MLflow checks a tensor's exact
    shape and dtype, and the model takes raw images in several layouts and dtypes
    (:func:`ledger.champion.as_images`, which refuses anything else naming the shapes it takes);
    the input example shows one."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    outputs = Schema([ColSpec("long", LABEL_COLUMN)] + [ColSpec("double", f"{PROB_PREFIX}{k}") for k in range(classes)])
    return ModelSignature(inputs=None, outputs=outputs)


@contextlib.contextmanager
def _quiet(verbose: bool):
    """MLflow's warnings, INFO lines and download progress bars silenced inside, unless ``verbose``."""
    if verbose:
        yield
        return
    from mlflow.environment_variables import MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR

    logger = logging.getLogger("mlflow")
    level, bar = logger.level, os.environ.get(MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR.name)
    logger.setLevel(logging.ERROR)
    os.environ[MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR.name] = "false"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)
        if bar is None:
            os.environ.pop(MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR.name, None)
        else:
            os.environ[MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR.name] = bar


@contextlib.contextmanager
def _fluent(uri: str):
    """MLflow's module-level API pointed at ``uri`` inside the block (``log_model`` has no client form)."""
    import mlflow

    before = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        yield mlflow
    finally:
        mlflow.set_tracking_uri(before)


def _existing(client, name: str, run_id: str):
    """The version of ``name`` holding ``run_id``'s model, or None."""
    for version in client.search_model_versions(f"name = '{name}'"):
        if version.run_id == run_id or version.tags.get(VERSION_RUN) == run_id:
            return version
    return None


def _description(row, selection: Selection, parent_url: str, run_url: str, repeats: int) -> str:
    """Markdown: the accuracies first (the registry's versions table shows the first words)."""
    val, test = row.get("val_accuracy", float("nan")), row.get("test_accuracy", float("nan"))
    return (f"validation accuracy {val:.4f}, test accuracy {test:.4f}: sweep point **{row['point_name']}** "
            f"(`{row['point']}`, {repeats} repeat(s)), chosen by {selection.text}.\n\n"
            f"- validation accuracy: {val:.4f}\n- test accuracy: {test:.4f}\n"
            f"- trial run: [{row['run_name']}]({run_url})\n- sweep parent run: {parent_url}\n\n"
            "Input: raw images `(N, C, H, W)` as the data files hold them; output: `label` and `prob_<k>`.")


def _log_model(tracker: Tracker, row, example: np.ndarray, verbose: bool) -> str:
    """The model id of ``row``'s ``model.npz`` logged as a pyfunc model, output of its trial run."""
    from mlflow.entities import LoggedModelOutput

    client = tracker.client
    with tempfile.TemporaryDirectory() as tmp, _quiet(verbose):
        npz = fetch_artifact(tracker.uri, row["run_id"], "model.npz", tmp)
        if npz is None:
            raise FileNotFoundError(f"trial run {row['run_id']} ({row['run_name']}) has no model.npz artifact")
        import cnn

        classes = cnn.load_model(npz).spec.classes  # checked as any file from a store
        run = client.get_run(row["run_id"])
        logged = client.create_logged_model(run.info.experiment_id, name="champion", source_run_id=row["run_id"],
                                            tags={POINT: str(row["point"])}, model_type="cnn")
        with _fluent(tracker.uri) as mlflow:
            mlflow.pyfunc.log_model(name="champion", python_model=str(CODE), artifacts={MODEL_ARTIFACT: str(npz)},
                                    signature=signature_for(example, classes), input_example=example,
                                    pip_requirements=[f"numpy=={np.__version__}", f"mlflow=={mlflow.__version__}"],
                                    model_id=logged.model_id)
    client.log_outputs(row["run_id"], models=[LoggedModelOutput(logged.model_id, step=0)])
    return logged.model_id


def register_champion(tracking_uri: str, experiment_id: str, name: str, parent_run_id: str,
                      selection: Selection, example: np.ndarray, ui_base: Optional[str] = None,
                      verbose: Optional[bool] = None) -> Optional[Champion]:
    """Register the chosen point's model under ``name`` with the alias ``champion`` (see the module).

    ``example``: a few raw images ``(n, C, H, W)`` as the data files hold them (the model's input
    example); ``verbose``: let MLflow's warnings and notices through
    (default: when its logger shows INFO, i.e. not quietened by the CLI). Returns None when
    nothing finished with the selection metric.
    """
    started = time.perf_counter()
    if verbose is None:
        import mlflow  # noqa: F401 -- configures its logger (MLFLOW_LOGGING_LEVEL) on first import

        verbose = logging.getLogger("mlflow").getEffectiveLevel() < logging.WARNING
    tracker = Tracker(tracking_uri)
    runs = runs_frame(tracker.trials(experiment_id, "FINISHED"))
    row = None if runs.empty else chosen_run(runs, selection)
    if row is None:
        return None
    client = tracker.client
    base = ui_base or links.ui_address(tracking_uri)
    version = _existing(client, name, row["run_id"]) if client.search_registered_models(
        f"name = '{name}'") else None
    created = version is None
    if created:
        model_id = _log_model(tracker, row, np.ascontiguousarray(example[:2]), verbose)
        if not client.search_registered_models(f"name = '{name}'"):
            client.create_registered_model(name, description=f"The chosen model of sweep {name}: "
                                                              f"`models:/{name}@{CHAMPION_ALIAS}`.")
        repeats = int(((runs["point"] == row["point"]) & (runs["status"] == "FINISHED")).sum())
        run_link = links.run_url(base, experiment_id, row["run_id"])
        with _fluent(tracking_uri):  # the registry reads the logged model back through the module-level store
            version = client.create_model_version(
                name, source=f"models:/{model_id}", run_id=row["run_id"], model_id=model_id,
                tags={VERSION_RUN: row["run_id"], VERSION_POINT: str(row["point"])},
                description=_description(row, selection, links.run_url(base, experiment_id, parent_run_id), run_link,
                                         repeats))
    client.set_registered_model_alias(name, CHAMPION_ALIAS, version.version)
    return Champion(name, str(version.version), row["run_id"], str(row["point_name"]),
                    float(row.get("val_accuracy", float("nan"))), float(row.get("test_accuracy", float("nan"))),
                    links.model_url(base, name, str(version.version)), created, time.perf_counter() - started)


__all__ = ["Champion", "chosen_run", "register_champion", "signature_for"]
