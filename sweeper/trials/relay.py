"""Workers train; the driver writes MLflow. This is the worker's side.

A trial runs with a :class:`RelayRecorder` that turns every recorder call into a typed record
(:mod:`sweeper.trials.messages`), and the Ray task is a generator (a Ray streaming generator) that
hands each record to the driver as it is made. The driver, whose MLflow client is open already,
applies them in order (:class:`sweeper.trials.stream.TrialStream`). MLflow is never imported in a
worker (importing it and opening a store cost seconds in every new worker process), and worker
nodes need no route to the tracking server.

What a trial reads comes with its task instead: the checkpoint to start from, as bytes. The driver
keeps each trial's last checkpoint; when a worker dies it submits the trial again with it.
"""
from __future__ import annotations

import queue
import threading
import traceback
from pathlib import Path

from sweeper.trials import messages as m
from sweeper.trials.records import final_artifacts, load_checkpoint_bytes, model_params
from sweeper.trials.trial import TrialTask, error_signature, execute


class RelayRecorder:
    """The :class:`~sweeper.trials.records.Recorder` of a trial in a sweep: each call becomes a record."""

    def __init__(self, task: TrialTask, send):
        self.task, self.send = task, send

    def start(self, info: dict) -> int:
        self.send(m.Started(info))
        return 1  # the driver knows the real attempt and puts it in the outcome

    def load_checkpoint(self, optimizer):
        if self.task.checkpoint is None:
            return None
        model, meta = load_checkpoint_bytes(self.task.checkpoint, optimizer)
        self.send(m.Resumed(self.task.checkpoint_run, meta["epoch"]))
        return model, meta

    def describe(self, model, n_train, n_val, n_test):
        self.send(m.Described(model_params(model, n_train, n_val, n_test)))

    def log_epoch(self, epoch, metrics):
        self.send(m.EpochDone(epoch, dict(metrics)))

    def save_checkpoint(self, path, epoch):
        self.send(m.Checkpoint(epoch, Path(path).read_bytes()))

    def finish(self, model, metrics, stopped_early):
        self.send(m.Finished(final_artifacts(self.task.config, model), dict(metrics), stopped_early))
        return "FINISHED", ""  # provisional: the driver applies the duplicate rule

    def fail(self, status, reason, tb=None):
        self.send(m.Failed(status, reason, tb))


def stream_trial(task: TrialTask, coordinator=None, data=None):
    """The Ray task: run the trial in a thread and yield its records, the last one last.

    ``data``: the sweep's PreparedData, which Ray resolves from the one object the driver put
    (its arrays map the node's shared object store, read-only, without a copy).
    A generator cannot yield from inside ``fit``'s callbacks, hence the thread and the queue.
    """
    from sweeper.trials.asha import ActorProxy

    records: queue.SimpleQueue = queue.SimpleQueue()

    def run():
        try:
            proxy = None if coordinator is None else ActorProxy(coordinator)
            records.put(m.Ended(execute(task, data, proxy, RelayRecorder(task, records.put))))
        except BaseException as exc:  # a bug outside the trial's own errors: still one last record
            records.put(m.Crashed(f"{type(exc).__name__}: {exc}", error_signature(exc), traceback.format_exc()))

    threading.Thread(target=run, name=f"trial {task.run_name}", daemon=True).start()
    while True:
        record = records.get()
        yield record
        if isinstance(record, m.LAST):
            return
