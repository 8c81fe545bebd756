"""The driver's side of one trial: its records applied, in order, to its MLflow run.

See :mod:`sweeper.trials.relay` for the worker's side. The driver also keeps what a retry needs: the
trial's last checkpoint, so that a trial whose worker died continues from its last epoch in the
same run with ``sweep.attempt`` raised.
"""
from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import Optional

from ledger.recorder import RunRecorder
from ledger.retry import StoreUnavailable
from ledger.tracking import Tracker
from sweeper.exits import first_line
from sweeper.trials import messages as m
from sweeper.trials.trial import TrialOutcome, TrialTask


class TrialStream:
    """Applies one trial's records to its run through a :class:`ledger.recorder.RunRecorder`."""

    def __init__(self, trial, task: TrialTask, retries: int, tracker: Tracker, experiment_id: str,
                 tags: Optional[dict] = None):
        self.trial, self.task, self.retries_left = trial, task, retries
        self.recorder = RunRecorder(tracker, task.run_id, task.key, experiment_id, tags)
        self.attempt = 0
        self.epochs = 0  # epochs recorded by this stream (the first one triggers the claim's re-check)
        self.finish: Optional[m.Finished] = None  # recorded with the outcome
        self.epoch: Optional[m.EpochDone] = None  # waiting for its checkpoint
        # Epochs whose metrics this run holds: a retry from an earlier checkpoint trains them
        # again, and the run keeps the first of each (metric steps stay unique in a run).
        self.logged: set[int] = set()

    @property
    def run_id(self) -> str:
        return self.task.run_id

    def load_resume_checkpoint(self) -> Optional[str]:
        """Start from the interrupted run's last checkpoint, if it has one; if it cannot be read
        (its artifact deleted), from epoch 1: returns a note saying so."""
        try:
            data = self.recorder.checkpoint_bytes(self.task.resume_from)
        except StoreUnavailable:
            raise
        except Exception as exc:  # noqa: BLE001 -- the file is gone or unreadable: train from the start
            return (f"the checkpoint of run {self.task.resume_from} is missing ({first_line(exc, 200)}): "
                    "starting from epoch 1")
        if data is not None:
            self.task = dataclasses.replace(self.task, checkpoint=data, checkpoint_run=self.task.resume_from)
        return None

    def flush(self) -> None:
        """Write what is held back (an epoch's metrics): the trial ended without another record."""
        if self.epoch is not None:
            self._log_epoch(self.epoch)
            self.epoch = None

    def _log_epoch(self, record: m.EpochDone, checkpoint: Optional[Path] = None) -> None:
        metrics = {} if record.epoch in self.logged else record.metrics
        self.recorder.log_epoch(record.epoch, metrics, checkpoint=checkpoint, timestamp=record.at)
        self.logged.add(record.epoch)

    def handle(self, record: m.Message) -> Optional[TrialOutcome]:
        """Record one record; the trial's outcome once its last record is in, else None."""
        rec = self.recorder
        if not isinstance(record, m.Checkpoint):
            self.flush()
        if isinstance(record, m.Started):
            self.attempt = rec.start(record.info)
        elif isinstance(record, m.Resumed):
            rec.mark_resumed(record.from_run, record.epoch)
        elif isinstance(record, m.Described):
            rec.log_params(record.params)
        elif isinstance(record, m.EpochDone):
            # Held until the epoch's checkpoint (it follows at once): metrics and the checkpoint's
            # tag then go in one write instead of two. Any other record flushes it first.
            self.epoch = record
            self.epochs += 1
        elif isinstance(record, m.Checkpoint):
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "checkpoint.npz"
                path.write_bytes(record.data)
                if self.epoch is not None and self.epoch.epoch == record.epoch:
                    self._log_epoch(self.epoch, checkpoint=path)
                    self.epoch = None
                else:
                    self.flush()
                    rec.save_checkpoint(path, record.epoch)
            # What a retry after a worker death starts from.
            self.task = dataclasses.replace(self.task, checkpoint=record.data, checkpoint_run=self.run_id)
        elif isinstance(record, m.Finished):
            # Recorded with the outcome, which follows at once: the driver first gives the freed
            # worker its next trial (see sweeper.trials.executor).
            self.finish = record
        elif isinstance(record, m.Failed):
            rec.fail(record.status, record.reason, record.traceback)
        elif isinstance(record, m.Ended):
            outcome = record.outcome
            outcome.attempt = self.attempt
            if self.finish is not None:
                outcome.status, outcome.reason = rec.finish_with(self.finish.artifacts, self.finish.metrics,
                                                                 self.finish.stopped_early)
            return outcome
        elif isinstance(record, m.Crashed):
            rec.fail("FAILED", record.reason, record.traceback)
            return TrialOutcome(self.task.key, self.run_id, "FAILED", record.reason, record.signature,
                                attempt=self.attempt)
        else:
            raise TypeError(f"unknown record from trial {self.task.run_name}: {record!r}")
        return None
