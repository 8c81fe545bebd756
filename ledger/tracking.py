"""The tracking store: opening it, finding a sweep's experiment and runs, and writing them.

:class:`Tracker` is the only code that writes MLflow, with :class:`ledger.recorder.RunRecorder`
(one trial's run) built on it. The names it writes are those of :mod:`ledger.schema`; which run
decides a trial is :mod:`ledger.rules`; whose driver is alive is :mod:`ledger.liveness`.
"""
from __future__ import annotations

import fcntl
import functools
import json
import logging
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Optional, Sequence

from . import retry, rules
from .schema import (ACTIVE, ATTEMPT, CHECKPOINT_EPOCH, DATASET_CONTEXT, DETERMINISTIC, ERROR_KIND, EXPERIMENT_KIND, KIND, MAX_PARAM_VALUE,
                     MAX_PARAMS_PER_BATCH, MAX_TAG_VALUE, NAME, OVERRIDES, PARENT, PARENT_RUN, POINT, POINT_NAME, REASON,
                     REPEAT, SCHEMA, SCHEMA_VERSION, SUBMISSION, SWEEP_FILE, SWEPT, TRAINING_KIND, TRIAL, knob_params, param_value, quote,
                     tag_filter)
from .source import source_tags

# Re-exported: callers import the schema's names from here as well.
__all__ = ["Tracker", "SweepNotFound", "resolve_tracking_uri", "existing_store", "client", "ACTIVE", "ATTEMPT",
           "DETERMINISTIC", "ERROR_KIND", "KIND", "NAME", "OVERRIDES", "POINT", "REASON", "REPEAT", "SUBMISSION"]


class SweepNotFound(LookupError):
    """No sweep of that name in the store (or no store at all): exit 2 at the command line."""


def resolve_tracking_uri(uri: Optional[str] = None) -> str:
    """The explicit URI, else ``MLFLOW_TRACKING_URI``, else MLflow's default store, made absolute.

    Workers may run in another folder (or on another node), so a relative ``sqlite:///mlflow.db``
    is turned into an absolute path here, once, in the driver.
    """
    if not uri and not os.environ.get("MLFLOW_TRACKING_URI"):
        import mlflow

        uri = mlflow.get_tracking_uri()  # sqlite:///mlflow.db since MLflow 3.7
    uri = uri or os.environ["MLFLOW_TRACKING_URI"]
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        uri = "sqlite:///" + str(Path(uri[len("sqlite:///"):]).resolve())
    elif "://" not in uri:  # a bare folder
        uri = str(Path(uri).resolve())
    return uri


def shown_uri(uri: str) -> str:
    """``uri`` fit for a console or a report: a password in it (``postgresql://user:secret@host``)
    replaced by ``***``, as SQLAlchemy shows its URLs."""
    from urllib.parse import urlsplit, urlunsplit

    try:
        parts = urlsplit(uri)
        if parts.password is None:
            return uri
        host = parts.netloc.rpartition("@")[2]
        return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))
    except ValueError:
        return uri


def sqlite_path(uri: str) -> Optional[Path]:
    return Path(uri[len("sqlite:///"):]) if uri.startswith("sqlite:///") else None


def existing_store(uri: str) -> bool:
    """False for a SQLite file that does not exist yet (opening it would create it)."""
    path = sqlite_path(uri)
    return path is None or path.exists()


@contextmanager
def _creation_lock(uri: str):
    """Serialise the first opening of a SQLite store between processes.

    MLflow creates a fresh SQLite store's schema with alembic migrations on first use; two
    processes doing it at once fail (one sees the other's half-made tables). A lock file beside
    the database makes the later ones wait and then find the schema made.
    """
    path = sqlite_path(uri)
    if path is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{path}.lock", "a") as lock:
        began, wait = time.monotonic(), retry.remaining()
        while True:  # the call's deadline bounds this wait too: a process stuck creating the store is given up on
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                pass
            if time.monotonic() - began > wait:  # raised outside the except: the message is this one
                raise TimeoutError(f"{path}.lock: held by another process for {wait:.0f} s (creating the store?)")
            time.sleep(0.1)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


