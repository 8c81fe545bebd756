"""Which trial next: the queue, the runs created ahead of a free slot, and the trials held elsewhere.

The scheduler decides and remembers; it neither writes the ledger nor talks to Ray (the
:class:`~sweeper.trials.executor.Runner` does both, asking it what to do).

* The queue holds the trials to train, longest first by the plan's cost estimate: a long trial
  started last would leave the other CPUs idle at the end.
* No task waits queued in Ray: a queued lease makes Ray start extra worker processes, and takes
  the CPU a trial lends while it blocks (early stopping), so three trials would train on two
  CPUs. Instead the next child run is created ahead (``ahead`` of them, SCHEDULED), so a slot
  that frees gets its task at once.
* A trial whose claim another live submission holds waits here until that submission finishes
  it (trained elsewhere) or stops holding it (claimed again).
* A search that proposes from results (method ``tpe``) hands the scheduler a *feed*
  (:class:`~sweeper.plan.search.feed.Feed`): when the queue is empty and a slot is free, the next
  point is drawn from it then, so the sampler has seen every result that came in before.
"""
from __future__ import annotations

import time
from collections import deque
from typing import Iterable, Optional

from sweeper.plan.cost import longest_first

#: Seconds between two looks at the trials this submission waits for (held by another driver).
WAIT_POLL = 2.0
#: Held trials looked at per poll: each look is a read of the store.
POLL_BATCH = 20


def slots_for(cpus: int, cpus_per_trial: int, cap: Optional[int]) -> int:
    """Trials that fit side by side on ``cpus`` CPUs, at most ``cap``."""
    slots = max(1, cpus // cpus_per_trial)
    return min(cap, slots) if cap else slots


class Scheduler:
    """The trials of one submission that are not running: queued, created ahead, or held elsewhere."""

    def __init__(self, trials: Iterable, config, ahead: int = 1, feed=None, make_trials=None):
        """``feed`` and ``make_trials(point) -> trials``: the lazily drawn points of a search."""
        self.queue = deque(longest_first(trials, config))
        self.feed, self.make_trials = feed, make_trials
        self.rejected: list = []  # (point, why) of proposals the feed left out (infeasible)
        self.ready: deque = deque()  # (trial, run_id): child runs created ahead, still counted as queued
        self.waiting: dict = {}  # key -> (trial, the run holding its claim)
        self.ahead = ahead
        self.slots = 1
        self.next_poll = 0.0

    def use_cpus(self, cpus: int, cpus_per_trial: int, cap: Optional[int]) -> None:
        """Size the slots to the cluster the trials run on."""
        self.slots = slots_for(cpus, cpus_per_trial, cap)

    # -- what to do next ---------------------------------------------------------------------

    def can_start(self, running: int) -> bool:
        if running >= self.slots:
            return False
        if not self.ready and not self.queue:
            self.refill()
        return bool(self.ready or self.queue)

    def refill(self) -> int:
        """Draw the next point of the search (its trials queued); 0 when there is none to draw."""
        if self.feed is None or not self.feed.can_draw():
            return 0
        point, rejected = self.feed.draw()
        self.rejected += rejected
        if point is None:
            return 0
        trials = self.make_trials(point)
        self.queue.extend(trials)
        return len(trials)

    def drawable(self) -> bool:
        """More points may come from the search."""
        return self.feed is not None and self.feed.can_draw()

    def next_start(self) -> tuple[object, Optional[str]]:
        """The next trial to start, with its run if it was created ahead (else None)."""
        if self.ready:
            return self.ready.popleft()
        return self.queue.popleft(), None

    def wants_ahead(self) -> bool:
        return bool(self.queue) and len(self.ready) < self.ahead

    def take_for_ahead(self):
        return self.queue.popleft()

    def created_ahead(self, trial, run_id: str) -> None:
        self.ready.append((trial, run_id))

    def busy(self, running: int) -> bool:
        """Anything left: queued, created ahead, running, or waited for."""
        return bool(self.queue or self.ready or running or self.waiting or self.drawable())

    # -- trials held by another submission -------------------------------------------------------

    def hold(self, trial, holder: str) -> None:
        self.waiting[trial.key] = (trial, holder)

    def due(self, now: Optional[float] = None) -> list[tuple[object, str]]:
        """The held trials to look at now (none until :data:`WAIT_POLL` has passed since the last look)."""
        now = time.monotonic() if now is None else now
        if not self.waiting or now < self.next_poll:
            return []
        self.next_poll = now + WAIT_POLL
        return list(self.waiting.values())[:POLL_BATCH]

    def release(self, trial) -> None:
        """``trial`` is no longer waited for (done elsewhere, or queued again)."""
        del self.waiting[trial.key]

    def requeue(self, trial) -> None:
        """Train ``trial`` next (its holder failed, or is lost)."""
        self.queue.appendleft(trial)

    def withdraw_ready(self) -> list[tuple[object, str]]:
        """The runs created ahead, handed back (their trials queued again at the front)."""
        out = []
        while self.ready:
            trial, run_id = self.ready.pop()
            self.queue.appendleft(trial)
            out.append((trial, run_id))
        return out

    @property
    def queued(self) -> int:
        return len(self.queue) + len(self.ready)
