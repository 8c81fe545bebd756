"""The driver's writer of one trial's child run: what the trial reports, applied in order.

Exactly once: a trial is done when it has a FINISHED run, and the run that decides it is fixed by
:mod:`ledger.rules`. Before a trial is trained its driver claims it (:mod:`ledger.claims`), so two
live submissions do not train it both. When a trial finishes, its recorder settles anyway: of all
FINISHED runs of the trial the deciding one stays, every other is marked KILLED with the reason
``duplicate of run ...``. Every submission applies the same rule, and the last to finish sees all,
so one FINISHED run remains even when a claim race let two submissions train, and the
duplicate's metrics stay visible instead of being dropped.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Iterable, Optional, Sequence

from . import rules
from .schema import (ATTEMPT, CHECKPOINT_EPOCH, DETERMINISTIC, EPOCH_METRICS, ERROR_KIND, MAX_METRICS_PER_BATCH,
                     MAX_PARAMS_PER_BATCH, MAX_TAG_VALUE, PARENT_RUN, REASON, RESUMED_AT, RESUMED_FROM, STOPPED_EARLY, SUPERSEDED_BY)
from .tracking import Tracker, now_ms



class RunRecorder:
    """Writes one child run (created SCHEDULED by the driver) as its trial's reports arrive."""

    def __init__(self, tracker: Tracker, run_id: str, key: tuple[str, int], experiment_id: str,
                 tags: Optional[dict] = None):
        """``tags``: the run's tags as its creator knows them (``None``: read them back)."""
        self.tracker, self.client = tracker, tracker.client
        self.run_id, self.key, self.experiment_id = run_id, key, experiment_id
        self.tags = dict(tags) if tags is not None else dict(self.client.get_run(run_id).data.tags)
        #: The last epoch whose metrics this run holds: an epoch trained again (a retry from an
        #: earlier checkpoint) is not written twice, so every step is in the run exactly once.
        self.logged_through = 0

    def start(self, info: dict, params: Optional[dict] = None) -> int:
        """RUNNING, with the attempt raised, what the worker says of itself (host, pid, threads) and
        ``params`` (what the trial describes of its model and data), in one batch."""
        from mlflow.entities import Param, RunTag

        attempt = int(self.tags.get(ATTEMPT, "0")) + 1
        # One batch, not a write per tag: on SQLite each write is a transaction of its own.
        tags = {ATTEMPT: attempt, **{f"sweep.{k}": v for k, v in info.items()}}
        # Identical param values may be logged again on a retry; MLflow only refuses a changed param.
        self._write(tags=[RunTag(k, str(v)[:MAX_TAG_VALUE]) for k, v in tags.items()],
                    params=[Param(k, str(v)) for k, v in (params or {}).items()])
        self.client.update_run(self.run_id, status="RUNNING")
        self.tags = {**self.tags, ATTEMPT: str(attempt)}  # a retry recorded by the same recorder counts on
        if attempt > 1 and not self.logged_through:  # a retry this recorder did not see begin
            self.logged_through = self._last_logged_epoch()
        return attempt

    def _last_logged_epoch(self) -> int:
        names = [k for k in EPOCH_METRICS if k in self.client.get_run(self.run_id).data.metrics]
        return max((m.step for m in self.client.get_metric_history(self.run_id, names[0])), default=0) if names else 0

    def _write(self, metrics: Sequence = (), params: Sequence = (), tags: Sequence = ()) -> None:
        """One ``log_batch`` of them all, or as few as MLflow's limits per batch allow."""
        metrics, params, tags = list(metrics), list(params), list(tags)
        while metrics or params or tags:
            p, t = params[:MAX_PARAMS_PER_BATCH], tags[:MAX_PARAMS_PER_BATCH]
            mm = metrics[: max(0, MAX_METRICS_PER_BATCH - len(p) - len(t))]
            self.client.log_batch(self.run_id, metrics=mm, params=p, tags=t)
            metrics, params, tags = metrics[len(mm):], params[len(p):], tags[len(t):]

    def checkpoint_bytes(self, run_id: Optional[str]) -> Optional[bytes]:
        """The last epoch checkpoint of ``run_id`` (this run or another), or None."""
        if not run_id:
            return None
        tags = self.tags if run_id == self.run_id else self.client.get_run(run_id).data.tags
        if not tags.get(CHECKPOINT_EPOCH):
            return None
        with tempfile.TemporaryDirectory() as tmp:
            return Path(self.client.download_artifacts(run_id, "checkpoint/checkpoint.npz", tmp)).read_bytes()

    def mark_resumed(self, from_run: Optional[str], epoch: int) -> None:
        """The trial continues after ``epoch`` from ``from_run``'s checkpoint. That run's curve up to
        ``epoch`` is copied here (one curve per trial), and it, with the attempts it had continued,
        is nested under this run: kept, but out of the default view."""
        from mlflow.entities import RunTag

        tags = [RunTag(RESUMED_AT, str(epoch))]
        if from_run and from_run != self.run_id:
            tags.append(RunTag(RESUMED_FROM, from_run))
            self._copy_history(from_run, epoch)
            self.logged_through = max(self.logged_through, epoch)
            for run in self.tracker.trial_runs(self.experiment_id, self.key):
                if run.info.run_id == from_run or run.data.tags.get(PARENT_RUN) == from_run:
                    self.client.log_batch(run.info.run_id, tags=[RunTag(PARENT_RUN, self.run_id),
                                                                  RunTag(SUPERSEDED_BY, self.run_id)])
        self.client.log_batch(self.run_id, tags=tags)

    def _copy_history(self, from_run: str, epoch: int) -> None:
        """Every per-epoch metric of ``from_run`` at steps 1..``epoch``, with its own timestamps (so a
        copy made twice stores nothing twice)."""
        from mlflow.entities import Metric

        points = []
        for name in self.client.get_run(from_run).data.metrics:
            points += [Metric(name, m.value, m.timestamp, m.step)
                       for m in self.client.get_metric_history(from_run, name) if 1 <= m.step <= epoch]
        for i in range(0, len(points), MAX_METRICS_PER_BATCH):
            self.client.log_batch(self.run_id, metrics=points[i : i + MAX_METRICS_PER_BATCH])

    def log_params(self, params: dict) -> None:
        from mlflow.entities import Param

        # Identical values may be logged again on a retry; MLflow only refuses a changed param.
        self._write(params=[Param(k, str(v)) for k, v in params.items()])

    def _epoch_metrics(self, epochs: Iterable[tuple[int, dict, Optional[int]]]) -> list:
        """``(epoch, metrics, timestamp)`` as MLflow metrics at step ``epoch``, for the epochs after
        :attr:`logged_through` (which moves on: call it for metrics about to be written)."""
        from mlflow.entities import Metric

        out = []
        for epoch, metrics, timestamp in epochs:
            if epoch <= self.logged_through or not metrics:
                continue
            self.logged_through = epoch
            now = timestamp if timestamp is not None else now_ms()
            out += [Metric(k, float(metrics[k]), now, epoch) for k in EPOCH_METRICS if k in metrics]
            if "seconds" in metrics:
                out.append(Metric("epoch_seconds", float(metrics["seconds"]), now, epoch))
        return out

    def log_epochs(self, epochs: Sequence[tuple[int, dict, Optional[int]]], checkpoint: Optional[Path] = None,
                   checkpoint_epoch: Optional[int] = None) -> None:
        """Epochs' metrics (``(epoch, metrics, timestamp)``, timestamp in epoch ms or None for now),
        in one batch; with ``checkpoint`` (the file after ``checkpoint_epoch``) its tag in that
        batch and the file after it.

        The metrics go first, the file last: a checkpoint file never gets ahead of the metrics
        logged. A trial resumed from a file continues after the epoch the file holds (not the
        tag's), so a write that fails between the two costs an epoch trained again, never an
        epoch's metrics. The tag can thus name an epoch whose file never arrived: the reader
        then finds the previous file, or none (and starts at epoch 1).

        Give each epoch its own time, so that writing the same epochs again stores nothing twice.
        """
        from mlflow.entities import RunTag

        tags = [RunTag(CHECKPOINT_EPOCH, str(checkpoint_epoch))] if checkpoint is not None else []
        self._write(metrics=self._epoch_metrics(epochs), tags=tags)
        if checkpoint is not None:
            self.client.log_artifact(self.run_id, str(checkpoint), "checkpoint")
            self.tags[CHECKPOINT_EPOCH] = str(checkpoint_epoch)

    def log_epoch(self, epoch: int, metrics: dict, checkpoint: Optional[Path] = None,
                  timestamp: Optional[int] = None) -> None:
        """One epoch's metrics, with ``checkpoint`` (its file) the checkpoint too: see :meth:`log_epochs`."""
        self.log_epochs([(epoch, metrics, timestamp)] if metrics else [], checkpoint, epoch)

    def save_checkpoint(self, path: Path, epoch: int) -> None:
        self.log_epoch(epoch, {}, path)

    def finish_with(self, artifacts: dict[str, bytes], metrics: dict, stopped_early: bool,
                    epochs: Sequence[tuple[int, dict, Optional[int]]] = ()) -> tuple[str, str]:
        """The last ``epochs``' metrics (as :meth:`log_epochs`), the final metrics and the
        stopped-early tag in one batch; the run's artifacts (file name -> bytes) in one call;
        FINISHED; then the duplicate rule.

        Returns ``("FINISHED", "")``, or ``("DUPLICATE", reason)`` when another run decides the trial.
        """
        from mlflow.entities import Metric, RunTag

        now = now_ms()
        final = self._epoch_metrics(epochs) + [Metric(k, float(v), now, 0) for k, v in metrics.items()]
        tags = [RunTag(STOPPED_EARLY, str(int(metrics["epochs_run"])))] if stopped_early else []
        self._write(metrics=final, tags=tags)
        if artifacts:
            with tempfile.TemporaryDirectory() as tmp:
                for name, data in artifacts.items():
                    (Path(tmp) / name).write_bytes(data)
                self.client.log_artifacts(self.run_id, tmp)
        self.client.set_terminated(self.run_id, "FINISHED")
        return self._settle_duplicates()

    def _settle_duplicates(self) -> tuple[str, str]:
        runs = [r for r in self.tracker.trial_runs(self.experiment_id, self.key) if r.info.status == "FINISHED"]
        keeper = rules.deciding_runs(runs).get(self.key)
        keeper_id = keeper.info.run_id if keeper is not None else self.run_id
        for run in runs:
            if run.info.run_id != keeper_id:
                self.client.set_tag(run.info.run_id, REASON, f"duplicate of run {keeper_id}")
                self.client.set_terminated(run.info.run_id, "KILLED")
        if keeper_id != self.run_id:
            return "DUPLICATE", f"duplicate of run {keeper_id}"
        return "FINISHED", ""

    def fail(self, status: str, reason: str, tb: Optional[str] = None) -> None:
        """FAILED (an error of the trial's own, which would happen again; ``tb`` logged as
        ``error.txt``) or KILLED, with the reason."""
        from mlflow.entities import RunTag

        tags = [RunTag(REASON, reason[:MAX_TAG_VALUE])]
        if status == "FAILED":
            tags.append(RunTag(ERROR_KIND, DETERMINISTIC))
        self._write(tags=tags)
        if status == "FAILED" and tb:
            self.client.log_text(self.run_id, tb, "error.txt")
        self.client.set_terminated(self.run_id, status)
