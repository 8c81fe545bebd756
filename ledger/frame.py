"""Read a sweep out of MLflow into pandas: one tidy row per trial run, and long epoch histories.

Reads only; the layout it reads is the one :mod:`ledger.schema` describes: child runs tagged
``sweep.kind=trial`` whose params are the knobs under their names in the sweep file
(``kernel_size``, ``learning_rate``, ...; schema 2 wrote ``model.kernel_size`` and the swept
ones again under their bare names: both read the same).

Params come back from MLflow as text; :func:`parse_value` turns them back into Python values
(``"3"`` -> 3, ``"0.001"`` -> 0.001, ``"[128, 64]"`` -> [128, 64], ``"None"`` -> None) and each
column gets the narrowest dtype that holds all its values (``Int64``, ``float64``, ``boolean``,
else ``object``: ``padding`` mixes 0 and ``"same"``, window sizes may mix 3 and [3, 5]).
"""
from __future__ import annotations

import json
import math
import re
from typing import Iterable, Optional

import pandas as pd

from .schema import (ATTEMPT, COMMAND, DATA_PREFIX, EPOCH_METRICS, FINAL_METRICS, METHOD, MODEL_PARAMS, PARENT_RUN,
                     POINT, REASON, REPEAT, RESUMED_AT, RESUMED_FROM, STOPPED_EARLY, SUBMISSION, SWEPT, TRIAL_PARAMS)
from .tracking import SweepNotFound, Tracker, resolve_tracking_uri, shown_uri

#: The five knobs the lecture compares; reports list them first, swept or not.
LECTURE_KNOBS = ("kernel_size", "depth", "stride", "padding", "pooling")
#: Per-run columns: not properties of the point, so per-point aggregation leaves them out.
RUN_COLUMNS = ("run_id", "run_name", "status", "point", "point_name", "repeat", "attempt", "status_reason",
               "duplicate", "parent_run_id", "submission", "start_time", "end_time", "duration_s",
               "trial_seed", "stopped_early", "resumed_from", "resumed_at_epoch")
EXTRA_PARAMS = MODEL_PARAMS

_INT = re.compile(r"[-+]?[0-9]+")
_FLOAT = re.compile(r"[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?|[-+]?(?:nan|inf)")


def parse_value(text: Optional[str]):
    """A param's text back to the value :func:`ledger.schema.knob_params` wrote.

    Regular expressions rather than bare ``int()``/``float()``: those accept ``"1_000"`` and
    ``"infinity"``, which ``knob_params`` never writes for numbers.
    """
    if text is None:
        return None
    if text == "None":
        return None
    if text in ("True", "False"):
        return text == "True"
    if _INT.fullmatch(text):
        return int(text)
    if _FLOAT.fullmatch(text):
        return float(text)
    if text.startswith("[") or text.startswith("{"):
        try:
            return json.loads(text)
        except ValueError:
            pass
    return text


def _missing(value) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def typed_column(values: list) -> pd.Series:
    """The narrowest dtype holding every value: boolean, Int64, float64, str, else object."""
    present = [v for v in values if not _missing(v)]
    if present and all(isinstance(v, bool) for v in present):
        return pd.Series(values, dtype="boolean")
    if present and all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        return pd.Series([pd.NA if _missing(v) else v for v in values], dtype="Int64")
    if present and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
        return pd.Series([math.nan if _missing(v) else float(v) for v in values], dtype="float64")
    if present and all(isinstance(v, str) for v in present):
        return pd.Series(values, dtype="str")
    return pd.Series(values, dtype="object")


def is_duplicate(status: str, reason: str) -> bool:
    """A run KILLED because its point finished in another run (two wordings, see ledger.recorder)."""
    return status == "KILLED" and (reason or "").startswith("duplicate")


def experiment_for(tracking_uri: Optional[str], sweep_name: str) -> tuple[Tracker, str]:
    """The tracker and experiment id of ``sweep_name``; :class:`SweepNotFound` if there is none.

    Not :meth:`Tracker.experiment_id`: that creates or restores experiments, and this only reads.
    """
    tracker = Tracker(resolve_tracking_uri(tracking_uri))
    experiment_id = tracker.find_sweep(sweep_name)
    if experiment_id is None:
        raise SweepNotFound(f"no sweep named {sweep_name!r} in {shown_uri(tracker.uri)}")
    return tracker, experiment_id


def _row(run) -> tuple[dict, dict, dict]:
    """(run columns, params parsed, final metrics) of one child run."""
    info, tags = run.info, run.data.tags
    reason = tags.get(REASON, "")
    name = info.run_name or ""
    row = {
        "run_id": info.run_id, "run_name": name, "status": info.status,
        "point": tags.get(POINT), "point_name": name.rsplit(" #", 1)[0],
        "repeat": parse_value(tags.get(REPEAT)), "attempt": parse_value(tags.get(ATTEMPT)),
        "status_reason": reason, "duplicate": is_duplicate(info.status, reason),
        "parent_run_id": tags.get(PARENT_RUN), "submission": tags.get(SUBMISSION),
        "start_time": info.start_time, "end_time": info.end_time,
        "trial_seed": parse_value(run.data.params.get("trial_seed")),
        "stopped_early": parse_value(tags.get(STOPPED_EARLY)),
        "resumed_from": tags.get(RESUMED_FROM),
        "resumed_at_epoch": parse_value(tags.get(RESUMED_AT)),
    }
    return row, {k: parse_value(v) for k, v in run.data.params.items()}, dict(run.data.metrics)


