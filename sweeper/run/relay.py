"""Workers train; the driver writes MLflow.

A worker that wrote its own run paid for it in the CPU time the trials need: importing MLflow and
opening its store took 2-7 s in every new worker process, and its calls ~0.3 s per trial (on
2 CPUs and 5-s trials the sweep ran at 47% of the ideal). Here the trial runs with a
:class:`RelayRecorder` that turns every recorder call into a message, and the Ray task is a
generator (a Ray streaming generator) that hands each message to the driver as it is made. The
driver, whose MLflow client is open already, applies them in order with the run's
:class:`~ledger.recorder.RunRecorder` (:class:`TrialStream`). MLflow is never imported in a
worker, and worker nodes need no route to the tracking server.

What a trial reads comes with its task instead: the checkpoint to start from, as bytes. The driver
keeps each trial's last checkpoint; when a worker dies it submits the trial again with it (up to
``failures.max_retries`` times), so the retry continues from the last epoch in the same run with
``sweep.attempt`` raised. Before the first submission it checks, as the worker did, that no other
submission has finished the point meanwhile.
"""
from __future__ import annotations

import dataclasses
import queue
import tempfile
import threading
import traceback
from pathlib import Path
from typing import Optional

from ledger.recorder import RunRecorder
from sweeper.run.records import final_artifacts, load_checkpoint_bytes, model_params
from sweeper.run.trial import TrialOutcome, TrialTask, error_signature, execute


class RelayRecorder:
    """The worker's side: the recorder protocol of :mod:`sweeper.run.records`, as messages."""

    def __init__(self, task: TrialTask, send):
        self.task, self.send = task, send

    def start(self, **info) -> int:
        self.send("start", info)
        return 1  # the driver knows the real attempt and puts it in the outcome

    def finished_elsewhere(self):
        return None  # checked by the driver before it submitted the task

    def load_checkpoint(self, optimizer):
        if self.task.checkpoint is None:
            return None
        model, meta = load_checkpoint_bytes(self.task.checkpoint, optimizer)
        self.send("resumed", self.task.checkpoint_run, meta["epoch"])
        return model, meta

    def describe(self, model, n_train, n_val, n_test):
        self.send("describe", model_params(model, n_train, n_val, n_test))

    def log_epoch(self, epoch, metrics):
        self.send("log_epoch", epoch, dict(metrics))

    def save_checkpoint(self, path, epoch):
        self.send("checkpoint", epoch, Path(path).read_bytes())

    def finish(self, model, metrics, stopped_early):
        self.send("finish", final_artifacts(self.task.config, model), dict(metrics), stopped_early)
        return "FINISHED", ""  # provisional: the driver applies the duplicate rule

    def fail(self, status, reason, tb=None):
        self.send("fail", status, reason, tb)


def stream_trial(task: TrialTask, coordinator=None, data=None):
    """The Ray task: run the trial in a thread and yield its messages, the outcome last.

    ``data``: the sweep's PreparedData, which Ray resolves from the one object the driver put
    (its arrays map the node's shared object store, read-only, without a copy).
    A generator cannot yield from inside ``fit``'s callbacks, hence the thread and the queue.
    """
    from sweeper.run.asha import ActorProxy

    messages: queue.SimpleQueue = queue.SimpleQueue()

    def run():
        try:
            proxy = None if coordinator is None else ActorProxy(coordinator)
            outcome = execute(task, proxy, RelayRecorder(task, lambda *m: messages.put(m)), data)
            messages.put(("outcome", outcome))
        except BaseException as exc:  # a bug outside the trial's own errors: still one last message
            messages.put(("crash", f"{type(exc).__name__}: {exc}", error_signature(exc), traceback.format_exc()))

    threading.Thread(target=run, name=f"trial {task.run_name}", daemon=True).start()
    while True:
        message = messages.get()
        yield message
        if message[0] in ("outcome", "crash"):
            return


class TrialStream:
    """The driver's side of one trial: applies its messages to its MLflow run."""

    def __init__(self, trial, task: TrialTask, retries: int, experiment_id=None, tags=None):
        self.trial, self.task, self.retries_left = trial, task, retries
        self.recorder = RunRecorder(task, experiment_id, tags)
        self.attempt = 0
        self.finish: Optional[tuple] = None  # the "finish" message, recorded with the outcome
        self.epoch: Optional[tuple] = None  # a "log_epoch" waiting for its checkpoint

    @property
    def run_id(self) -> str:
        return self.task.run_id

    def duplicate_of(self) -> Optional[str]:
        """A FINISHED run of the same point from another submission: then this one is not trained."""
        other = self.recorder.finished_elsewhere()
        if other:
            self.recorder.fail("KILLED", f"duplicate: this point already finished in run {other}")
        return other

    def load_resume_checkpoint(self) -> None:
        """``sweeper resume``: start from the interrupted run's last checkpoint, if it has one."""
        data = self.recorder.checkpoint_bytes(self.task.resume_from)
        if data is not None:
            self.task = dataclasses.replace(self.task, checkpoint=data, checkpoint_run=self.task.resume_from)

    def flush(self) -> None:
        """Write what is held back (an epoch's metrics): the trial ended without another message."""
        if self.epoch is not None:
            self.recorder.log_epoch(*self.epoch)
            self.epoch = None

    def handle(self, message: tuple) -> Optional[TrialOutcome]:
        """Record one message; the trial's outcome once its last message is in, else None."""
        kind, *args = message
        rec = self.recorder
        if kind != "checkpoint":
            self.flush()
        if kind == "start":
            self.attempt = rec.start(**args[0])
        elif kind == "resumed":
            rec.mark_resumed(*args)
        elif kind == "describe":
            rec.log_params(args[0])
        elif kind == "log_epoch":
            # Held until the epoch's checkpoint (it follows at once): metrics and the checkpoint's
            # tag then go in one write instead of two. Any other message flushes it first.
            self.epoch = args
        elif kind == "checkpoint":
            epoch, data = args
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "checkpoint.npz"
                path.write_bytes(data)
                if self.epoch is not None and self.epoch[0] == epoch:
                    rec.log_epoch(*self.epoch, checkpoint=path)
                    self.epoch = None
                else:
                    self.flush()
                    rec.save_checkpoint(path, epoch)
            # What a retry after a worker death starts from.
            self.task = dataclasses.replace(self.task, checkpoint=data, checkpoint_run=self.run_id)
        elif kind == "finish":
            # Recorded with the outcome, which follows at once: the driver first gives the freed
            # worker its next trial (see Runner._pump).
            self.finish = args
        elif kind == "fail":
            rec.fail(*args)
        elif kind == "outcome":
            outcome: TrialOutcome = args[0]
            outcome.attempt = self.attempt
            if self.finish is not None:
                outcome.status, outcome.reason = rec.finish_with(*self.finish)
            return outcome
        elif kind == "crash":
            reason, signature, tb = args
            rec.fail("FAILED", reason, tb)
            return TrialOutcome(self.task.key, self.run_id, "FAILED", reason, signature, attempt=self.attempt)
        else:
            raise ValueError(f"unknown message from trial {self.task.run_name}: {kind!r}")
        return None
