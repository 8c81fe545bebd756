"""What MLflow holds for a sweep, named in one place: tags, params, metrics, the schema version.

Layout: one experiment per sweep (tagged ``sweep.name``); one *parent* run per sweep, named after
it, holding the fixed settings and the grid as params, the sweep file, the data set as an input
and a record per submission (``sweeper run`` or ``resume``: who, when, what, how it ended); one
*child* run per ``(point, repeat)`` under it, tagged with the submission that trained it. An
earlier attempt of a trial (its driver lost, then resumed) is nested under the run that
continued it, out of the default view, once that run holds its epochs too. Every run carries tags
under ``sweep.``, so one AND filter selects what a command needs (MLflow's search has no OR):

==========================  ===================================================================
``sweep.schema``            :data:`SCHEMA_VERSION` of the writer, on every run
``sweep.kind``              ``parent`` | ``trial``
``sweep.name``              the sweep's name (experiments and runs)
``sweep.point``             the point's config hash; ``sweep.repeat``: 0, 1, ...
``point``                   the point's name (``k5 avg``): what the UI's "Group by" averages over
``sweep.swept``             the knobs the point's sweep varies, a JSON list
``sweep.attempt``           1 + worker deaths and driver losses the trial went through
``sweep.submission``        the id of the submission that owns a child run
``sweep.status_reason``     why a run is FAILED or KILLED (on the parent: how the last submission ended)
``sweep.error_kind``        ``trial`` for an error of the trial's own (deterministic)
``sweep.checkpoint_epoch``  the epoch of the run's last checkpoint artifact
``sweep.resumed_from``      the run whose checkpoint this one started from, at
``sweep.resumed_at_epoch``  (its epochs up to there copied into this run)
``sweep.superseded_by``     on an earlier attempt: the run that continued it
``sweep.sub.<id>``          on the parent: a submission's record (JSON, see ledger.submission)
``sweep.beat.<id>``         on the parent: that submission's driver heartbeat (epoch ms)
``sweep.set``               on the parent: the ``--set KEY=VALUE`` of the last submission, a JSON list
``sweep.changed``           on the parent: settings changed since the first submission (JSON)
==========================  ===================================================================

Params: on a child, each knob once, under its name in the sweep file (``kernel_size``,
``learning_rate``; data settings as ``data.source``), never ``None``, plus ``seed``,
``trial_seed`` and ``repeat``, and :data:`MODEL_PARAMS` once the model is built; on the parent
the fixed settings the same way and the grid as ``grid.<knob>``. Metrics: :data:`EPOCH_METRICS`
per epoch (step = epoch, from 1), :data:`FINAL_METRICS` once at the end (step 0;
``peak_rss_mib`` is the worker's peak resident set during the trial, in MiB), ``trials_<state>``
on the parent (the whole sweep's trials by state). Artifacts: ``sweep.yaml``, ``plan.txt``,
``submissions/<id>/`` on the parent; ``config.json``, ``model.npz``, ``kernels.png``,
``checkpoint/checkpoint.npz`` on children. The chosen point's model: a pyfunc logged model, output of
its trial run, registered under the sweep's name with the alias ``champion`` (:mod:`ledger.models`).
"""
from __future__ import annotations

import json

#: Raised when the meaning of a tag, param or metric changes; readers may branch on it.
SCHEMA_VERSION = "3"

SCHEMA = "sweep.schema"
KIND = "sweep.kind"
NAME = "sweep.name"
POINT = "sweep.point"
REPEAT = "sweep.repeat"
ATTEMPT = "sweep.attempt"
SUBMISSION = "sweep.submission"
REASON = "sweep.status_reason"
ERROR_KIND = "sweep.error_kind"
COMMAND = "sweep.command"
OVERRIDES = "sweep.set"  # on a parent run: the --set KEY=VALUE of its command line, a JSON list
CHECKPOINT_EPOCH = "sweep.checkpoint_epoch"
RESUMED_FROM = "sweep.resumed_from"
RESUMED_AT = "sweep.resumed_at_epoch"
STOPPED_EARLY = "sweep.stopped_early"
POINT_NAME = "point"
SWEPT = "sweep.swept"
SUPERSEDED_BY = "sweep.superseded_by"
METHOD = "sweep.method"
CHANGED = "sweep.changed"
SUB_PREFIX, BEAT_PREFIX = "sweep.sub.", "sweep.beat."
#: Schema 2 (a parent run per submission) kept its driver on the parent run itself.
DRIVER_HOST, DRIVER_PID, HEARTBEAT = "sweep.driver.host", "sweep.driver.pid", "sweep.driver.heartbeat"
PARENT_RUN = "mlflow.parentRunId"
NOTE = "mlflow.note.content"
#: The selection rule a submission recorded on the parent (ledger.selection reads it back).
SELECTION_METRIC, SELECTION_MODE = "sweep.selection.metric", "sweep.selection.mode"
#: The sweep's objectives, a JSON list of ``[metric, "max" | "min"]`` (none: one objective, the selection).
OBJECTIVES = "sweep.objectives"
#: Marks an experiment as model training for MLflow's UI.
EXPERIMENT_KIND, TRAINING_KIND = "mlflow.experimentKind", "custom_model_development"
#: The runs table's shared view (see ledger.links): ``mlflow.sharedViewState.<key>`` on the experiment.
VIEW_TAG_PREFIX = "mlflow.sharedViewState."
#: A dataset input's role, as MLflow's UI shows it.
DATASET_CONTEXT = "mlflow.data.context"
#: Artifacts of the parent run.
SWEEP_FILE, PLAN_FILE = "sweep.yaml", "plan.txt"

