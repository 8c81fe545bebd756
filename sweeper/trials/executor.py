"""Run a plan's pending trials on Ray and keep MLflow, the observer and the plan in agreement.

:class:`Runner` composes the parts of a submission, each with one job and testable alone:

* :class:`~sweeper.trials.scheduler.Scheduler`: which trial next (longest first, one run created
  ahead of a free slot, trials held by another submission waited for);
* :class:`~ledger.claims.Claims`: whether this submission may train a trial (:mod:`ledger.claims`);
* :class:`~sweeper.trials.inflight.Inflight`: the trials running on Ray, one streaming task each;
* :class:`~sweeper.trials.stream.TrialStream` with the ledger's :class:`~ledger.submission.Submission`:
  a trial's records written to its MLflow run, in order;
* :class:`~sweeper.trials.tally.Tally`: outcomes counted, the best point, the same-error rule;
* :mod:`sweeper.trials.ending`: how trials and the submission end (interrupted, failed, the result);
* an observer (:mod:`sweeper.trials.observer`) passed in by the app layer: the progress line.

The driver reacts to outcomes: an error of the trial's own fails that point and the sweep goes
on; the same error on ``stop_after_same_error`` points stops the sweep with one message; a
worker that dies is submitted again from the trial's last checkpoint (``max_retries`` times);
Ctrl-C or SIGTERM cancels the running tasks and marks their runs KILLED (``sweeper resume``
continues). No child run of this submission is left RUNNING or SCHEDULED when :meth:`Runner.run`
returns.
"""
from __future__ import annotations

import os
import signal
import time
from typing import Optional

from ledger.claims import Claims
from ledger.liveness import stale_after
from ledger.schema import ATTEMPT
from sweeper.exits import first_line
from sweeper.trials import ending
from sweeper.trials import messages as m
from sweeper.trials.counts import Counts
from sweeper.trials.inflight import Inflight, Lost
from sweeper.trials.observer import Silent
from sweeper.trials.scheduler import Scheduler
from sweeper.trials.session import TERMINATED, SweepResult, Terminated, handle_sigterm, hold_sigint, on_sigterm
from sweeper.trials.stream import TrialStream
from sweeper.trials.tally import Tally
from sweeper.trials.timings import Timings
from sweeper.plan.search import objective_metrics, objective_values
from sweeper.trials.trial import TrialOutcome, TrialTask


