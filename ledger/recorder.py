"""Where a trial writes what happens: an MLflow child run, or the terminal for ``sweeper train``.

Exactly once: a point's trial is done when one FINISHED run with its hash and repeat exists.
Two submissions may still train the same point at once (two terminals, one store). Before
submitting a trial, its driver looks for a FINISHED run of the point and skips it if there is
one. When the trial has finished, it looks again: of all FINISHED runs of the point, the earliest
started (then the smallest run id) is kept, and every other one is marked KILLED with the reason
"duplicate of run ...". Every submission applies the same rule, and the last to finish sees all, so exactly one FINISHED run remains and
the duplicate's metrics stay visible instead of being dropped.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

from ledger.tracking import ATTEMPT, DETERMINISTIC, ERROR_KIND, POINT, REASON, REPEAT, Tracker

EPOCH_METRICS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy")
CHECKPOINT_EPOCH = "sweep.checkpoint_epoch"


class RunRecorder:
    """The driver's writer of one trial's MLflow child run (created SCHEDULED by the driver).

    It applies what a trial sends (see :mod:`sweeper.relay`): the trial itself runs with a
    :class:`~sweeper.relay.RelayRecorder`, or a :class:`NullRecorder` in ``sweeper train``.
    """

    def __init__(self, task, experiment_id=None, tags=None):
        """``experiment_id`` and ``tags``: what the creator of the run knows already (saves a read)."""
        self.task = task
        self.run_id = task.run_id
        self.tracker = Tracker(task.tracking_uri)
        self.client = self.tracker.client
        if experiment_id is None or tags is None:
            run = self.client.get_run(self.run_id)
            experiment_id, tags = run.info.experiment_id, run.data.tags
        self.experiment_id, self.tags = experiment_id, dict(tags)

    def start(self, **info) -> int:
        from mlflow.entities import RunTag

        attempt = int(self.tags.get(ATTEMPT, "0")) + 1
        # One batch, not a write per tag: on SQLite each write is a transaction of its own.
        tags = {ATTEMPT: attempt, **{f"sweep.{k}": v for k, v in info.items()}}
        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])
        self.client.update_run(self.run_id, status="RUNNING")
        self.tags = {**self.tags, ATTEMPT: str(attempt)}  # a retry recorded by the same recorder counts on
        return attempt

    def _finished_runs(self):
        key = self.task.key
        return self.tracker.trials(self.experiment_id, "FINISHED",
                                   f"tags.`{POINT}` = '{key[0]}' and tags.`{REPEAT}` = '{key[1]}'", params=False)

    def finished_elsewhere(self):
        others = [r.info.run_id for r in self._finished_runs() if r.info.run_id != self.run_id]
        return others[0] if others else None

    def checkpoint_bytes(self, run_id) -> bytes | None:
        """The last epoch checkpoint of ``run_id`` (this run or another), or None."""
        if not run_id:
            return None
        tags = self.tags if run_id == self.run_id else self.client.get_run(run_id).data.tags
        if not tags.get(CHECKPOINT_EPOCH):
            return None
        with tempfile.TemporaryDirectory() as tmp:
            return Path(self.client.download_artifacts(run_id, "checkpoint/checkpoint.npz", tmp)).read_bytes()

    def mark_resumed(self, from_run, epoch):
        if from_run and from_run != self.run_id:
            self.client.set_tag(self.run_id, "sweep.resumed_from", from_run)
        self.client.set_tag(self.run_id, "sweep.resumed_at_epoch", str(epoch))

    def log_params(self, params: dict):
        from mlflow.entities import Param

        # Identical values may be logged again on a retry; MLflow only refuses a changed param.
        self.client.log_batch(self.run_id, params=[Param(k, str(v)) for k, v in params.items()])

    def log_epoch(self, epoch, metrics, checkpoint=None):
        """The epoch's metrics; with ``checkpoint`` (its file) the checkpoint too, in one batch with its tag."""
        from mlflow.entities import Metric, RunTag

        now = _now_ms()
        batch = [Metric(k, float(metrics[k]), now, epoch) for k in EPOCH_METRICS if k in metrics]
        batch.append(Metric("epoch_seconds", float(metrics["seconds"]), now, epoch))
        tags = []
        if checkpoint is not None:  # the file first: the tag says a checkpoint can be downloaded
            self.client.log_artifact(self.run_id, str(checkpoint), "checkpoint")
            tags = [RunTag(CHECKPOINT_EPOCH, str(epoch))]
        self.client.log_batch(self.run_id, metrics=batch, tags=tags)

    def save_checkpoint(self, path, epoch):
        self.client.log_artifact(self.run_id, str(path), "checkpoint")
        self.client.set_tag(self.run_id, CHECKPOINT_EPOCH, str(epoch))

    def finish_with(self, artifacts: dict, metrics, stopped_early):
        """Final metrics, the run's artifacts (file name -> bytes), FINISHED, then the duplicate rule."""
        from mlflow.entities import Metric

        now = _now_ms()
        self.client.log_batch(self.run_id, metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()])
        with tempfile.TemporaryDirectory() as tmp:
            for name, data in artifacts.items():
                (Path(tmp) / name).write_bytes(data)
                self.client.log_artifact(self.run_id, str(Path(tmp) / name))
        if stopped_early:
            self.client.set_tag(self.run_id, "sweep.stopped_early", str(int(metrics["epochs_run"])))
        self.client.set_terminated(self.run_id, "FINISHED")
        return self._settle_duplicates()

    def _settle_duplicates(self):
        runs = sorted(self._finished_runs(), key=lambda r: (r.info.start_time, r.info.run_id))
        keeper = runs[0].info.run_id if runs else self.run_id
        for run in runs[1:]:
            self.client.set_tag(run.info.run_id, REASON, f"duplicate of run {keeper}")
            self.client.set_terminated(run.info.run_id, "KILLED")
        if keeper != self.run_id:
            return "DUPLICATE", f"duplicate of run {keeper}"
        return "FINISHED", ""

    def fail(self, status, reason, tb=None):
        if status == "FAILED":
            self.client.set_tag(self.run_id, ERROR_KIND, DETERMINISTIC)
            if tb:
                self.client.log_text(self.run_id, tb, "error.txt")
        self.client.set_tag(self.run_id, REASON, reason[:4000])
        self.client.set_terminated(self.run_id, status)


def _now_ms() -> int:
    import time

    return int(time.time() * 1000)