#: ``sweep.kind`` values.
PARENT, TRIAL = "parent", "trial"
#: The kind of a parent run made in a race and set aside for the earliest one (never deleted: a
#: submission that found it first may still write to it before it moves over).
RETIRED_PARENT = "retired-parent"
#: ``sweep.error_kind`` of errors that are the trial's own and would happen again with the same seed.
DETERMINISTIC = "trial"
#: Run states in which a run is still owned by a driver.
ACTIVE = ("RUNNING", "SCHEDULED")

EPOCH_METRICS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "learning_rate", "epoch_seconds")
FINAL_METRICS = ("test_accuracy", "test_loss", "val_accuracy", "val_loss", "train_accuracy", "train_loss",
                 "train_seconds", "epochs_run", "peak_rss_mib")
#: What a sweep file's ``objectives:`` may name: a trial's validation metrics, its cost as measured
#: (final metrics) and its network's size (params, known from the plan's shapes). Never a test metric.
OBJECTIVE_METRICS = ("val_accuracy", "val_loss", "train_seconds", "peak_rss_mib", "forward_flops", "n_params")
#: Params describing the trained network or its data rather than a config field.
MODEL_PARAMS = ("n_params", "forward_flops", "train_images", "val_images", "test_images")
#: Params of a child run that are not knobs: the sweep's seed, the trial's, the repeat.
TRIAL_PARAMS = ("seed", "trial_seed", "repeat")
#: Data settings are params under this prefix (as ``--set data.source=...`` names them).
DATA_PREFIX = "data."

#: MLflow's own limits (``log_batch`` and tag values), so writers never send what it refuses.
MAX_PARAMS_PER_BATCH, MAX_METRICS_PER_BATCH = 100, 1000
MAX_TAG_VALUE, MAX_PARAM_VALUE = 4000, 6000
#: MLflow's SQL columns (``mlflow/store/tracking/dbmodels/models.py``: experiments.name String(256),
#: runs.name, tag, param and metric keys String(250)): SQLite does not enforce them, PostgreSQL and
#: MySQL do, so names are checked against these on every backend (tests/ledger read the columns).
MAX_EXPERIMENT_NAME, MAX_RUN_NAME, MAX_KEY = 256, 250, 250


def knob_params(config: dict) -> dict[str, str]:
    """A resolved config ``{"seed", "data", "model", "train"}`` as params: model and train fields
    under their bare names, data fields as ``data.<field>``, ``seed``; ``None`` values left out."""
    out = {"seed": param_text(config["seed"])} if config.get("seed") is not None else {}
    for section in ("model", "train"):
        out.update({k: param_text(v) for k, v in config.get(section, {}).items() if v is not None})
    out.update({f"{DATA_PREFIX}{k}": param_text(v) for k, v in config.get("data", {}).items() if v is not None})
    return out


def param_text(value) -> str:
    """A value as MLflow param text: lists as JSON, the rest with ``str``."""
    return json.dumps(value) if isinstance(value, (list, tuple)) else str(value)


def param_value(text: str):
    """A param's text read back as the value :func:`param_text` wrote (JSON where it parses;
    ``True``/``False``/``None`` as Python wrote them; else the text itself)."""
    try:
        return json.loads(text)
    except ValueError:
        return {"True": True, "False": False, "None": None}.get(text, text)


def quote(value) -> str:
    """``value`` as a quoted literal of an MLflow filter string.

    MLflow's filter grammar reads single-quoted strings without an escape character, so a value
    holding a quote cannot be written as a literal at all: it is refused here rather than let it
    change what the filter selects.
    """
    text = str(value)
    if "'" in text:
        raise ValueError(f"a value with a single quote cannot be searched in MLflow: {text!r}")
    return f"'{text}'"


def tag_filter(**equal) -> str:
    """An AND filter of tag equalities: ``tag_filter(**{POINT: "ab12", REPEAT: 0})``."""
    return " and ".join(f"tags.`{k}` = {quote(v)}" for k, v in equal.items())

#: The registry alias of a sweep's chosen model, and the tags of its model versions.
CHAMPION_ALIAS = "champion"
VERSION_RUN = "sweep.run_id"  # the trial run whose model.npz the version holds
VERSION_POINT = "sweep.point"
#: The pyfunc model's artifact (the trial's model.npz) and its output columns.
MODEL_ARTIFACT = "model"
LABEL_COLUMN = "label"
PROB_PREFIX = "prob_"
