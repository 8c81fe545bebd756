"""Claims: which submission trains a trial, when several are started on the same sweep.

MLflow has no transaction spanning runs, so the claim is the child run itself. To claim trial
``(point, repeat)`` a driver

1. creates its child run (SCHEDULED, tagged with the trial and with its own parent run), then
2. reads back every run of the trial and decides (:func:`contest`):

   * a FINISHED run exists: the trial is done, the claim is withdrawn (its run deleted);
   * otherwise the live claims are the active runs whose driver is alive (:mod:`ledger.liveness`)
     plus its own; the earliest of them (start time, then run id: :func:`ledger.rules.order`)
     wins. A loser deletes its run and waits for the winner's outcome: trained elsewhere when it
     finishes, claimed again when it fails or its driver is lost.

Guarantee: a driver reads after its own claim is committed, and claims are ordered by a start
time taken before their commit. Two drivers both win only when the earlier claim's commit lands
after the later driver has read, i.e. a claim took longer from its timestamp to its commit than
the gap between the two timestamps (plus clock skew between hosts). On one SQLite file or one
PostgreSQL server this window is the latency of one ``create_run`` (milliseconds; seconds when a
SQLite lock is contended). The claim is checked again when the trial's first epoch arrives
(:meth:`Claims.recheck`): the loser of a race stops after one epoch and its run is KILLED as
``claimed by run ...``. If both slipped through anyway, the duplicate rule of
:mod:`ledger.recorder` still leaves one FINISHED run; the cost of the window is then one trial
trained twice, never a trial counted twice.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from . import rules
from .liveness import Owners
from .schema import SUBMISSION
from .tracking import Tracker


@dataclass(frozen=True)
class Verdict:
    """The result of a contest: ``won``; else ``done_in`` (a FINISHED run) or ``held_by`` (a live claim)."""

    won: bool
    done_in: Optional[str] = None
    held_by: Optional[str] = None


class Claims:
    """Contests for one experiment, by one driver."""

    def __init__(self, tracker: Tracker, experiment_id: str, timeout: float):
        self.tracker, self.experiment_id = tracker, experiment_id
        self.owners = Owners(tracker, timeout)

    def contest(self, key: tuple[str, int], run_id: str) -> Verdict:
        """Decide the claim of trial ``key`` by run ``run_id`` (already created, see module doc)."""
        runs = self.tracker.trial_runs(self.experiment_id, key)
        finished = rules.deciding_runs(runs).get(key)
        if finished is not None and finished.info.run_id != run_id:
            return Verdict(False, done_in=finished.info.run_id)
        # Another run of the same submission is no rival claim: a driver holds one run per trial,
        # so it is a create_run retried after its answer was lost (it stays SCHEDULED; the
        # submission's reconciliation closes it).
        mine = next((r for r in runs if r.info.run_id == run_id), None)
        submission = mine.data.tags.get(SUBMISSION) if mine is not None else None
        live = [r for r in runs if r.info.run_id == run_id
                or (self.owners.is_live(r) and (submission is None or r.data.tags.get(SUBMISSION) != submission))]
        if not live:  # our own run is not visible yet: trust the claim
            return Verdict(True)
        winner = min(live, key=lambda r: rules.order(r.info.start_time, r.info.run_id))
        if winner.info.run_id == run_id:
            return Verdict(True)
        return Verdict(False, held_by=winner.info.run_id)

    def recheck(self, key: tuple[str, int], run_id: str) -> Verdict:
        """The same decision later on (the trial has started): a lost race shows up here."""
        return self.contest(key, run_id)

    def state_of(self, run_id: str) -> tuple[str, bool]:
        """``(status, owner alive)`` of a winning claim a loser waits for."""
        run = self.tracker.client.get_run(run_id)
        if run.info.lifecycle_stage == "deleted":  # a run created ahead and withdrawn: nobody trains it
            return run.info.status, False
        return run.info.status, self.owners.is_live(run)