class _ErrorsReported(logging.Filter):
    """MLflow's database layer logs a full traceback for every failed statement, then raises; the
    ledger reports (or retries) the error itself, in one line. Shown with ``SWEEPER_DEBUG=1``."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno < logging.ERROR or os.environ.get("SWEEPER_DEBUG", "") not in ("", "0")


@functools.lru_cache(maxsize=8)
def client(uri: str) -> retry.RetryingClient:
    """One MlflowClient per process and URI (opening a SQLite store costs seconds), schema made,
    every call retried through an outage of the store (:mod:`ledger.retry`)."""
    from mlflow import MlflowClient

    retry.bound_http_retries()
    if uri.startswith("sqlite:"):
        retry.bound_sqlite_waits()
    logger = logging.getLogger("mlflow.store.db.utils")
    if not any(isinstance(f, _ErrorsReported) for f in logger.filters):
        logger.addFilter(_ErrorsReported())

    def opened() -> retry.RetryingClient:
        with _creation_lock(uri):
            # A database store's transactions run in this process: a signal must not cut one short.
            database = uri.split(":", 1)[0].split("+", 1)[0] in ("sqlite", "postgresql", "mysql", "mssql")
            made = retry.RetryingClient(MlflowClient(uri), shield=database)
            made.once.search_experiments(max_results=1)  # makes a new SQLite store's schema now
            return made

    # Opening is retried like any call: a store locked or down at start waits the same patience.
    return retry.call(opened, _what="opening the store")


def _number(value) -> Optional[float]:
    """A metric, or a param's text read as a number (None when it is not one)."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _batched(items: list, size: int) -> Iterable[list]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def now_ms() -> int:
    return int(time.time() * 1000)


