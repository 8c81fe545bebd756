"""How a submission's trials and the submission itself end, for :class:`sweeper.run.executor.Runner`.

The runner's loop decides what to train next; this mixin owns the bookkeeping of endings: one
trial's outcome counted (the best point so far, the same-error rule that stops a sweep), the runs
created ahead and never started, the trials cancelled at Ctrl-C or SIGTERM, the cleanup when the
loop itself fails (the store gone), the last look for runs left RUNNING or SCHEDULED, and the
:class:`~sweeper.run.session.SweepResult` with its exit code. It reads the runner's state
(``inflight``, ``ready``, ``queue``, ``counts``, ``tracker`` ...) and keeps none of its own.
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Optional

from ledger.retry import StoreUnavailable, describe, is_store_error
from ledger.schema import MAX_TAG_VALUE, REASON
from ledger.selection import best_mean
from sweeper.run.session import (EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_STOPPED, EXIT_TERMINATED,
                                 SweepResult, _first_line)

if TYPE_CHECKING:
    from sweeper.run.stream import TrialStream
    from sweeper.run.trial import TrialOutcome


class RunEnding:
    """The end of each trial and of the submission (mixed into :class:`~sweeper.run.executor.Runner`)."""

    def _account(self, stream: TrialStream, outcome: TrialOutcome) -> Optional[str]:
        """Account for one trial's end; returns a reason to stop the sweep, if any."""
        trial = stream.trial
        self.stamps.setdefault(stream.run_id, {})["collected_at"] = time.time()
        self.outcomes.append(outcome)
        if outcome.status == "FINISHED":
            self.counts.move("running", "finished")
            value = outcome.metrics.get(self.selection.metric)
            if value is not None:
                self.scores.setdefault(trial.point.name, []).append(value)
                self.best = best_mean(self.scores, self.selection)
            return None
        if outcome.status == "DUPLICATE":
            self.counts.move("running", "duplicate")
            self.progress.event(f"{trial.run_name}: {outcome.reason}")
            return None
        self.counts.move("running", "failed")
        self.failures.append((trial.run_name, outcome.reason))
        self.progress.event(f"FAILED {trial.run_name}: {outcome.reason}")
        self.signatures[outcome.signature] += 1
        limit = self.config.failures.stop_after_same_error
        if self.signatures[outcome.signature] >= limit:
            return f"the same error on {self.signatures[outcome.signature]} points: {outcome.signature}"
        return None

    def _discard_ready(self) -> None:
        """Runs created ahead whose trial never started leave no trace; the trials stay queued."""
        while self.ready:
            trial, run_id = self.ready.pop()
            self.queue.appendleft(trial)
            try:
                self.tracker.discard(run_id)
            except Exception:  # the store is unreachable: _reconcile marks it KILLED if it can
                pass

    def _cancel_inflight(self, reason: str) -> None:
        """Stop every running trial; record what they sent before they stopped, then mark them KILLED."""
        import ray

        gens = list(self.inflight)
        for gen in gens:
            ray.cancel(gen, force=True)
        deadline = time.monotonic() + 30
        for gen in gens:
            stream = self.inflight[gen]
            outcome = None
            while outcome is None and time.monotonic() < deadline:
                try:  # messages already sent (a checkpoint, or the outcome of a trial that just ended)
                    outcome = stream.handle(ray.get(next(gen), timeout=max(0.1, deadline - time.monotonic())))
                except Exception:  # StopIteration, cancelled, or the store failed: nothing more to record
                    break
            del self.inflight[gen]
            try:
                stream.flush()
            except Exception:  # the store failed: the run is marked below if it can be
                pass
            if outcome is not None:  # it finished just before the cancel: keep its result
                self._account(stream, outcome)
                continue
            if self.tracker.terminate(stream.run_id, "KILLED", reason):
                self.counts.move("running", "killed")
            else:  # it reached a terminal state on its own
                status = self.tracker.client.get_run(stream.run_id).info.status
                self.counts.move("running", "finished" if status == "FINISHED" else "failed")

    def _abandon(self, exc: Exception) -> Exception:
        """The loop failed: cancel every trial's task, close what one try each can close, and
        return the error to raise (for the store: :class:`StoreUnavailable`, naming what to do).

        The store may be gone: each write is tried once (no waiting), and the first that fails
        ends the cleanup. What stays RUNNING or SCHEDULED belongs to a driver that is gone once
        this command exits, and the next ``run`` or ``resume`` takes it over (:mod:`ledger.liveness`).
        """
        import ray

        for gen in list(self.inflight):
            try:
                ray.cancel(gen, force=True)
            except Exception:  # noqa: BLE001 -- Ray may be the part that failed
                pass
        store = is_store_error(exc)
        running = [stream.run_id for stream in self.inflight.values()]
        closing = [] if isinstance(exc, StoreUnavailable) else [  # after the patience: no more tries
            *[(run_id, "KILLED") for run_id in running],
            *[(run_id, "KILLED") for _, run_id in self.ready]]
        reason = f"the sweep command failed: {_first_line(exc)}"
        once = self.tracker.client.once
        try:
            for run_id, status in closing:
                once.set_tag(run_id, REASON, reason[:MAX_TAG_VALUE])
                once.set_terminated(run_id, status)
            if closing or not store:
                once.set_tag(self.parent_id, REASON, reason[:MAX_TAG_VALUE])
                once.set_terminated(self.parent_id, "FAILED")
        except Exception:  # noqa: BLE001 -- the store failed again: the next command repairs
            pass
        self.inflight.clear()
        self.ready.clear()
        if not store:
            return exc
        cause = describe(exc, 160)
        return StoreUnavailable(
            f"{cause} ({len(running)} running trial(s) stopped; once the store works again, "
            f"`sweeper resume {self.config.name}` continues from the last checkpoints)")

    def _reconcile(self) -> None:
        """Nothing may stay RUNNING or SCHEDULED after the command returns."""
        for run in self.tracker.active_children(self.experiment_id, self.parent_id):
            self.tracker.terminate(run.info.run_id, "KILLED", "the sweep command ended before this trial did")

    def _result(self, stop_reason: Optional[str], interrupted: bool) -> SweepResult:
        self.counts.check()
        counts = self.counts.as_dict()
        if interrupted:
            code, status = (EXIT_TERMINATED if interrupted == "SIGTERM" else EXIT_INTERRUPTED), "KILLED"
            message = (f"interrupted ({interrupted}): {self.counts.state['killed']} running trial(s) marked KILLED, "
                       f"{self.counts.state['queued']} not started; run `sweeper resume {self.config.name}` to finish")
        elif stop_reason:
            code, status = EXIT_STOPPED, "FAILED"
            message = (f"sweep stopped: {stop_reason}. Fix the cause, then `sweeper run` again "
                       f"({self.counts.state['queued']} trial(s) not started)")
        elif self.counts.state["failed"]:
            code, status = EXIT_FAILED, "FINISHED"
            message = f"{self.counts.state['failed']} trial(s) failed; see `sweeper status {self.config.name}`"
        else:
            code, status, message = EXIT_OK, "FINISHED", "sweep complete"
            if self.counts.state["elsewhere"]:
                message += f" ({self.counts.state['elsewhere']} trial(s) trained by another submission)"
        self.tracker.update_parent(self.parent_id, counts, status, None if code == EXIT_OK else message)
        timeline = [{**self.stamps.get(o.run_id, {}), "status": o.status, "seconds": o.seconds, **o.profile}
                    for o in self.outcomes]
        return SweepResult(counts, code, message, self.parent_id, time.monotonic() - self.started,
                           [o.seconds for o in self.outcomes], self.failures, self.cpus, timeline, dict(self.driver))
