"""MLflow as the sweep's record and ledger: the only module that writes to MLflow.

Layout: one experiment per sweep name; one *parent* run per submission (``sweeper run`` or
``resume``) holding the sweep file, the plan and counts per state; one *child* run per
``(point, repeat)`` trained in that submission. Every run carries tags under ``sweep.``, so one
AND filter selects what a command needs (MLflow's search has no OR):

    sweep.kind      parent | trial          sweep.point    the point's config hash
    sweep.name      the sweep's name        sweep.repeat   0, 1, ...
    sweep.attempt   1 + worker deaths       sweep.status_reason  why a run is FAILED or KILLED

A trial is *done* when a FINISHED child run with its point hash and repeat exists.
"""
from __future__ import annotations

import functools
import json
import os
import time
from pathlib import Path
from typing import Iterable, Optional

KIND, POINT, REPEAT, ATTEMPT, REASON = "sweep.kind", "sweep.point", "sweep.repeat", "sweep.attempt", "sweep.status_reason"
NAME, SUBMISSION, ERROR_KIND = "sweep.name", "sweep.submission", "sweep.error_kind"
OVERRIDES = "sweep.set"  # on a parent run: the --set KEY=VALUE of its command line, a JSON list
ACTIVE = ("RUNNING", "SCHEDULED")
#: Errors that are the trial's own and would happen again with the same config and seed.
DETERMINISTIC = "trial"


def resolve_tracking_uri(uri: Optional[str] = None) -> str:
    """The explicit URI, else ``MLFLOW_TRACKING_URI``, else MLflow's default store, made absolute.

    Workers may run in another folder (or on another node), so a relative ``sqlite:///mlflow.db``
    is turned into an absolute path here, once, in the driver.
    """
    import mlflow

    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or mlflow.get_tracking_uri()
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        uri = "sqlite:///" + str(Path(uri[len("sqlite:///"):]).resolve())
    elif "://" not in uri:  # a bare folder
        uri = str(Path(uri).resolve())
    return uri


@functools.lru_cache(maxsize=8)
def client(uri: str):
    """One MlflowClient per process and URI: opening a SQLite store costs seconds, not milliseconds."""
    from mlflow import MlflowClient

    return MlflowClient(uri)


def flatten(config: dict, prefix: str = "") -> dict[str, str]:
    """``{"model": {"depth": 8}}`` -> ``{"model.depth": "8"}``; lists as JSON text."""
    out = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        else:
            out[name] = json.dumps(value) if isinstance(value, (list, tuple)) else str(value)
    return out