class Tracker:
    """Reads and writes one tracking store, given by an absolute URI (see :func:`resolve_tracking_uri`)."""

    def __init__(self, uri: str):
        self.uri = uri

    @property
    def client(self):
        return client(self.uri)

    # -- experiments and searches ------------------------------------------------------------

    def find_experiment(self, name: str) -> Optional[str]:
        """Read-only: the id of the active experiment ``name``, or None (no store, none, or deleted)."""
        if not existing_store(self.uri):
            return None
        exp = self.client.get_experiment_by_name(name)
        return exp.experiment_id if exp is not None and exp.lifecycle_stage == "active" else None

    def open_experiment(self, name: str, sweep_name: str) -> str:
        """The experiment ``name``, created (or restored, if deleted) for a sweep about to write;
        tagged ``sweep.name`` so that a sweep whose ``mlflow.experiment`` differs from its name is
        found by its name."""
        from mlflow.exceptions import MlflowException

        exp = self.client.get_experiment_by_name(name)
        if exp is None:
            # The kind tag marks it as model training for the UI (the link's workflowType does the rest).
            tags = {EXPERIMENT_KIND: TRAINING_KIND, NAME: sweep_name}
            try:
                return self.client.create_experiment(name, artifact_location=self.artifact_location(), tags=tags)
            except MlflowException:  # another submission created it a moment ago
                exp = self.client.get_experiment_by_name(name)
                if exp is None:
                    raise
        if exp.lifecycle_stage == "deleted":
            self.client.restore_experiment(exp.experiment_id)
        if exp.tags.get(NAME) != sweep_name:
            self.client.set_experiment_tag(exp.experiment_id, NAME, sweep_name)
        return exp.experiment_id

    def artifact_location(self) -> Optional[str]:
        """Where a new experiment's artifacts go: for a SQLite store, a folder of its own under
        ``mlruns/`` beside the database (MLflow's default is ``./mlruns`` of whatever folder the
        process runs in); for a server or another database, the store's own default (None)."""
        import uuid

        path = sqlite_path(self.uri)
        return str(path.parent / "mlruns" / uuid.uuid4().hex) if path is not None else None

    def find_sweep(self, sweep_name: str) -> Optional[str]:
        """Read-only: the experiment of ``sweep_name``: the one of that name, else the one tagged with it."""
        if not existing_store(self.uri):
            return None
        exp = self.client.get_experiment_by_name(sweep_name)
        if exp is not None and exp.lifecycle_stage == "active":
            return exp.experiment_id
        try:
            tagged = self.client.search_experiments(filter_string=f"tags.`{NAME}` = {quote(sweep_name)}",
                                                    order_by=["last_update_time DESC"])
        except ValueError:  # a name MLflow's filter cannot hold is no sweep's name
            return None
        return tagged[0].experiment_id if tagged else None

    def search(self, experiment_id: str, filter_string: str = "", order_by=None, params: bool = True) -> list:
        """Every run matching ``filter_string``, all pages.

        On a database store the rows are read directly (:mod:`ledger.sqlread`: MLflow's search
        builds an object per param, tag and metric of every run, seconds per thousand runs;
        ``params=False`` skips the params there); elsewhere MLflow's search, 5000 runs a page.
        """
        from ledger import sqlread

        fast = retry.call(sqlread.search, self.uri, experiment_id, filter_string, order_by, params,
                          _what="search")
        if fast is not None:
            return fast
        runs, token = [], None
        while True:
            page = self.client.search_runs([experiment_id], filter_string, max_results=5000,
                                           order_by=order_by, page_token=token)
            runs.extend(page)
            token = page.token
            if not token:
                return runs

    def trials(self, experiment_id: str, status: Optional[str] = None, extra: str = "", params: bool = True) -> list:
        """Child runs, oldest first; ``status`` and ``extra`` narrow the filter."""
        parts = [f"tags.`{KIND}` = '{TRIAL}'"]
        if status:
            parts.append(f"attributes.status = {quote(status)}")
        if extra:
            parts.append(extra)
        return self.search(experiment_id, " and ".join(parts), order_by=["attributes.start_time ASC"], params=params)

    def trial_runs(self, experiment_id: str, key: tuple[str, int]) -> list:
        """Every child run of one ``(point, repeat)``, any status, oldest first."""
        return self.trials(experiment_id, extra=tag_filter(**{POINT: key[0], REPEAT: key[1]}), params=False)

    def finished(self, experiment_id: str) -> dict[tuple[str, int], str]:
        """``(point hash, repeat) -> run id`` of the run that decides each finished trial."""
        return {key: run.info.run_id for key, run in rules.deciding_runs(self.trials(experiment_id, "FINISHED", params=False)).items()}

    def trial_records(self, experiment_id: str, metrics: Sequence[str]) -> list[dict]:
        """Every trial run, oldest first, as a search reads it: ``key``, ``status``, the swept
        ``values`` (read back from its params), ``metrics`` (the run's last value of each of
        ``metrics``, left out when it has none; ``forward_flops`` and ``n_params`` from its params)
        and ``failed`` (an error of the trial's own)."""
        out = []
        for run in self.trials(experiment_id):
            try:
                swept = json.loads(run.data.tags.get(SWEPT) or "[]")
            except ValueError:
                continue
            params = run.data.params
            out.append({"key": rules.key(run), "status": run.info.status,
                        "values": {k: param_value(params[k]) for k in swept if k in params},
                        "metrics": {m: _number(run.data.metrics.get(m, params.get(m))) for m in metrics
                                    if m in run.data.metrics or m in params},
                        "failed": run.data.tags.get(ERROR_KIND) == DETERMINISTIC})
        return out

    def failed(self, experiment_id: str) -> dict[tuple[str, int], tuple[str, str]]:
        """Trials that failed with an error of their own: ``key -> (run id, reason)``."""
        failed = {}
        for run in self.trials(experiment_id, "FAILED", f"tags.`{ERROR_KIND}` = '{DETERMINISTIC}'", params=False):
            failed[rules.key(run)] = (run.info.run_id, run.data.tags.get(REASON, ""))
        return failed

    def checkpoints(self, experiment_id: str) -> dict[tuple[str, int], tuple[str, int]]:
        """Interrupted trials with an epoch checkpoint: ``key -> (run id, attempt)`` of the latest one."""
        found = {}
        for status in ("KILLED", "FAILED"):
            for run in self.trials(experiment_id, status, f"tags.`{CHECKPOINT_EPOCH}` != ''", params=False):
                if run.data.tags.get(ERROR_KIND) != DETERMINISTIC:
                    found[rules.key(run)] = (run.info.run_id, int(run.data.tags.get(ATTEMPT) or 0))
        return found

    def parents(self, experiment_id: str, active_only: bool = False) -> list:
        """Parent runs, newest first."""
        runs = self.search(experiment_id, f"tags.`{KIND}` = '{PARENT}'", order_by=["attributes.start_time DESC"])
        return [r for r in runs if r.info.status in ACTIVE] if active_only else runs

    def active_trials(self, experiment_id: str) -> list:
        """Child runs still RUNNING or SCHEDULED, of every submission."""
        return [r for s in ACTIVE for r in self.trials(experiment_id, s, params=False)]

    # -- parent runs ---------------------------------------------------------------------------

    def sweep_text(self, parent_run_id: str) -> str:
        """The sweep file as it was submitted with ``parent_run_id``."""
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            return Path(self.client.download_artifacts(parent_run_id, SWEEP_FILE, tmp)).read_text()

    # -- child runs ----------------------------------------------------------------------------

    def create_trial_run(self, experiment_id: str, parent_id: str, submission_id: str, sweep_name: str, trial,
                         dataset=None, extra_tags: Optional[dict] = None) -> str:
        """A SCHEDULED child run: the claim of ``trial`` by ``submission_id``, under the sweep's parent
        run, with its knobs as params and ``dataset`` (an ``mlflow.entities.Dataset``) as its input."""
        from mlflow.entities import DatasetInput, InputTag, Param

        tags = {PARENT_RUN: parent_id, KIND: TRIAL, NAME: sweep_name, POINT: trial.point.hash,
                POINT_NAME: trial.point.name, SWEPT: json.dumps(list(trial.point.values)), REPEAT: str(trial.repeat),
                ATTEMPT: "0", SUBMISSION: submission_id, SCHEMA: SCHEMA_VERSION, **source_tags(), **(extra_tags or {})}
        run = self.client.create_run(experiment_id, run_name=trial.run_name, tags=tags)
        run_id = run.info.run_id
        params = {**knob_params(trial.point.config), "trial_seed": str(trial.seed), "repeat": str(trial.repeat)}
        for chunk in _batched([Param(k, v[:MAX_PARAM_VALUE]) for k, v in sorted(params.items())],
                              MAX_PARAMS_PER_BATCH):
            self.client.log_batch(run_id, params=chunk)
        if dataset is not None:
            self.client.log_inputs(run_id, datasets=[DatasetInput(dataset, [InputTag(DATASET_CONTEXT, "train")])])
        self.client.update_run(run_id, status="SCHEDULED")
        return run_id

    def terminate(self, run_id: str, status: str, reason: Optional[str] = None, only_if_active: bool = True) -> bool:
        """Set a terminal status (with a reason tag); by default only a run still RUNNING/SCHEDULED."""
        if only_if_active and self.client.get_run(run_id).info.status not in ACTIVE:
            return False
        if reason:
            self.client.set_tag(run_id, REASON, reason[:MAX_TAG_VALUE])
        self.client.set_terminated(run_id, status)
        return True

    def discard(self, run_id: str) -> None:
        """Delete a child run whose trial never started: a claim lost, or a run created ahead."""
        self.client.delete_run(run_id)
