"""Run a plan's pending trials on Ray and keep MLflow, the terminal and the plan in agreement.

Scheduling is Ray's: each trial is one Ray task asking for ``cpus_per_trial`` CPUs. The task
streams what the trial records to this driver, which writes it to MLflow (see
:mod:`sweeper.relay`), and the driver submits a trial again when its worker dies (up to
``max_retries`` times, from the trial's last epoch checkpoint). The driver bounds the tasks in
flight to the free slots (the cap on concurrent trials, or the cluster's CPUs divided by
``cpus_per_trial``), longest trials first by the plan's cost estimate (a long trial started last
would leave the other CPUs idle at the end). No task waits queued in Ray: a queued lease makes Ray start extra worker
processes, and it takes the CPU a trial lends while it blocks in ``ray.get`` (early stopping),
so three trials would train on two CPUs. Instead the driver creates the next child run ahead
(SCHEDULED, one at a time), so a slot that frees gets its task at once; a run created ahead that
never started is deleted when the command ends.

Before a trial is submitted its run is contested as a claim (:mod:`ledger.claims`): a trial another
live submission holds is not trained here but waited for (``elsewhere`` when it finishes there,
claimed again when it fails there or its driver is lost); the claim is checked once more at the
trial's first epoch. The driver reacts to outcomes:

* an error of the trial's own fails that point, and the sweep goes on;
* the same error on ``stop_after_same_error`` points stops the sweep with one message;
* Ctrl-C or SIGTERM cancels the running tasks and marks their runs KILLED; ``sweeper resume``
  continues.
No child run of this submission is left RUNNING or SCHEDULED when :meth:`Runner.run` returns.
How each trial and the submission end (outcomes counted, cancelling, cleanup, the result) is
:mod:`sweeper.run.ending`'s.
"""
from __future__ import annotations

import os
import signal
import time
from collections import Counter, deque
from typing import Optional

from ledger.claims import Claims
from ledger.liveness import stale_after
from ledger.schema import ATTEMPT
from ledger.selection import Selection
from ledger.tracking import Tracker
from sweeper.app.progress import Counts, Progress
from sweeper.plan.cost import longest_first
from sweeper.plan.points import Plan, Trial
from sweeper.run import messages as m
from sweeper.run.ending import RunEnding
from sweeper.run.relay import stream_trial
from sweeper.run.session import (TERMINATED, SweepResult, Terminated, _first_line, _slots, handle_sigterm,
                                 hold_sigint, on_sigterm)
from sweeper.run.stream import TrialStream
from sweeper.run.trial import TrialOutcome, TrialTask

#: Seconds between two looks at the trials this submission waits for (held by another driver).
WAIT_POLL = 2.0


