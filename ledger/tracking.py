"""The tracking store: opening it, finding a sweep's experiment and runs, and writing them.

:class:`Tracker` is the only code that writes MLflow, with :class:`ledger.recorder.RunRecorder`
(one trial's run) built on it. The names it writes are those of :mod:`ledger.schema`; which run
decides a trial is :mod:`ledger.rules`; whose driver is alive is :mod:`ledger.liveness`.
"""
from __future__ import annotations

import fcntl
import functools
import logging
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Optional

from . import retry, rules
from .schema import (ACTIVE, ATTEMPT, CHECKPOINT_EPOCH, COMMAND, COUNT_PREFIX, DETERMINISTIC, DRIVER_HOST,
                     DRIVER_PID, ERROR_KIND, HEARTBEAT, KIND, MAX_PARAM_VALUE, MAX_PARAMS_PER_BATCH, MAX_TAG_VALUE,
                     NAME, OVERRIDES, PARENT, PARENT_RUN, POINT, REASON, REPEAT, SCHEMA, SCHEMA_VERSION, SUBMISSION, TRIAL,
                     flatten, param_text, quote, tag_filter)

# Re-exported: callers import the schema's names from here as well.
__all__ = ["Tracker", "resolve_tracking_uri", "existing_store", "client", "flatten", "ACTIVE", "ATTEMPT",
           "DETERMINISTIC", "ERROR_KIND", "KIND", "NAME", "OVERRIDES", "POINT", "REASON", "REPEAT", "SUBMISSION"]


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
        fcntl.flock(lock, fcntl.LOCK_EX)
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
    logger = logging.getLogger("mlflow.store.db.utils")
    if not any(isinstance(f, _ErrorsReported) for f in logger.filters):
        logger.addFilter(_ErrorsReported())
    with _creation_lock(uri):
        # A database store's transactions run in this process: a signal must not cut one short.
        database = uri.split(":", 1)[0].split("+", 1)[0] in ("sqlite", "postgresql", "mysql", "mssql")
        mlflow_client = retry.RetryingClient(MlflowClient(uri), shield=database)
        mlflow_client.search_experiments(max_results=1)  # makes a new SQLite store's schema now
    return mlflow_client


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

    def experiment_id(self, name: str, create: bool = True, sweep_name: Optional[str] = None) -> Optional[str]:
        """The experiment ``name`` (restored if deleted), created if ``create``; tagged ``sweep.name``
        so that a sweep whose ``mlflow.experiment`` differs from its name is found by its name."""
        from mlflow.exceptions import MlflowException

        exp = self.client.get_experiment_by_name(name)
        if exp is None and create:
            # Without the kind tag MLflow 3's UI opens the experiment on its GenAI trace pages.
            tags = {"mlflow.experimentKind": "custom_model_development", **({NAME: sweep_name} if sweep_name else {})}
            try:
                return self.client.create_experiment(name, tags=tags)
            except MlflowException:  # another submission created it a moment ago
                exp = self.client.get_experiment_by_name(name)
                if exp is None:
                    raise
        if exp is None:
            return None
        if exp.lifecycle_stage == "deleted":
            self.client.restore_experiment(exp.experiment_id)
        if sweep_name and exp.tags.get(NAME) != sweep_name:
            self.client.set_experiment_tag(exp.experiment_id, NAME, sweep_name)
        return exp.experiment_id

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
        took ~10 s per 1000 runs here; ``params=False`` skips the params there); elsewhere
        MLflow's search, 5000 runs a page.
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

    def latest_parent(self, experiment_id: str):
        runs = self.client.search_runs([experiment_id], f"tags.`{KIND}` = '{PARENT}'", max_results=1,
                                       order_by=["attributes.start_time DESC"])
        return runs[0] if runs else None

    def active_trials(self, experiment_id: str) -> list:
        """Child runs still RUNNING or SCHEDULED, of every submission."""
        return [r for s in ACTIVE for r in self.trials(experiment_id, s, params=False)]

    # -- parent runs ---------------------------------------------------------------------------

    def start_parent(self, experiment_id: str, sweep_name: str, command: str, sweep_text: str,
                     plan_summary: str, plan_rows: list[dict], tags: Optional[dict] = None) -> str:
        """A RUNNING parent run for one submission, owned by this process (see :mod:`ledger.liveness`);
        ``tags``: more about the submission (the selection rule, the method)."""
        import socket

        tags = {KIND: PARENT, NAME: sweep_name, COMMAND: command, SCHEMA: SCHEMA_VERSION,
                DRIVER_HOST: socket.gethostname(), DRIVER_PID: str(os.getpid()), HEARTBEAT: str(now_ms()),
                **(tags or {})}
        run = self.client.create_run(experiment_id, tags=tags,
                                     run_name=f"{sweep_name} ({command} {time.strftime('%Y-%m-%d %H:%M:%S')})")
        run_id = run.info.run_id
        self.client.log_text(run_id, sweep_text, "sweep.yaml")
        self.client.log_text(run_id, plan_summary, "plan.txt")
        self.client.log_dict(run_id, plan_rows, "plan.json")
        return run_id

    def beat(self, parent_id: str) -> None:
        """The driver's heartbeat on its parent run: one try (a failed beat is repeated by the next)."""
        self.client.once.set_tag(parent_id, HEARTBEAT, str(now_ms()))

    def update_parent(self, run_id: str, counts: dict[str, int], status: Optional[str] = None,
                      reason: Optional[str] = None) -> None:
        from mlflow.entities import Metric, RunTag

        now = now_ms()
        metrics = [Metric(f"trials_{k}", float(v), now, 0) for k, v in counts.items()]
        tags = [RunTag(f"{COUNT_PREFIX}{k}", str(v)) for k, v in counts.items()]
        if reason:
            tags.append(RunTag(REASON, reason[:MAX_TAG_VALUE]))
        self.client.log_batch(run_id, metrics=metrics, tags=tags)
        if status:
            self.client.set_terminated(run_id, status)

    def sweep_text(self, parent_run_id: str) -> str:
        """The sweep file as it was submitted with ``parent_run_id``."""
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            return Path(self.client.download_artifacts(parent_run_id, "sweep.yaml", tmp)).read_text()

    # -- child runs ----------------------------------------------------------------------------

    def create_trial_run(self, experiment_id: str, parent_id: str, sweep_name: str, trial, swept: dict,
                         extra_tags: Optional[dict] = None) -> str:
        """A SCHEDULED child run: the claim of ``trial`` by the driver of ``parent_id``, with the swept
        values and the resolved config as params."""
        from mlflow.entities import Param

        tags = {PARENT_RUN: parent_id, KIND: TRIAL, NAME: sweep_name, POINT: trial.point.hash,
                REPEAT: str(trial.repeat), ATTEMPT: "0", SUBMISSION: parent_id, SCHEMA: SCHEMA_VERSION,
                **(extra_tags or {})}
        run = self.client.create_run(experiment_id, run_name=trial.run_name, tags=tags)
        run_id = run.info.run_id
        params = {**flatten(trial.point.config), **{k: param_text(v) for k, v in swept.items()},
                  "trial_seed": str(trial.seed), "repeat": str(trial.repeat)}
        for chunk in _batched([Param(k, v[:MAX_PARAM_VALUE]) for k, v in sorted(params.items())],
                              MAX_PARAMS_PER_BATCH):
            self.client.log_batch(run_id, params=chunk)
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

    def active_children(self, experiment_id: str, parent_id: str) -> list:
        runs = self.trials(experiment_id, extra=tag_filter(**{SUBMISSION: parent_id}), params=False)
        return [r for r in runs if r.info.status in ACTIVE]