def _batched(items: list, size: int) -> Iterable[list]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


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
        exp = self.client.get_experiment_by_name(name)
        if exp is not None:
            if exp.lifecycle_stage == "deleted":
                self.client.restore_experiment(exp.experiment_id)
            if sweep_name and exp.tags.get(NAME) != sweep_name:
                self.client.set_experiment_tag(exp.experiment_id, NAME, sweep_name)
            return exp.experiment_id
        if not create:
            return None
        # Without the kind tag MLflow 3's UI opens the experiment on its GenAI trace pages, not the runs.
        tags = {"mlflow.experimentKind": "custom_model_development", **({NAME: sweep_name} if sweep_name else {})}
        return self.client.create_experiment(name, tags=tags)

    def find_sweep(self, sweep_name: str) -> Optional[str]:
        """Read-only: the experiment of ``sweep_name``: the one of that name, else the one tagged with it."""
        exp = self.client.get_experiment_by_name(sweep_name)
        if exp is not None and exp.lifecycle_stage == "active":
            return exp.experiment_id
        tagged = self.client.search_experiments(filter_string=f"tags.`{NAME}` = '{sweep_name}'",
                                                order_by=["last_update_time DESC"])
        return tagged[0].experiment_id if tagged else None

    def search(self, experiment_id: str, filter_string: str = "", order_by=None, params: bool = True) -> list:
        """Every run matching ``filter_string``, all pages.

        On a database store the rows are read directly (:mod:`ledger.sqlread`: MLflow's search
        took ~10 s per 1000 runs here; ``params=False`` skips the params there); elsewhere
        MLflow's search, 5000 runs a page.
        """
        from ledger import sqlread

        fast = sqlread.search(self.uri, experiment_id, filter_string, order_by, params)
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
        parts = [f"tags.`{KIND}` = 'trial'"]
        if status:
            parts.append(f"attributes.status = '{status}'")
        if extra:
            parts.append(extra)
        return self.search(experiment_id, " and ".join(parts), order_by=["attributes.start_time ASC"], params=params)

    def finished(self, experiment_id: str) -> dict[tuple[str, int], str]:
        """``(point hash, repeat) -> run id`` of every finished trial (the earliest one wins)."""
        done: dict[tuple[str, int], str] = {}
        for run in self.trials(experiment_id, "FINISHED", params=False):
            done.setdefault(_key(run), run.info.run_id)
        return done

    def failed(self, experiment_id: str) -> dict[tuple[str, int], tuple[str, str]]:
        """Trials that failed with an error of their own: ``key -> (run id, reason)``."""
        failed = {}
        for run in self.trials(experiment_id, "FAILED", f"tags.`{ERROR_KIND}` = '{DETERMINISTIC}'", params=False):
            failed[_key(run)] = (run.info.run_id, run.data.tags.get(REASON, ""))
        return failed

    def checkpoints(self, experiment_id: str) -> dict[tuple[str, int], str]:
        """Interrupted trials with an epoch checkpoint: ``key -> run id`` (the latest one)."""
        found = {}
        for status in ("KILLED", "FAILED"):
            for run in self.trials(experiment_id, status, "tags.`sweep.checkpoint_epoch` != ''", params=False):
                if run.data.tags.get(ERROR_KIND) != DETERMINISTIC:
                    found[_key(run)] = run.info.run_id
        return found

    def latest_parent(self, experiment_id: str):
        runs = self.client.search_runs([experiment_id], f"tags.`{KIND}` = 'parent'", max_results=1,
                                       order_by=["attributes.start_time DESC"])
        return runs[0] if runs else None

    # -- parent runs ---------------------------------------------------------------------------

    def start_parent(self, experiment_id: str, sweep_name: str, command: str, sweep_text: str,
                     plan_summary: str, plan_rows: list[dict], tags: Optional[dict] = None) -> str:
        """A RUNNING parent run; ``tags``: more about the submission (the selection rule, the method)."""
        run = self.client.create_run(experiment_id, run_name=f"{sweep_name} ({command} {time.strftime('%Y-%m-%d %H:%M:%S')})",
                                     tags={KIND: "parent", NAME: sweep_name, "sweep.command": command, **(tags or {})})
        run_id = run.info.run_id
        self.client.log_text(run_id, sweep_text, "sweep.yaml")
        self.client.log_text(run_id, plan_summary, "plan.txt")
        self.client.log_dict(run_id, plan_rows, "plan.json")
        return run_id

    def update_parent(self, run_id: str, counts: dict[str, int], status: Optional[str] = None,
                      reason: Optional[str] = None) -> None:
        from mlflow.entities import Metric, RunTag

        now = int(time.time() * 1000)
        metrics = [Metric(f"trials_{k}", float(v), now, 0) for k, v in counts.items()]
        tags = [RunTag(f"sweep.count.{k}", str(v)) for k, v in counts.items()]
        if reason:
            tags.append(RunTag(REASON, reason[:4000]))
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
        """A SCHEDULED child run with the swept values and the resolved config as params."""
        from mlflow.entities import Param

        tags = {"mlflow.parentRunId": parent_id, KIND: "trial", NAME: sweep_name, POINT: trial.point.hash,
                REPEAT: str(trial.repeat), ATTEMPT: "0", SUBMISSION: parent_id, **(extra_tags or {})}
        run = self.client.create_run(experiment_id, run_name=trial.run_name, tags=tags)
        run_id = run.info.run_id
        params = {**flatten(trial.point.config), **{k: _param(v) for k, v in swept.items()},
                  "trial_seed": str(trial.seed), "repeat": str(trial.repeat)}
        for chunk in _batched([Param(k, v[:6000]) for k, v in sorted(params.items())], 100):
            self.client.log_batch(run_id, params=chunk)
        self.client.update_run(run_id, status="SCHEDULED")
        return run_id

    def terminate(self, run_id: str, status: str, reason: Optional[str] = None, only_if_active: bool = True) -> bool:
        """Set a terminal status (with a reason tag); by default only a run still RUNNING/SCHEDULED."""
        if only_if_active and self.client.get_run(run_id).info.status not in ACTIVE:
            return False
        if reason:
            self.client.set_tag(run_id, REASON, reason[:4000])
        self.client.set_terminated(run_id, status)
        return True

    def discard(self, run_id: str) -> None:
        """Delete a child run created ahead whose trial never started (a search no longer finds it)."""
        self.client.delete_run(run_id)

    def active_children(self, experiment_id: str, parent_id: str) -> list:
        runs = self.trials(experiment_id, extra=f"tags.`{SUBMISSION}` = '{parent_id}'", params=False)
        return [r for r in runs if r.info.status in ACTIVE]


def _key(run) -> tuple[str, int]:
    return run.data.tags[POINT], int(run.data.tags[REPEAT])


def _param(value) -> str:
    return json.dumps(value) if isinstance(value, (list, tuple)) else str(value)
