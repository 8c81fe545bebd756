"""One trial: train one point with one seed, pinned to its CPUs, recording as it goes.

:func:`execute` is what a Ray worker runs (through :mod:`sweeper.trials.relay`, which streams what it
records to the driver) and what ``sweeper train`` runs in-process. It never raises for an error
of the trial's own (a diverging loss, a shape that slipped through): it records the run as FAILED
with the reason and returns an outcome, so the sweep goes on. A worker that *dies* (killed, out
of memory) cannot record anything; the driver submits the trial again and :func:`execute`
continues from the last epoch checkpoint with ``sweep.attempt`` raised.
"""
from __future__ import annotations

import gc
import os
import re
import socket
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import cnn

from sweeper.plan.trials import Trial
from sweeper.trials import pages
from sweeper.trials.asha import LocalCoordinator


@dataclass(frozen=True)
class TrialTask:
    """The plan's :class:`~sweeper.plan.trials.Trial` as a worker gets it: with its run, its CPUs and
    what it continues from. Small and picklable (no Plan, no config objects)."""

    trial: Trial
    run_id: Optional[str] = None  # the MLflow child run; None: record nothing (``sweeper train``)
    cpus: int = 1
    resume_from: Optional[str] = None  # a KILLED run whose checkpoint this trial starts from
    # In a sweep the driver hands the checkpoint over itself (see sweeper.trials.stream): its bytes,
    # and the run that wrote it.
    checkpoint: Optional[bytes] = None
    checkpoint_run: Optional[str] = None
    profile: bool = False  # time each phase into TrialOutcome.profile (the sweep benchmark's hook)
    page_data: str = "auto"  # resources.page_data: read shared images batch by batch (see pages.py)

    @property
    def key(self) -> tuple[str, int]:
        return self.trial.key

    @property
    def seed(self) -> int:
        return self.trial.seed

    @property
    def run_name(self) -> str:
        return self.trial.run_name

    @property
    def config(self) -> dict:
        """The point's resolved settings: ``seed``, ``data``, ``model``, ``train``."""
        return self.trial.point.config

    @property
    def spec(self):
        """The point's network, a :class:`cnn.spec.ModelSpec` built by the plan."""
        return self.trial.point.spec


@dataclass
class TrialOutcome:
    key: tuple[str, int]
    run_id: Optional[str]
    status: str  # FINISHED | FAILED | DUPLICATE
    reason: str = ""
    signature: str = ""  # errors with equal signatures count as "the same error"
    metrics: dict = field(default_factory=dict)
    history: list = field(default_factory=list)
    seconds: float = 0.0
    attempt: int = 1
    stopped_early: bool = False
    # Where the trial's time went (seconds per phase, plus pid and wall-clock start/end), so the
    # sweep benchmark can tell training from the recording and scheduling around it.
    profile: dict = field(default_factory=dict)


def error_signature(exc: BaseException) -> str:
    """The error's type and message with numbers blanked: NaN at step 3 and at step 7 are one error."""
    return f"{type(exc).__name__}: {re.sub(r'[0-9]+(?:[.][0-9]+)?(?:e[-+]?[0-9]+)?', '#', str(exc))}"[:300]


def build(config: dict, seed: int, spec, normalizer=None):
    """The model (``spec``: a :class:`cnn.spec.ModelSpec`) and optimizer of a point's settings."""
    t = config["train"]
    model = cnn.Model(spec, seed=seed, dtype=t["dtype"], normalizer=normalizer)
    optimizer = cnn.make_optimizer(t["optimizer"], t["learning_rate"], t.get("momentum", 0.9), t.get("weight_decay", 0.0))
    return model, optimizer


def schedule(train: dict) -> cnn.Schedule:
    """The learning rate of each epoch from a point's ``train`` settings (absent ones: the defaults
    of runs recorded before schedules existed, a constant rate)."""
    return cnn.Schedule(train["learning_rate"], train["epochs"], train.get("schedule", "constant"),
                        train.get("warmup_epochs", 0), train.get("step_epochs", 5), train.get("step_gamma", 0.1),
                        train.get("min_lr_factor", 0.0))


class _Timed:
    """Proxies a recorder (or coordinator), adding the seconds spent in each method to ``profile``.

    Only with ``TrialTask.profile``: the sweep benchmark's hook, off the trial's usual path."""

    def __init__(self, inner, profile: dict):
        self._inner, self._profile = inner, profile

    def __getattr__(self, name):
        attr = getattr(self._inner, name)
        if not callable(attr):
            return attr

        def timed(*args, **kwargs):
            t = time.perf_counter()
            try:
                return attr(*args, **kwargs)
            finally:
                self._profile[name] = self._profile.get(name, 0.0) + time.perf_counter() - t

        return timed


def blas_threads() -> int:
    """Threads the BLAS will actually use now, as threadpoolctl reports them (recorded per trial)."""
    from threadpoolctl import threadpool_info

    return max((p["num_threads"] for p in threadpool_info() if p.get("user_api") == "blas"), default=0)


