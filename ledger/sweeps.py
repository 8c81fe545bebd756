"""A sweep's one parent run: found or made once, whichever submission comes first.

Every trial of a sweep sits under one parent run named after the sweep (MLflow's tree view shows
the sweep as one row with its trials folded under it). The parent is the experiment's earliest
parent run (start time, then run id: :func:`ledger.rules.order`), so every command agrees on it.
Two submissions started together may both create one; each reads back after creating and the
later one retires its own (:func:`retire_parent`), as a claim does (:mod:`ledger.claims`). A
retired parent is not deleted: a third submission may have found it in between and still write to
it until it moves over itself.

The parent holds what the sweep is: its fixed settings and its grid (knob -> values) as params,
the sweep file (``sweep.yaml``, the latest submission's), MLflow's source tags (git commit,
source name, user), the data set as a dataset input, and one record per submission
(:mod:`ledger.submission`). Params cannot change in MLflow: a later submission that changes a
setting or widens the grid keeps the first values as params, and its own in its record and in
``sweep.yaml``; the tag :data:`~ledger.schema.CHANGED` lists the settings that changed since.
"""
from __future__ import annotations

import json

from . import rules
from .schema import (CHANGED, DATASET_CONTEXT, KIND, MAX_PARAM_VALUE, MAX_PARAMS_PER_BATCH, MAX_TAG_VALUE, NAME, PARENT,
                     PARENT_RUN, RETIRED_PARENT, SCHEMA, SCHEMA_VERSION, SUPERSEDED_BY, param_text)
from .source import source_tags
from .tracking import Tracker


def find_parent(tracker: Tracker, experiment_id: str):
    """The sweep's parent run (the earliest parent run of the experiment), or None."""
    runs = tracker.search(experiment_id, f"tags.`{KIND}` = '{PARENT}'", params=False)
    return min(runs, key=lambda r: rules.order(r.info.start_time, r.info.run_id)) if runs else None


def open_parent(tracker: Tracker, experiment_id: str, sweep_name: str) -> str:
    """The run id of the sweep's parent run, made now if the sweep has none yet."""
    parent = find_parent(tracker, experiment_id)
    if parent is not None:
        return parent.info.run_id
    tags = {KIND: PARENT, NAME: sweep_name, SCHEMA: SCHEMA_VERSION, **source_tags()}
    mine = tracker.client.create_run(experiment_id, run_name=sweep_name, tags=tags).info.run_id
    first = find_parent(tracker, experiment_id)  # another submission may have made one a moment ago
    if first is not None and first.info.run_id != mine:
        retire_parent(tracker, mine, first.info.run_id)
        return first.info.run_id
    return mine


def retire_parent(tracker: Tracker, run_id: str, into: str) -> None:
    """Set aside parent run ``run_id``, made in a race, for ``into``: no longer a parent to any
    search, nested under ``into`` and KILLED (kept, out of the default view; writes still land)."""
    from mlflow.entities import RunTag

    tracker.client.log_batch(run_id, tags=[RunTag(KIND, RETIRED_PARENT), RunTag(SUPERSEDED_BY, into),
                                           RunTag(PARENT_RUN, into)])
    tracker.client.set_terminated(run_id, "KILLED")


def describe_sweep(tracker: Tracker, parent_id: str, settings: dict[str, object], dataset=None) -> None:
    """Record what the sweep is on its parent: ``settings`` (name -> value: fixed settings and
    ``grid.<knob>`` lists) as params where new, a changed one in the :data:`CHANGED` tag; the data
    set as a dataset input; MLflow's source tags (this code's commit)."""
    from mlflow.entities import Param, RunTag

    run = tracker.client.get_run(parent_id)
    held = run.data.params
    texts = {k: param_text(v)[:MAX_PARAM_VALUE] for k, v in settings.items() if v is not None}
    new = [Param(k, v) for k, v in sorted(texts.items()) if k not in held]
    for i in range(0, len(new), MAX_PARAMS_PER_BATCH):
        tracker.client.log_batch(parent_id, params=new[i : i + MAX_PARAMS_PER_BATCH])
    changed = {k: v for k, v in texts.items() if k in held and held[k] != v}
    tags = [RunTag(k, v) for k, v in source_tags().items()]
    if changed or CHANGED in run.data.tags:
        text = json.dumps(changed, sort_keys=True) if changed else "{}"
        tags.append(RunTag(CHANGED, text[:MAX_TAG_VALUE]))
    tracker.client.log_batch(parent_id, tags=tags)
    if dataset is not None:
        log_dataset(tracker, parent_id, dataset)


def log_dataset(tracker: Tracker, run_id: str, dataset) -> None:
    """``dataset`` (an ``mlflow.entities.Dataset``) as the run's training input."""
    from mlflow.entities import DatasetInput, InputTag

    tracker.client.log_inputs(run_id, datasets=[DatasetInput(dataset, tags=[InputTag(DATASET_CONTEXT, "train")])])


def dataset_entity(name: str, digest: str, source: str, shapes: dict[str, tuple], dtype: str, rows: int):
    """An MLflow dataset entity for a sweep's data: ``shapes`` maps each split to its array shape."""
    from mlflow.entities import Dataset

    schema = {"mlflow_tensorspec": {"features": json.dumps([{"type": "tensor", "tensor-spec": {
        "dtype": dtype, "shape": [-1, *shapes["train"][1:]]}}]), "targets": json.dumps([{"type": "tensor",
                                                                                            "tensor-spec": {"dtype": "int64", "shape": [-1]}}])}}
    profile = {"num_rows": rows, **{f"{split}_rows": shape[0] for split, shape in shapes.items()}}
    return Dataset(name=name, digest=digest, source_type="local", source=json.dumps({"uri": source}),
                   schema=json.dumps(schema), profile=json.dumps(profile))


__all__ = ["describe_sweep", "dataset_entity", "find_parent", "log_dataset", "open_parent", "retire_parent"]