def _bare(name: str) -> str:
    return name.split(".", 1)[1] if name.startswith(("model.", "train.")) else name


def _swept(runs: list, params: tuple, fields: list[str]) -> list[str]:
    """The knobs the sweep varies: each run's ``sweep.swept`` tag; for schema 2, the fields that
    were also logged under their bare names."""
    found: set[str] = set()
    for run, p in zip(runs, params):
        text = run.data.tags.get(SWEPT)
        if text is not None:
            try:
                found |= set(json.loads(text))
            except ValueError:
                pass
        elif any(k.startswith(("model.", "train.")) for k in p):
            found |= {f for f in fields if f in p}
    return [f for f in fields if f in found]


def runs_frame(runs: Iterable) -> pd.DataFrame:
    """:func:`load_runs` for MLflow ``Run`` objects already fetched (see its docstring)."""
    runs = list(runs)
    rows, params, metrics = zip(*(_row(r) for r in runs)) if runs else ((), (), ())
    frame = pd.DataFrame({c: typed_column([r[c] for r in rows]) if c != "duration_s" else None for c in RUN_COLUMNS})
    for column in ("start_time", "end_time"):  # epoch milliseconds; end_time is None while active
        millis = pd.Series([math.nan if _missing(r[column]) else r[column] for r in rows], dtype="float64")
        frame[column] = pd.to_datetime(millis, unit="ms", utc=True)
    frame["duration_s"] = (frame["end_time"] - frame["start_time"]).dt.total_seconds()
    frame["duplicate"] = frame["duplicate"].astype(bool)
    for column in ("status_reason", "run_name", "point_name"):
        frame[column] = frame[column].fillna("").astype("str")

    # Knobs under their bare names (model and train fields never share a name, see
    # sweeper.spec.config.GRID_SECTIONS); schema 2's ``model.``/``train.`` prefixes are dropped.
    names = list(dict.fromkeys(_bare(k) for p in params for k in p))
    fields = [k for k in names if not k.startswith(DATA_PREFIX) and k not in TRIAL_PARAMS + MODEL_PARAMS]
    fields.sort(key=lambda f: (LECTURE_KNOBS.index(f) if f in LECTURE_KNOBS else len(LECTURE_KNOBS)))
    swept = _swept(runs, params, fields)
    for field in fields:
        values = [p.get(field, p.get(f"model.{field}", p.get(f"train.{field}"))) for p in params]
        frame[field] = typed_column(values)
    for name in EXTRA_PARAMS:
        frame[name] = typed_column([p.get(name) for p in params])
    # A metric named like a setting (the per-epoch ``learning_rate`` of a schedule) leaves the
    # column to the setting: its latest value is only the last epoch's (load_history has them all).
    metric_names = [name for name in dict.fromkeys([*FINAL_METRICS, *(k for m in metrics for k in m)])
                    if name not in frame.columns]
    for name in metric_names:
        frame[name] = pd.Series([m.get(name, math.nan) for m in metrics], dtype="float64")
    frame.attrs.update(hyperparameters=fields, swept=swept, metrics=metric_names)
    return frame


def load_runs(tracking_uri: Optional[str], sweep_name: str) -> pd.DataFrame:
    """One row per child (trial) run of the sweep, every status, oldest first.

    Columns:

    * run: ``run_id``, ``run_name`` ("k5 max #2"), ``status`` (FINISHED, FAILED, KILLED,
      RUNNING, SCHEDULED), ``point`` (config hash), ``point_name`` ("k5 max"), ``repeat`` and
      ``attempt`` (Int64), ``status_reason`` ("" if none), ``duplicate`` (bool: KILLED as a
      duplicate of another FINISHED run; never counted in statistics), ``parent_run_id``,
      ``submission``, ``start_time``/``end_time`` (UTC datetimes; end NaT while active),
      ``duration_s``, ``trial_seed``, ``stopped_early`` (epochs run, when early stopping cut
      it), ``resumed_from``/``resumed_at_epoch`` (the checkpoint it started from);
    * hyperparameters: every model and train field under its bare name, typed
      (``kernel_size``, ``depth``, ``stride``, ``padding``, ``pooling`` first, then ``blocks``,
      ``dense`` (a list), ``learning_rate``, ...);
    * ``n_params``, ``forward_flops``, ``train_images``, ``val_images``, ``test_images`` (Int64);
    * metrics, float64: :data:`FINAL_METRICS` always (NaN where missing), then any other metric
      a run has (``epoch_seconds``...): the latest value, i.e. the last epoch's.

    ``frame.attrs``: ``hyperparameters`` (field names), ``swept`` (those the sweep varies),
    ``metrics`` (metric column names). Raises :class:`SweepNotFound`.
    """
    tracker, experiment_id = experiment_for(tracking_uri, sweep_name)
    return runs_frame(tracker.trials(experiment_id))  # all pages, start_time ascending