def execute(task: TrialTask, data, coordinator=None, recorder=None) -> TrialOutcome:
    """Train ``task`` on ``data`` (the sweep's :class:`~sweeper.plan.data.PreparedData`, prepared once
    by its one owner), telling ``recorder`` what happens (default: nothing is recorded)."""
    from threadpoolctl import threadpool_limits

    from sweeper.trials.records import NullRecorder

    started = time.perf_counter()
    limit = pages.threshold(task.page_data)
    if limit is not None and data.nbytes >= limit:
        # Data large enough to page: what earlier trials of this worker left goes back first (a
        # collection costs 10-20 ms, nothing beside such trials' epochs, too much for 1 s trials).
        gc.collect()
        pages.trim_heap()
    _reset_peak_rss()
    outcome = TrialOutcome(task.key, task.run_id, "FAILED")
    recorder, coordinator = recorder or NullRecorder(), coordinator or LocalCoordinator(None)
    outcome.profile["pid"] = os.getpid()  # which worker ran it, even unprofiled (memory figures name it)
    if task.profile:
        outcome.profile["started_at"] = time.time()
        recorder, coordinator = _Timed(recorder, outcome.profile), _Timed(coordinator, outcome.profile)
    try:
        # BLAS threads = the trial's CPUs, so trials side by side do not oversubscribe the cores.
        with threadpool_limits(limits=task.cpus):
            outcome.attempt = recorder.start({"threads": blas_threads(), "pid": os.getpid(),
                                              "host": socket.gethostname()})
            _train(task, recorder, coordinator, outcome, data)
    except Exception as exc:  # the trial's own error: record it, do not take the sweep down
        outcome.status, outcome.signature = "FAILED", error_signature(exc)
        outcome.reason = f"{type(exc).__name__}: {exc}"
        recorder.fail("FAILED", outcome.reason, traceback.format_exc())
    outcome.seconds = time.perf_counter() - started
    if task.profile:
        outcome.profile["ended_at"] = time.time()
    outcome.profile.update(_memory())
    return outcome


def _reset_peak_rss() -> None:
    """Start this trial's peak RSS afresh (Linux: ``5`` into ``clear_refs`` resets ``VmHWM``), so a
    worker that ran other trials before reports this trial's peak, not theirs."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def _memory() -> dict:
    """This process's peak resident set ``max_rss`` in bytes since :func:`_reset_peak_rss` (shared
    pages it touched included) and, on Linux, its resident memory now by kind (``rss_anon``
    private, ``rss_shmem`` shared memory such as Ray's object store)."""
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = {"max_rss": peak if sys.platform == "darwin" else peak * 1024}
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("RssAnon", "RssFile", "RssShmem"):
                out[f"rss_{key[3:].lower()}"] = int(value.split()[0]) * 1024
            elif key == "VmHWM":
                out["max_rss"] = int(value.split()[0]) * 1024
    except OSError:
        pass
    return out


def _train(task: TrialTask, recorder, coordinator, outcome: TrialOutcome, data) -> None:
    config, profile = task.config, outcome.profile
    began = time.perf_counter()
    prepared = data
    # Shared object-store images are read batch by batch and their pages handed back (see pages.py).
    parts = (prepared.train, prepared.val, prepared.test)
    min_bytes = pages.threshold(task.page_data)
    train, val, test = parts if min_bytes is None else pages.paged(*parts, min_bytes=min_bytes)
    profile["paged_data"] = isinstance(train.x, pages.PagedArray)
    profile["data"] = time.perf_counter() - began
    profile["max_rss_data"] = _memory()["max_rss"]  # the peak once the data is mapped
    model, optimizer = build(config, task.seed, task.spec, prepared.normalizer)
    start_epoch, history = 1, []
    checkpoint = recorder.load_checkpoint(optimizer)
    if checkpoint is not None:
        model, meta = checkpoint
        if model.normalizer is None:  # a checkpoint written before models carried their normalisation
            model.normalizer = prepared.normalizer
        start_epoch, history = meta["epoch"] + 1, meta["history"]
    recorder.describe(model, len(train), 0 if val is None else len(val), len(test))
    t = config["train"]

    def on_epoch(report: cnn.EpochReport) -> bool:
        recorder.log_epoch(report.epoch, report.metrics)
        if report.epoch < t["epochs"]:
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "checkpoint.npz"
                began = time.perf_counter()
                cnn.save_checkpoint(path, report.model, report.optimizer, report.epoch, report.history)
                profile["write_checkpoint"] = profile.get("write_checkpoint", 0.0) + time.perf_counter() - began
                recorder.save_checkpoint(path, report.epoch)
        return not coordinator.report(task.key, report.epoch, report.metrics)

    fit_started = time.perf_counter()
    augment = cnn.Augment(t.get("crop_padding", 0), t.get("hflip", False))
    result = cnn.fit(model, optimizer, train, val, epochs=t["epochs"], batch_size=t["batch_size"], seed=task.seed,
                     callbacks=[on_epoch], start_epoch=start_epoch, history=history, augment=augment or None,
                     schedule=schedule(t))
    profile["fit"] = time.perf_counter() - fit_started  # the epochs, with the callbacks' recording
    profile["max_rss_fit"] = _memory()["max_rss"]
    train_seconds = profile["fit"] + sum(e["seconds"] for e in history)
    began = time.perf_counter()
    test_loss, test_accuracy = cnn.evaluate(model, test, t["batch_size"])
    profile["evaluate"] = time.perf_counter() - began
    pages.release_all(train, val, test)  # the worker's next trial starts without them
    # The worker's peak RSS since this trial began: what a node must hold per trial slot.
    metrics = {"test_loss": test_loss, "test_accuracy": test_accuracy, "train_seconds": train_seconds,
               "epochs_run": result.epochs_run, "peak_rss_mib": round(_memory()["max_rss"] / 2**20, 1)}
    status, reason = recorder.finish(model, metrics, result.stopped_early)
    for name in ("val_accuracy", "val_loss"):  # already logged per epoch; the search reads them here
        if result.history and name in result.history[-1]:
            metrics[name] = result.history[-1][name]
    outcome.metrics, outcome.history, outcome.stopped_early = metrics, result.history, result.stopped_early
    outcome.status, outcome.reason = status, reason
