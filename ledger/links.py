"""Addresses in MLflow's UI that land on the answer: the sweep's experiment in the training-runs view.

MLflow 3's UI opens an experiment on its GenAI pages unless the URL's ``workflowType`` parameter
says ``machine_learning`` (the experiment's ``mlflow.experimentKind`` tag does not override the
browser's stored choice). Every link the project prints or writes comes from here.

The sweep's link also names a *shared view* of the UI: an experiment tag
``mlflow.sharedViewState.<key>`` holding the runs table's state, which the UI loads for
``viewStateShareKey=<key>``. Ours groups the trials by their ``point`` tag (repeats averaged into
one row per point), sorts by the sweep's selection metric and shows the swept knobs with the
validation and test accuracy and the training time as columns.
"""
from __future__ import annotations

from typing import Optional
from urllib.parse import quote

from .schema import VIEW_TAG_PREFIX

#: Where ``sweeper ui`` serves a local store by default.
LOCAL_UI = "http://127.0.0.1:5000"
VIEW = "workflowType=machine_learning"
#: The experiment tag of the sweep's shared view, and its key in links.
VIEW_KEY = "sweeper"


def ui_address(tracking_uri: Optional[str], port: Optional[int] = None) -> str:
    """The UI's address for a store: a tracking server's own; for a file or database store, where
    ``sweeper ui`` serves it (``port``, default 5000)."""
    if tracking_uri and tracking_uri.startswith(("http://", "https://")):
        return tracking_uri.rstrip("/")
    return LOCAL_UI if port is None else f"http://127.0.0.1:{port}"


def experiment_url(base: str, experiment_id: str, shared_view: bool = False) -> str:
    """The experiment's training runs: with ``shared_view`` (the experiment holds it, see
    :func:`view_state`), grouped by point; else the sweep's parent with its trials folded under it."""
    share = f"&viewStateShareKey={VIEW_KEY}" if shared_view else ""
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs?{VIEW}{share}"


def sweep_url(tracker, experiment_id: str, base: Optional[str] = None) -> str:
    """The link to a sweep's experiment, grouped by point when the experiment holds the sweep's view."""
    exp = tracker.client.get_experiment(experiment_id)
    return experiment_url(base or ui_address(tracker.uri), experiment_id, VIEW_TAG_PREFIX + VIEW_KEY in exp.tags)


def view_state(swept: list[str], metric: str, mode: str) -> dict:
    """The runs table's state the sweep's link opens: grouped by point (repeats averaged), best first."""
    columns = [f"params.`{k}`" for k in swept] + [f"metrics.`{m}`" for m in dict.fromkeys(
        [metric, "val_accuracy", "test_accuracy", "train_seconds"])]
    return {"groupBy": {"aggregateFunction": "average", "groupByKeys": [{"mode": "tag", "groupByData": "point"}]},
            "orderByKey": f"metrics.`{metric}`", "orderByAsc": mode == "min", "selectedColumns": columns}


def run_url(base: str, experiment_id: str, run_id: str) -> str:
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}?{VIEW}"


def model_url(base: str, name: str, version: Optional[str] = None) -> str:
    tail = f"/versions/{version}" if version else ""
    return f"{base.rstrip('/')}/#/models/{quote(name, safe='')}{tail}"
