"""One submission's writes: the child runs a ``sweeper run`` or ``resume`` creates, ends and closes.

A :class:`Submission` is the driver's handle on the ledger for the length of one command: the
sweep's experiment, the parent run its trials sit under, and the submission's own id, which every
child run it creates carries (``sweep.submission``) so that its liveness can be told
(:mod:`ledger.liveness`) and its claims recognised (:mod:`ledger.claims`).
"""
from __future__ import annotations

from typing import Optional

from .schema import MAX_TAG_VALUE, REASON
from .tracking import Tracker


class Submission:
    """The ledger as one submission writes it."""

    def __init__(self, tracker: Tracker, experiment_id: str, parent_id: str, sweep_name: str,
                 submission_id: Optional[str] = None):
        self.tracker, self.experiment_id, self.parent_id = tracker, experiment_id, parent_id
        self.sweep_name = sweep_name
        self.id = submission_id or parent_id

    def create_trial_run(self, trial) -> str:
        """A SCHEDULED child run for ``trial``: this submission's claim of it."""
        return self.tracker.create_trial_run(self.experiment_id, self.parent_id, self.sweep_name, trial,
                                             trial.point.values)

    def discard(self, run_id: str) -> None:
        """Delete a child run whose trial never started (a claim lost, a run created ahead)."""
        self.tracker.discard(run_id)

    def terminate(self, run_id: str, status: str, reason: Optional[str] = None) -> bool:
        """End a run still RUNNING or SCHEDULED; False if it had ended already."""
        return self.tracker.terminate(run_id, status, reason)

    def status_of(self, run_id: str) -> str:
        return self.tracker.client.get_run(run_id).info.status

    def active_runs(self) -> list:
        """This submission's child runs still RUNNING or SCHEDULED."""
        return self.tracker.active_children(self.experiment_id, self.parent_id)

    def end(self, counts: dict, status: str, message: Optional[str] = None) -> None:
        """The submission's counts per state and how it ended."""
        self.tracker.update_parent(self.parent_id, counts, status, message)

    def close_once(self, run_ids: list[str], reason: str, submission: bool = True) -> None:
        """The store may be gone: mark ``run_ids`` KILLED (and, with ``submission``, the submission
        FAILED), one try each; the first write that fails ends it (the next command repairs the rest)."""
        once = self.tracker.client.once
        reason = reason[:MAX_TAG_VALUE]
        try:
            for run_id in run_ids:
                once.set_tag(run_id, REASON, reason)
                once.set_terminated(run_id, "KILLED")
            if submission:
                once.set_tag(self.parent_id, REASON, reason)
                once.set_terminated(self.parent_id, "FAILED")
        except Exception:  # noqa: BLE001 -- the store failed again: the next command repairs
            pass
