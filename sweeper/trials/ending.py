"""How a submission ends: normally, interrupted (Ctrl-C, SIGTERM), or failed (the store or Ray gone).

Functions over the runner's parts, each given what it touches:

* :func:`cancel_all`: the running trials are cancelled; what they sent before stopping is
  recorded, and their runs are marked KILLED (a trial that had just finished keeps its result);
* :func:`abandon`: the loop itself failed; every task is cancelled and what one try each can
  close is closed (the store may be gone: the next ``run`` or ``resume`` takes the rest over);
* :func:`withdraw_ready` and :func:`reconcile`: no run created ahead survives its unstarted
  trial, and no child run of the submission is left RUNNING or SCHEDULED;
* :func:`result`: the exit code, the message and the :class:`~sweeper.trials.session.SweepResult`.
"""
from __future__ import annotations

import time
from typing import Optional

from ledger.retry import StoreUnavailable, describe, is_store_error
from sweeper.exits import (EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_STOPPED, EXIT_TERMINATED,
                           first_line)
from sweeper.trials.session import SweepResult

#: Seconds the cancelled trials get, in all, to hand over what they had sent.
CANCEL_GRACE = 30.0


def cancel_all(inflight, tally, submission, reason: str, observer) -> None:
    """Stop every running trial; record what it sent before it stopped, then mark its run KILLED."""
    counts = tally.counts
    deadline = time.monotonic() + CANCEL_GRACE
    for gen in inflight.cancel_all():
        stream = inflight.pop(gen)
        outcome = None
        while outcome is None and time.monotonic() < deadline:
            message = inflight.leftover(gen, max(0.1, deadline - time.monotonic()))
            if message is None:
                break
            try:
                outcome = stream.handle(message)
            except Exception:  # noqa: BLE001 -- the store failed: the run is marked below if it can be
                break
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 -- the store failed: the run is marked below if it can be
            pass
        if outcome is not None:  # it finished just before the cancel: keep its result
            tally.account(stream.trial, outcome, observer)
        elif submission.terminate(stream.run_id, "KILLED", reason):
            counts.move("running", "killed")
        else:  # it reached a terminal state on its own
            counts.move("running", "finished" if submission.status_of(stream.run_id) == "FINISHED" else "failed")


def abandon(inflight, scheduler, submission, exc: Exception) -> Exception:
    """The loop failed: cancel every trial's task, close what one try each can close, and return
    the error to raise (for the store: :class:`StoreUnavailable`, naming what to do)."""
    inflight.cancel_all()
    store = is_store_error(exc)
    running = [stream.run_id for stream in inflight.streams.values()]
    ahead = [run_id for _, run_id in scheduler.ready]
    closing = [] if isinstance(exc, StoreUnavailable) else running + ahead  # after the patience: no more tries
    if closing or not store:
        submission.close_once(closing, f"the sweep command failed: {first_line(exc)}")
    inflight.streams.clear()
    scheduler.ready.clear()
    if not store:
        return exc
    return StoreUnavailable(
        f"{describe(exc, 160)} ({len(running)} running trial(s) stopped; once the store works again, "
        f"`sweeper resume {submission.sweep_name}` continues from the last checkpoints)")


def withdraw_ready(scheduler, submission) -> None:
    """Runs created ahead whose trial never started leave no trace; the trials stay queued."""
    for _, run_id in scheduler.withdraw_ready():
        try:
            submission.discard(run_id)
        except Exception:  # noqa: BLE001 -- the store is unreachable: reconcile marks it KILLED if it can
            pass


def reconcile(submission) -> None:
    """Nothing of this submission may stay RUNNING or SCHEDULED after the command returns."""
    for run in submission.active_runs():
        submission.terminate(run.info.run_id, "KILLED", "the sweep command ended before this trial did")


def result(tally, submission, stop_reason: Optional[str], interrupted: Optional[str], timings, cpus: int,
           wall_seconds: float) -> SweepResult:
    """The submission's exit code and message, recorded with its counts, as a :class:`SweepResult`."""
    counts = tally.counts
    counts.check()
    state, name = counts.state, submission.sweep_name
    if interrupted:
        code, status = (EXIT_TERMINATED if interrupted == "SIGTERM" else EXIT_INTERRUPTED), "KILLED"
        message = (f"interrupted ({interrupted}): {state['killed']} running trial(s) marked KILLED, "
                   f"{state['queued']} not started; run `sweeper resume {name}` to finish")
    elif stop_reason:
        code, status = EXIT_STOPPED, "FAILED"
        message = (f"sweep stopped: {stop_reason}. Fix the cause, then `sweeper run` again "
                   f"({state['queued']} trial(s) not started)")
    elif state["failed"]:
        code, status = EXIT_FAILED, "FINISHED"
        message = f"{state['failed']} trial(s) failed; see `sweeper status {name}`"
    else:
        code, status, message = EXIT_OK, "FINISHED", "sweep complete"
        if state["elsewhere"]:
            message += f" ({state['elsewhere']} trial(s) trained by another submission)"
        if state["unspent"]:
            message += f" ({state['unspent']} trial(s) of the budget not started: its time ran out, or the space did)"
    submission.end(counts.as_dict(), status, None if code == EXIT_OK else message, code, best=tally.best_text())
    return SweepResult(counts.as_dict(), code, message, submission.parent_id, wall_seconds,
                       [o.seconds for o in tally.outcomes], tally.failures, cpus, timings.timeline(tally.outcomes),
                       dict(timings.driver))