class Runner(RunEnding):
    """One submission: drives ``plan.pending`` (less ``skip``) to an end state."""

    #: Child runs created ahead of a free slot (creating one is 3 MLflow writes, 0.05-0.15 s here).
    ahead = 1

    def __init__(self, plan: Plan, tracker: Tracker, experiment_id: str, parent_id: str, *,
                 skip: dict | None = None, resume_from: dict | None = None, progress: Progress | None = None,
                 stale_seconds: float | None = None, data=None):
        """``resume_from``: ``key -> (run id, attempt)`` of interrupted runs with a checkpoint;
        ``data``: the sweep's PreparedData, put into Ray's object store once, in :meth:`run`."""
        self.plan, self.config = plan, plan.config
        self.data, self.data_ref = data, None
        self.tracker, self.experiment_id, self.parent_id = tracker, experiment_id, parent_id
        self.skip = skip or {}
        self.resume_from = resume_from or {}
        self.claims = Claims(tracker, experiment_id, stale_after(stale_seconds))
        self.waiting: dict = {}  # key -> (trial, the run holding its claim)
        self.next_poll = 0.0
        self.profile = bool(os.environ.get("SWEEPER_PROFILE"))
        self.progress = progress or Progress(quiet=True)
        self.counts = Counts(len(plan.trials), {"done_before": len(plan.done)})
        self.queue = deque(longest_first((t for t in plan.pending if t.key not in self.skip), self.config))
        self.counts.state["failed_before"] = len(plan.pending) - len(self.queue)
        self.counts.state["queued"] = len(self.queue)
        self.inflight: dict = {}  # ObjectRefGenerator -> TrialStream
        self.ready: deque = deque()  # (trial, run_id): runs created ahead, still counted as queued
        self.outcomes: list[TrialOutcome] = []
        self.failures: list[tuple[str, str]] = []
        self.signatures: Counter = Counter()
        # The best point so far by the sweep's selection rule, over the repeats finished in this
        # submission: the rule the report and `status` apply (ledger.selection), on validation.
        self.selection = Selection(self.config.selection.metric, self.config.selection.mode)
        self.scores: dict[str, list[float]] = {}
        self.best: tuple[str, float] | None = None
        self.cpus = 0
        self.started = time.monotonic()
        self.stamps: dict = {}  # run_id -> the driver's timings of that trial
        self.driver: Counter = Counter()  # seconds per driver activity

    # -- the loop --------------------------------------------------------------------------------

    def run(self) -> SweepResult:
        import ray

        res = self.config.resources
        self.cpus = int(ray.cluster_resources().get("CPU", 0))
        self.started = time.monotonic()
        self.remote = ray.remote(stream_trial)
        # One copy per node: every trial gets this reference, and Ray moves the object to a node
        # once and maps it read-only into each worker there (uint8 arrays, no per-trial copy).
        self.data_ref = ray.put(self.data) if self.data is not None else None
        from sweeper.run.asha import LocalCoordinator

        rule = self.config.early_stopping.model_dump() if self.config.early_stopping else None
        # Without a stopping rule there is nothing to coordinate: no actor (a process of its own)
        # and no round trip per epoch; each trial keeps a local, never-stopping coordinator.
        self.coordinator = None
        if rule:
            # Pinned to the driver's node: on a worker node it would die with that node and take
            # every trial's per-epoch report down with it.
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
            self.coordinator = ray.remote(num_cpus=0, scheduling_strategy=here)(LocalCoordinator).remote(
                rule, self.config.train.epochs)
        # Retries are the driver's (it holds the checkpoint a retry starts from), not Ray's.
        self.options = dict(num_cpus=res.cpus_per_trial, max_retries=0)
        stop_reason, interrupted, failure = None, None, None
        previous_term, previous_int = handle_sigterm(on_sigterm), hold_sigint()
        try:
            while self.queue or self.ready or self.inflight or self.waiting:
                stop_reason = self._fill(stop_reason)
                if self.waiting and stop_reason is None:
                    self._poll_waiting()
                ready = []
                if self.inflight:
                    ready, _ = ray.wait(list(self.inflight), num_returns=1, timeout=0.5)
                elif self.waiting:
                    time.sleep(0.5)
                if ready:  # and every other stream with a message waiting
                    ready, _ = ray.wait(list(self.inflight), num_returns=len(self.inflight), timeout=0)
                for gen in ready:
                    stop_reason = self._pump(gen, stop_reason) or stop_reason
                if stop_reason and self.inflight:
                    self._cancel_inflight(f"sweep stopped: {stop_reason}")
                if stop_reason:
                    break
                self.progress.update(self.counts, self._best_text(), self._remaining())
        except KeyboardInterrupt as exc:
            interrupted = "SIGTERM" if isinstance(exc, Terminated) or TERMINATED.is_set() else "Ctrl-C"
            # A second signal must not cut the cleanup short.
            previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
            handle_sigterm(signal.SIG_IGN)
            try:
                self._cancel_inflight(f"interrupted ({interrupted}); `sweeper resume` continues from the "
                                      "last epoch checkpoint")
            finally:
                signal.signal(signal.SIGINT, previous)
        except Exception as exc:  # the store failed (or Ray, or a bug): stop here, with one message
            failure = self._abandon(exc)
            if failure is not exc:
                raise failure from exc
            raise
        finally:
            handle_sigterm(previous_term)
            if previous_int is not None:
                signal.signal(signal.SIGINT, previous_int)
            if failure is None:
                began = time.time()
                self._discard_ready()
                self._reconcile()
                self.driver["reconcile"] += time.time() - began
            if self.coordinator is not None:
                try:
                    ray.kill(self.coordinator)
                except Exception:
                    pass
        return self._result(stop_reason, interrupted)

    def _fill(self, stop_reason: Optional[str]) -> Optional[str]:
        """Start trials while slots are free, and keep one child run created ahead."""
        res = self.config.resources
        slots = _slots(res.cpus_per_trial, res.max_concurrent)
        while (self.ready or self.queue) and len(self.inflight) < slots and stop_reason is None:
            trial, run_id = self.ready.popleft() if self.ready else self._prepare(self.queue.popleft())
            stop_reason = self._start(trial, run_id) or stop_reason
        while self.queue and len(self.ready) < self.ahead and stop_reason is None:
            self.ready.append(self._prepare(self.queue.popleft()))
        return stop_reason

    def _prepare(self, trial: Trial) -> tuple[Trial, str]:
        began = time.time()
        run_id = self.tracker.create_trial_run(self.experiment_id, self.parent_id, self.config.name, trial,
                                               trial.point.values)
        self.stamps[run_id] = {"run_name": trial.run_name, "create_run": time.time() - began}
        self.driver["create_run"] += time.time() - began
        return trial, run_id

    def _start(self, trial: Trial, run_id: str) -> Optional[str]:
        """Submit ``trial`` (its run created) if its claim wins; else wait for whoever holds it."""
        began = time.time()
        verdict = self.claims.contest(trial.key, run_id)
        if not verdict.won:
            self.tracker.discard(run_id)
            self.driver["claim"] += time.time() - began
            return self._lost_claim(trial, verdict)
        res = self.config.resources
        resume_from, attempt = self.resume_from.get(trial.key, (None, 0))
        task = TrialTask(trial.key, trial.seed, trial.point.config, trial.run_name, res.cpus_per_trial,
                         trial.point.spec.to_dict(), run_id, resume_from, profile=self.profile,
                         page_data=res.page_data)
        # The run was created just now by this driver (SCHEDULED): no need to read it back.
        stream = TrialStream(trial, task, self.config.failures.max_retries, self.tracker, self.experiment_id,
                             {ATTEMPT: str(attempt)})
        if task.resume_from:
            missing = stream.load_resume_checkpoint()
            if missing:
                self.progress.event(f"  {trial.run_name}: {missing}")
        self.driver["record_start"] += time.time() - began
        self._submit(stream)
        self.counts.move("queued", "running")
        return None

    def _lost_claim(self, trial: Trial, verdict, state: str = "queued") -> Optional[str]:
        """Another submission finished ``trial`` (``elsewhere``) or holds it (wait for it)."""
        if verdict.done_in:
            self.counts.move(state, "elsewhere")
            return None
        if state != "queued":
            self.counts.move(state, "queued")
        self.waiting[trial.key] = (trial, verdict.held_by)
        return None

    def _poll_waiting(self) -> None:
        """Trials held by other drivers: done there, or claimed again when they failed or their driver is lost."""
        if time.monotonic() < self.next_poll:
            return
        self.next_poll = time.monotonic() + WAIT_POLL
        for key, (trial, holder) in list(self.waiting.items())[:20]:
            status, live = self.claims.state_of(holder)
            if status == "FINISHED":
                del self.waiting[key]
                self.counts.move("queued", "elsewhere")
            elif not live:  # failed or stopped there, or its driver is lost: claim it again
                del self.waiting[key]
                self.queue.appendleft(trial)

    def _recheck_claim(self, gen, stream: TrialStream) -> Optional[str]:
        """At a trial's first epoch: a claim that lost a race stops here, after one epoch."""
        verdict = self.claims.recheck(stream.task.key, stream.run_id)
        if verdict.won:
            return None
        import ray

        ray.cancel(gen, force=True)
        del self.inflight[gen]
        stream.flush()
        holder = verdict.done_in or verdict.held_by
        self.tracker.terminate(stream.run_id, "KILLED", f"claimed by run {holder}: another submission trains it")
        self.progress.event(f"{stream.trial.run_name}: claimed by run {holder} of another submission; stopped")
        return self._lost_claim(stream.trial, verdict, state="running")

    def _submit(self, stream: TrialStream) -> None:
        gen = self.remote.options(name=stream.task.run_name, **self.options).remote(stream.task, self.coordinator, self.data_ref)
        self.stamps.setdefault(stream.run_id, {})["submitted_at"] = time.time()
        self.inflight[gen] = stream

    def _pump(self, gen, stop_reason: Optional[str] = None) -> Optional[str]:
        """Record the next message of a trial; at its outcome, account for it (maybe: stop)."""
        import ray
        from ray.exceptions import RayTaskError

        stream = self.inflight[gen]
        try:
            message = ray.get(next(gen))
        except StopIteration:
            message = m.Crashed("the trial's task ended without an outcome", "NoOutcome")
        except RayTaskError as exc:  # a bug in the task itself: running it again would fail again
            message = m.Crashed(f"{type(exc).__name__}: {_first_line(exc)}", type(exc).__name__)
        except Exception as exc:  # the worker or its node died, or Ray lost the task
            del self.inflight[gen]
            return self._worker_died(stream, exc)
        if isinstance(message, m.LAST):
            del self.inflight[gen]
            if isinstance(message, m.Ended) and message.outcome.status == "FINISHED":
                # The worker is free: hand it the next trial before recording this one's end
                # (final artifacts, FINISHED, the duplicate rule: ~0.1 s the CPU would sit idle).
                stop_reason = self._fill(stop_reason) or stop_reason
        began = time.time()
        epochs = stream.epochs
        outcome = stream.handle(message)
        self.driver[f"record_{type(message).__name__}"] += time.time() - began
        if outcome is None:
            if epochs == 0 and stream.epochs == 1 and not stream.task.checkpoint:
                return self._recheck_claim(gen, stream) or stop_reason
            return stop_reason
        return self._account(stream, outcome) or stop_reason

    def _worker_died(self, stream: TrialStream, exc: Exception) -> Optional[str]:
        """Submit the trial again from its last checkpoint, or fail it once retries are spent."""
        stream.flush()
        if stream.retries_left > 0:
            stream.retries_left -= 1
            self.progress.event(f"{stream.task.run_name}: {type(exc).__name__}; trying again"
                                + (" from its last checkpoint" if stream.task.checkpoint else ""))
            self._submit(stream)
            return None
        reason = (f"{type(exc).__name__}: the trial's worker failed "
                  f"{self.config.failures.max_retries + 1} time(s): {_first_line(exc)}")
        self.tracker.terminate(stream.run_id, "FAILED", reason)
        return self._account(stream, TrialOutcome(stream.task.key, stream.run_id, "FAILED", reason,
                                                  type(exc).__name__, attempt=stream.attempt))

    # -- reporting -------------------------------------------------------------------------------

    def _best_text(self) -> str:
        return "" if self.best is None else f"{self.selection.metric} {self.best[1]:.4f} ({self.best[0]})"

    def _remaining(self) -> Optional[float]:
        times = [o.seconds for o in self.outcomes if o.status == "FINISHED"]
        if not times:
            return None
        left = self.counts.state["queued"] + self.counts.state["running"] * 0.5
        slots = max(1, min(len(self.inflight) or 1, _slots(self.config.resources.cpus_per_trial,
                                                           self.config.resources.max_concurrent)))
        return left * (sum(times) / len(times)) / slots

