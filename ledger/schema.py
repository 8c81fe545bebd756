"""What MLflow holds for a sweep, named in one place: tags, params, metrics, the schema version.

Layout: one experiment per sweep (tagged ``sweep.name``); one *parent* run per submission
(``sweeper run`` or ``resume``) holding the sweep file, the plan, counts per state and its driver's
heartbeat; one *child* run per ``(point, repeat)`` and submission that trained or claimed it. Every
run carries tags under ``sweep.``, so one AND filter selects what a command needs (MLflow's search
has no OR):

==========================  ===================================================================
``sweep.schema``            :data:`SCHEMA_VERSION` of the writer, on every run
``sweep.kind``              ``parent`` | ``trial``
``sweep.name``              the sweep's name (experiments and runs)
``sweep.point``             the point's config hash; ``sweep.repeat``: 0, 1, ...
``sweep.attempt``           1 + worker deaths and driver losses the trial went through
``sweep.submission``        the parent run (the driver) that owns a child run
``sweep.status_reason``     why a run is FAILED or KILLED
``sweep.error_kind``        ``trial`` for an error of the trial's own (deterministic)
``sweep.checkpoint_epoch``  the epoch of the run's last checkpoint artifact
``sweep.resumed_from``      the run whose checkpoint this one started from, at
``sweep.resumed_at_epoch``
``sweep.driver.*``          on parents: ``host``, ``pid``, and ``heartbeat`` (epoch ms)
``sweep.set``               on parents: the ``--set KEY=VALUE`` of the command, a JSON list
==========================  ===================================================================

Metrics: :data:`EPOCH_METRICS` per epoch (step = epoch, from 1), :data:`FINAL_METRICS` once at the
end (step 0; ``peak_rss_mib`` is the worker's peak resident set during the trial, in MiB),
``trials_<state>`` on parents. Artifacts: ``sweep.yaml``, ``plan.txt``, ``plan.json``
on parents; ``config.json``, ``model.npz``, ``kernels.png``, ``checkpoint/checkpoint.npz`` on
children.
"""
from __future__ import annotations

import json

#: Raised when the meaning of a tag, param or metric changes; readers may branch on it.
SCHEMA_VERSION = "2"

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
COUNT_PREFIX = "sweep.count."
DRIVER_HOST, DRIVER_PID, HEARTBEAT = "sweep.driver.host", "sweep.driver.pid", "sweep.driver.heartbeat"
PARENT_RUN = "mlflow.parentRunId"
NOTE = "mlflow.note.content"

#: ``sweep.kind`` values.
PARENT, TRIAL = "parent", "trial"
#: ``sweep.error_kind`` of errors that are the trial's own and would happen again with the same seed.
DETERMINISTIC = "trial"
#: Run states in which a run is still owned by a driver.
ACTIVE = ("RUNNING", "SCHEDULED")

EPOCH_METRICS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "epoch_seconds")
FINAL_METRICS = ("test_accuracy", "test_loss", "val_accuracy", "val_loss", "train_accuracy", "train_loss",
                 "train_seconds", "epochs_run", "peak_rss_mib")
#: Params describing the trained network or its data rather than a config field.
MODEL_PARAMS = ("n_params", "forward_flops", "train_images", "val_images", "test_images")

#: MLflow's own limits (``log_batch`` and tag values), so writers never send what it refuses.
MAX_PARAMS_PER_BATCH, MAX_METRICS_PER_BATCH = 100, 1000
MAX_TAG_VALUE, MAX_PARAM_VALUE = 4000, 6000


def flatten(config: dict, prefix: str = "") -> dict[str, str]:
    """``{"model": {"depth": 8}}`` -> ``{"model.depth": "8"}``; lists as JSON text."""
    out = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        else:
            out[name] = param_text(value)
    return out


def param_text(value) -> str:
    """A value as MLflow param text: lists as JSON, the rest with ``str``."""
    return json.dumps(value) if isinstance(value, (list, tuple)) else str(value)


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