class Runner:
    """One submission: drives ``plan.pending`` (less ``skip``) to an end state."""

    def __init__(self, plan, submission, *, skip: dict | None = None, resume_from: dict | None = None,
                 observer=None, stale_seconds: float | None = None, data=None):
        """``submission``: the ledger's :class:`~ledger.submission.Submission`; ``resume_from``:
        ``key -> (run id, attempt)`` of interrupted runs with a checkpoint; ``data``: the sweep's
        PreparedData, put into Ray's object store once, in :meth:`run`."""
        self.config, self.submission, self.data = plan.config, submission, data
        trials = [t for t in plan.pending if t.key not in (skip or {})]
        self.feed = plan.feed
        # A search's trials still to draw are planned and queued: drawn, they join the queue; not
        # drawn (time budget, space spent), they end as unspent.
        self.undrawn = (self.feed.left or 0) * self.config.repeats if self.feed is not None else 0
        counts = Counts(len(plan.trials) + self.undrawn, {"done_before": len(plan.done),
                                                          "queued": len(trials) + self.undrawn,
                                                          "failed_before": len(plan.pending) - len(trials)})
        self.scheduler = Scheduler(trials, self.config, feed=self.feed, make_trials=plan.make_trials)
        budget = self.config.budget
        self.deadline = None if budget.time_budget is None else time.monotonic() + budget.time_budget
        self.tally = Tally(counts, self.config.rule(), self.config.failures.stop_after_same_error)
        self.objectives = [metric for metric, _ in objective_metrics(self.config)]
        self.claims = Claims(submission.tracker, submission.experiment_id, stale_after(stale_seconds))
        self.resume_from = resume_from or {}
        self.observer = observer or Silent()
        self.inflight: Optional[Inflight] = None  # made in run(), once Ray is up
        self.timings = Timings(profile=bool(os.environ.get("SWEEPER_PROFILE")))

    @property
    def counts(self) -> Counts:
        return self.tally.counts

    # -- the loop --------------------------------------------------------------------------------

    def run(self) -> SweepResult:
        import ray

        self.timings.start()
        self.inflight = Inflight(dict(num_cpus=self.config.resources.cpus_per_trial, max_retries=0),
                                 self._coordinator(),
                                 # One copy per node: Ray moves the object to a node once and maps it
                                 # read-only into each worker there (uint8 arrays, no per-trial copy).
                                 ray.put(self.data) if self.data is not None else None)
        stop_reason, interrupted, failure = None, None, None
        previous_term, previous_int = handle_sigterm(on_sigterm), hold_sigint()
        try:
            while self.scheduler.busy(len(self.inflight)):
                self._resize()
                stop_reason = self._fill(stop_reason)
                if stop_reason is None:
                    self._poll_waiting()
                if not len(self.inflight) and self.scheduler.waiting:
                    time.sleep(0.5)
                for gen in self.inflight.ready(timeout=0.5):
                    stop_reason = self._pump(gen, stop_reason) or stop_reason
                if stop_reason and len(self.inflight):
                    ending.cancel_all(self.inflight, self.tally, self.submission, f"sweep stopped: {stop_reason}",
                                      self.observer)
                if stop_reason:
                    break
                self.observer.update(self.counts, self.tally.best_text(),
                                     self.tally.remaining(self.scheduler.slots, len(self.inflight)))
        except KeyboardInterrupt as exc:
            interrupted = "SIGTERM" if isinstance(exc, Terminated) or TERMINATED.is_set() else "Ctrl-C"
            # A second signal must not cut the cleanup short.
            previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
            handle_sigterm(signal.SIG_IGN)
            try:
                ending.cancel_all(self.inflight, self.tally, self.submission,
                                  f"interrupted ({interrupted}); `sweeper resume` continues from the last epoch "
                                  "checkpoint", self.observer)
            finally:
                signal.signal(signal.SIGINT, previous)
        except Exception as exc:  # the store failed (or Ray, or a bug): stop here, with one message
            failure = ending.abandon(self.inflight, self.scheduler, self.submission, exc)
            if failure is not exc:
                raise failure from exc
            raise
        finally:
            handle_sigterm(previous_term)
            if previous_int is not None:
                signal.signal(signal.SIGINT, previous_int)
            if failure is None:
                with self.timings.timed("reconcile"):
                    ending.withdraw_ready(self.scheduler, self.submission)
                    ending.reconcile(self.submission)
            self._stop_coordinator()
        return self.result(stop_reason, interrupted)

    def result(self, stop_reason: Optional[str] = None, interrupted: Optional[str] = None) -> SweepResult:
        import ray

        cpus = int(ray.cluster_resources().get("CPU", 0)) if ray.is_initialized() else 0
        return ending.result(self.tally, self.submission, stop_reason, interrupted, self.timings, cpus,
                             self.timings.elapsed())

    def _resize(self) -> None:
        """Slots follow the cluster: a node lost or added changes how many trials run side by side."""
        import ray

        res = self.config.resources
        self.scheduler.use_cpus(int(ray.cluster_resources().get("CPU", 1)), res.cpus_per_trial, res.max_concurrent)

    def _coordinator(self):
        """The early-stopping actor, or None: without a stopping rule there is nothing to coordinate
        (no actor process, no round trip per epoch; each trial keeps a never-stopping one)."""
        import ray

        rule = self.config.early_stopping.model_dump() if self.config.early_stopping else None
        if not rule:
            return None
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        from sweeper.trials.asha import LocalCoordinator

        # Pinned to the driver's node: on a worker node it would die with that node and take
        # every trial's per-epoch report down with it.
        here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
        return ray.remote(num_cpus=0, scheduling_strategy=here)(LocalCoordinator).remote(rule, self.config.train.epochs)

    def _stop_coordinator(self) -> None:
        if self.inflight is not None and self.inflight.coordinator is not None:
            import ray

            try:
                ray.kill(self.inflight.coordinator)
            except Exception:  # noqa: BLE001 -- Ray may be gone already
                pass

    def _spend_budget(self) -> None:
        """Past the time budget: nothing new starts (queued trials and undrawn points are unspent)."""
        if self.deadline is None or time.monotonic() < self.deadline:
            return
        self.deadline = None
        if self.feed is not None:
            self.feed.close()
        self.counts.move("queued", "unspent", len(self.scheduler.queue) + self.undrawn)
        self.scheduler.queue.clear()
        self.undrawn = 0
        self.observer.event(f"time budget of {self.config.budget.time_budget:g} s spent: no new trial starts")

    def _drew(self, added: int) -> None:
        """Account for trials the search drew (they were counted as queued while undrawn)."""
        self.undrawn -= added
        if self.undrawn < 0:  # the sweep file's budget grew since the plan: count what was drawn
            self.counts.total -= self.undrawn
            self.counts.state["queued"] -= self.undrawn
            self.undrawn = 0

    def _fill(self, stop_reason: Optional[str]) -> Optional[str]:
        """Start trials while slots are free, and keep the next child run created ahead."""
        self._spend_budget()
        while stop_reason is None:
            before = self.scheduler.queued
            startable = self.scheduler.can_start(len(self.inflight))
            if self.scheduler.queued > before:
                self._drew(self.scheduler.queued - before)
            if self.feed is not None and not self.feed.can_draw() and self.undrawn:
                self.counts.move("queued", "unspent", self.undrawn)
                self.undrawn = 0
            if not startable:
                break
            trial, run_id = self.scheduler.next_start()
            if run_id is None:
                trial, run_id = self._prepare(trial)
            stop_reason = self._start(trial, run_id) or stop_reason
        while stop_reason is None and self.scheduler.wants_ahead():
            self.scheduler.created_ahead(*self._prepare(self.scheduler.take_for_ahead()))
        return stop_reason

    def _prepare(self, trial) -> tuple[object, str]:
        began = time.time()
        with self.timings.timed("create_run"):
            run_id = self.submission.create_trial_run(trial)
        self.timings.stamp(run_id, run_name=trial.run_name, create_run=time.time() - began)
        return trial, run_id

    def _start(self, trial, run_id: str) -> Optional[str]:
        """Submit ``trial`` (its run created) if its claim wins; else wait for whoever holds it."""
        with self.timings.timed("claim"):
            verdict = self.claims.contest(trial.key, run_id)
            if not verdict.won:
                self.submission.discard(run_id)
                return self._lost_claim(trial, verdict)
            if self.feed is not None and not self.feed.within_budget(trial.point.hash):
                # Another submission drew a point at the same moment and created its run first.
                self.submission.discard(run_id)
                self.feed.close()
                self.counts.move("queued", "unspent")
                self.observer.event(f"  {trial.run_name}: over the budget (another submission's point came first); "
                                    "not trained")
                return None
        with self.timings.timed("record_start"):
            res = self.config.resources
            resume_from, attempt = self.resume_from.get(trial.key, (None, 0))
            task = TrialTask(trial, run_id, res.cpus_per_trial, resume_from, profile=self.timings.profile,
                             page_data=res.page_data)
            # The run was created just now by this driver (SCHEDULED): no need to read it back.
            failures = self.config.failures
            stream = TrialStream(trial, task, failures.max_retries, self.submission.tracker,
                                 self.submission.experiment_id, {ATTEMPT: str(attempt)},
                                 persist_seconds=failures.checkpoint_seconds)
            if task.resume_from:
                missing = stream.load_resume_checkpoint()
                if missing:
                    self.observer.event(f"  {trial.run_name}: {missing}")
        self._submit(stream)
        self.counts.move("queued", "running")
        return None

    def _submit(self, stream: TrialStream) -> None:
        self.inflight.submit(stream)
        self.timings.stamp(stream.run_id, submitted_at=time.time())

    def _lost_claim(self, trial, verdict, state: str = "queued") -> Optional[str]:
        """Another submission finished ``trial`` (``elsewhere``) or holds it (wait for it)."""
        if verdict.done_in:
            self.counts.move(state, "elsewhere")
            return None
        if state != "queued":
            self.counts.move(state, "queued")
        self.scheduler.hold(trial, verdict.held_by)
        return None

    def _poll_waiting(self) -> None:
        """Trials held by other drivers: done there, or claimed again when they failed or their driver is lost."""
        for trial, holder in self.scheduler.due():
            status, live = self.claims.state_of(holder)
            if status == "FINISHED":
                self.scheduler.release(trial)
                self.counts.move("queued", "elsewhere")
            elif not live:  # failed or stopped there, or its driver is lost: claim it again
                self.scheduler.release(trial)
                self.scheduler.requeue(trial)

    def _recheck_claim(self, gen, stream: TrialStream) -> Optional[str]:
        """At a trial's first epoch: a claim that lost a race stops here, after one epoch."""
        verdict = self.claims.recheck(stream.task.key, stream.run_id)
        if verdict.won:
            return None
        self.inflight.cancel(gen)
        self.inflight.pop(gen)
        stream.flush()
        holder = verdict.done_in or verdict.held_by
        self.submission.terminate(stream.run_id, "KILLED", f"claimed by run {holder}: another submission trains it")
        self.observer.event(f"{stream.trial.run_name}: claimed by run {holder} of another submission; stopped")
        return self._lost_claim(stream.trial, verdict, state="running")

    def _pump(self, gen, stop_reason: Optional[str] = None) -> Optional[str]:
        """Record the next message of a trial; at its outcome, account for it (maybe: stop)."""
        message = self.inflight.receive(gen)
        stream = self.inflight.streams[gen]
        if isinstance(message, Lost):
            self.inflight.pop(gen)
            return self._worker_died(stream, message.error)
        if isinstance(message, m.LAST):
            self.inflight.pop(gen)
            if self.feed is not None and isinstance(message, m.Ended):
                # The search sees this result before it proposes the trial that takes the slot.
                outcome, point = message.outcome, stream.trial.point
                # Each objective as the ledger holds it (a run's FLOPs and size are the point's).
                known = {**outcome.metrics, "forward_flops": point.flops, "n_params": point.params}
                self.feed.tell(outcome.key, objective_values(known, self.objectives),
                               failed=outcome.status == "FAILED")
            if isinstance(message, m.Ended) and message.outcome.status == "FINISHED":
                # The worker is free: hand it the next trial before recording this one's end
                # (final artifacts, FINISHED, the duplicate rule: ~0.1 s the CPU would sit idle).
                stop_reason = self._fill(stop_reason) or stop_reason
        epochs = stream.epochs
        with self.timings.timed(f"record_{type(message).__name__}"):
            outcome = stream.handle(message)
        if outcome is None:
            if epochs == 0 and stream.epochs == 1 and not stream.task.checkpoint:
                return self._recheck_claim(gen, stream) or stop_reason
            return stop_reason
        return self._account(stream, outcome) or stop_reason

    def _account(self, stream: TrialStream, outcome: TrialOutcome) -> Optional[str]:
        self.timings.stamp(stream.run_id, collected_at=time.time())
        return self.tally.account(stream.trial, outcome, self.observer)

    def _worker_died(self, stream: TrialStream, exc: BaseException) -> Optional[str]:
        """Submit the trial again from its last checkpoint, or fail it once retries are spent."""
        stream.flush()
        if stream.retries_left > 0:
            stream.retries_left -= 1
            self.observer.event(f"{stream.task.run_name}: {type(exc).__name__}; trying again"
                                + (" from its last checkpoint" if stream.task.checkpoint else ""))
            self._submit(stream)
            return None
        reason = (f"{type(exc).__name__}: the trial's worker failed "
                  f"{self.config.failures.max_retries + 1} time(s): {first_line(exc)}")
        self.submission.terminate(stream.run_id, "FAILED", reason)
        return self._account(stream, TrialOutcome(stream.task.key, stream.run_id, "FAILED", reason,
                                                  type(exc).__name__, attempt=stream.attempt))