def load_parent(tracking_uri: Optional[str], sweep_name: str) -> Optional[dict]:
    """The sweep's parent run: ``run_id``, ``run_name``, ``status``, ``experiment_id``, ``command``
    (of the latest submission), ``reason``, ``submissions`` (how many), ``counts`` (the whole
    sweep's ``trials_<state>`` metrics, as ints), ``selection`` (the
    :class:`~ledger.selection.Selection` it recorded, else the default) and ``method`` (grid,
    random, ..., or None when not recorded)."""
    from ledger.selection import selection_from_tags

    from .submission import records
    from .sweeps import find_parent

    tracker, experiment_id = experiment_for(tracking_uri, sweep_name)
    run = find_parent(tracker, experiment_id)
    if run is None:
        return None
    subs = records(run)
    last = list(subs.values())[-1] if subs else {}
    counts = {k[len("trials_"):]: int(v) for k, v in run.data.metrics.items() if k.startswith("trials_")}
    return {"run_id": run.info.run_id, "run_name": run.info.run_name, "status": run.info.status,
            "experiment_id": experiment_id, "command": last.get("command", run.data.tags.get(COMMAND, "")),
            "reason": run.data.tags.get(REASON, ""),
            "submissions": len(subs) or len(tracker.parents(experiment_id)), "counts": counts,
            "selection": selection_from_tags(run.data.tags), "method": run.data.tags.get(METHOD)}


def load_history(tracking_uri: Optional[str], sweep_name: str, run_ids: Optional[Iterable[str]] = None,
                 metrics: Iterable[str] = EPOCH_METRICS, runs: Optional[pd.DataFrame] = None) -> pd.DataFrame:
    """Per-epoch metrics, long: columns ``run_id``, ``epoch`` (int, from 1), ``metric``, ``value``.

    ``run_ids`` None: every trial run of the sweep. A run resumed from another run's checkpoint
    logged only the epochs after it; the earlier ones are taken from that run (and its own
    source, and so on), so every curve starts at epoch 1. ``runs``: the sweep's :func:`load_runs`
    frame when the caller has it already.
    """
    tracker, experiment_id = experiment_for(tracking_uri, sweep_name)
    if runs is None:  # the caller's frame saves searching the whole experiment again
        runs = runs_frame(tracker.trials(experiment_id))
    wanted = list(runs["run_id"]) if run_ids is None else list(run_ids)
    source = dict(zip(runs["run_id"], zip(runs["resumed_from"], runs["resumed_at_epoch"])))
    metrics = list(metrics)
    # One query for every curve on a database store, not a call per run and metric (see sqlread).
    from ledger import sqlread

    wanted_all = set(wanted) | {o for o, _ in source.values() if isinstance(o, str)}
    fetched = sqlread.metric_histories(tracker.uri, wanted_all, metrics) or {}
    cache: dict[tuple[str, str], list] = {k: [p for p in v if p[0] >= 1] for k, v in fetched.items()}

    def history(run_id: str, metric: str) -> list:
        if (run_id, metric) not in cache:
            # Step 0 is not an epoch: the recorder logs the final metrics (val_accuracy among
            # them) at step 0 when a trial finishes.
            cache[run_id, metric] = [(m.step, m.timestamp, m.value)
                                     for m in tracker.client.get_metric_history(run_id, metric) if m.step >= 1]
        return cache[run_id, metric]

    rows = []
    for run_id in wanted:
        for metric in metrics:
            points = list(history(run_id, metric))
            seen, current = {run_id}, run_id
            while True:  # walk back the chain of checkpoints, guarding against a loop
                origin, at_epoch = source.get(current, (None, None))
                if not isinstance(origin, str) or origin in seen or _missing(at_epoch):
                    break
                points += [p for p in history(origin, metric) if p[0] <= int(at_epoch)]
                seen.add(origin)
                current = origin
            rows += [(run_id, step, metric, timestamp, value) for step, timestamp, value in points]
    frame = pd.DataFrame(rows, columns=["run_id", "epoch", "metric", "timestamp", "value"])
    # An epoch logged twice (a worker died between logging it and saving the checkpoint, so the
    # retry trained it again): the later value is the one the model went on from.
    frame = frame.sort_values(["run_id", "metric", "epoch", "timestamp"]).drop_duplicates(
        ["run_id", "metric", "epoch"], keep="last")
    frame = frame.drop(columns="timestamp").reset_index(drop=True)
    return frame.astype({"run_id": "str", "epoch": "int64", "metric": "str", "value": "float64"})


__all__ = ["EPOCH_METRICS", "FINAL_METRICS", "LECTURE_KNOBS", "RUN_COLUMNS", "SweepNotFound", "experiment_for",
           "is_duplicate", "load_history", "load_parent", "load_runs", "parse_value", "runs_frame", "typed_column"]
