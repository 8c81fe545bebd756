"""The driver's side of one trial: its records applied, in order, to its MLflow run.

See :mod:`sweeper.trials.relay` for the worker's side. The driver also keeps what a retry needs: the
trial's last checkpoint, so that a trial whose worker died continues from its last epoch in the
same run with ``sweep.attempt`` raised.
"""
from __future__ import annotations

import dataclasses
import tempfile
import time
from pathlib import Path
from typing import Optional

from ledger.recorder import RunRecorder
from ledger.retry import StoreUnavailable
from ledger.tracking import Tracker
from sweeper.exits import first_line
from sweeper.trials import messages as m
from sweeper.trials.trial import TrialOutcome, TrialTask


#: Seconds of training a driver crash may cost a trial: an epoch's checkpoint (with the metrics of
#: the epochs it ends) is written when this long has passed since the trial's last write, else held.
#: Short trials then cost a write at their start and one at their end, however many epochs they run.
PERSIST_SECONDS = 10.0


class TrialStream:
    """Applies one trial's records to its run through a :class:`ledger.recorder.RunRecorder`.

    Writes are held and sent together (each is a transaction on SQLite, a request to a server):
    the worker's own tags with the params it describes next, epochs with their checkpoint, the
    last epochs with the final metrics. Exactly once holds through the checkpoint: epoch metrics
    are written only with a checkpoint file of their last epoch (or at the run's end), so a driver
    lost before a write loses only epochs after the last checkpoint written, which the next
    submission trains again and records once.
    """

    def __init__(self, trial, task: TrialTask, retries: int, tracker: Tracker, experiment_id: str,
                 tags: Optional[dict] = None, persist_seconds: float = PERSIST_SECONDS):
        self.trial, self.task, self.retries_left = trial, task, retries
        self.recorder = RunRecorder(tracker, task.run_id, task.key, experiment_id, tags)
        self.persist_seconds = persist_seconds
        self.attempt = 0
        self.epochs = 0  # epochs recorded by this stream (the first one triggers the claim's re-check)
        self.finish: Optional[m.Finished] = None  # recorded with the outcome
        self.started: Optional[m.Started] = None  # written with the params that follow it
        self.held: list[m.EpochDone] = []  # epochs not written yet
        self.checkpoint: Optional[m.Checkpoint] = None  # the last one, not written yet
        self.written_at = time.monotonic()
        # Epochs whose metrics this run holds (or holds back): a retry from an earlier checkpoint
        # trains them again, and the run keeps the first of each (metric steps stay unique in a run).
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
        """Write everything held (the start, epochs, the last checkpoint): the trial ended, failed,
        is stopped or its worker died."""
        self._begin()
        if self.held or self.checkpoint is not None:
            self._persist()

    def _begin(self, params: Optional[dict] = None) -> None:
        """The held start (RUNNING, the attempt, the worker's tags) with ``params``."""
        if self.started is not None:
            self.attempt = self.recorder.start(self.started.info, params)
            self.started = None
            self.written_at = time.monotonic()
        elif params:
            self.recorder.log_params(params)

    def _persist(self) -> None:
        """The held epochs' metrics, with the last checkpoint's tag, then its file."""
        epochs = [(e.epoch, e.metrics, e.at) for e in self.held]
        if self.checkpoint is None:
            self.recorder.log_epochs(epochs)
        else:
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "checkpoint.npz"
                path.write_bytes(self.checkpoint.data)
                self.recorder.log_epochs(epochs, path, self.checkpoint.epoch)
        self.held, self.checkpoint = [], None
        self.written_at = time.monotonic()

    def handle(self, record: m.Message) -> Optional[TrialOutcome]:
        """Record one record; the trial's outcome once its last record is in, else None."""
        rec = self.recorder
        if isinstance(record, m.Started):
            self.flush()  # a retry's start: what the died worker sent first
            self.started = record
        elif isinstance(record, m.Resumed):
            self._begin()
            rec.mark_resumed(record.from_run, record.epoch)
        elif isinstance(record, m.Described):
            self._begin(record.params)
        elif isinstance(record, m.EpochDone):
            if record.epoch not in self.logged:
                self.held.append(record)
                self.logged.add(record.epoch)
            self.epochs += 1
        elif isinstance(record, m.Checkpoint):
            self.checkpoint = record
            # What a retry after a worker death starts from.
            self.task = dataclasses.replace(self.task, checkpoint=record.data, checkpoint_run=self.run_id)
            if time.monotonic() - self.written_at >= self.persist_seconds:
                self._begin()
                self._persist()
        elif isinstance(record, m.Finished):
            # Recorded with the outcome, which follows at once: the driver first gives the freed
            # worker its next trial (see sweeper.trials.executor).
            self.finish = record
        elif isinstance(record, m.Failed):
            self.flush()
            rec.fail(record.status, record.reason, record.traceback)
        elif isinstance(record, m.Ended):
            outcome = record.outcome
            if self.finish is not None:
                self._begin()
                # The run ends here: a held checkpoint is of no more use, its epochs go with the results.
                epochs = [(e.epoch, e.metrics, e.at) for e in self.held]
                self.held, self.checkpoint = [], None
                outcome.status, outcome.reason = rec.finish_with(self.finish.artifacts, self.finish.metrics,
                                                                 self.finish.stopped_early, epochs)
            else:
                self.flush()
            outcome.attempt = self.attempt
            return outcome
        elif isinstance(record, m.Crashed):
            self.flush()
            rec.fail("FAILED", record.reason, record.traceback)
            return TrialOutcome(self.task.key, self.run_id, "FAILED", record.reason, record.signature,
                                attempt=self.attempt)
        else:
            raise TypeError(f"unknown record from trial {self.task.run_name}: {record!r}")
        return None
