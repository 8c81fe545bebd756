"""What a submission has seen of its trials' ends: counts, outcomes, the same-error rule, the best point.

:meth:`Tally.account` takes one trial's outcome and says whether the sweep must stop (the same
error on ``failures.stop_after_same_error`` points). The best point so far is the one the ledger's
selection rule names (:mod:`ledger.selection`: the mean of the validation metric over the repeats
finished in this submission), so the progress line, ``status`` and the report agree.
"""
from __future__ import annotations

from collections import Counter
from typing import Optional

from ledger.selection import Selection, best_mean
from sweeper.trials.counts import Counts


class Tally:
    """Outcomes of one submission's trials, accounted for in the order they end."""

    def __init__(self, counts: Counts, selection: Selection, stop_after: int):
        self.counts, self.selection, self.stop_after = counts, selection, stop_after
        self.outcomes: list = []
        self.failures: list[tuple[str, str]] = []  # (run name, reason)
        self.signatures: Counter = Counter()
        self.scores: dict[str, list[float]] = {}  # point name -> selection metric of its repeats
        self.best: Optional[tuple[str, float]] = None

    def account(self, trial, outcome, observer) -> Optional[str]:
        """Count one trial's end (it was running); returns a reason to stop the sweep, if any."""
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
            observer.event(f"{trial.run_name}: {outcome.reason}")
            return None
        self.counts.move("running", "failed")
        self.failures.append((trial.run_name, outcome.reason))
        observer.event(f"FAILED {trial.run_name}: {outcome.reason}")
        self.signatures[outcome.signature] += 1
        if self.signatures[outcome.signature] >= self.stop_after:
            return f"the same error on {self.signatures[outcome.signature]} points: {outcome.signature}"
        return None

    def best_text(self) -> str:
        return "" if self.best is None else f"{self.selection.metric} {self.best[1]:.4f} ({self.best[0]})"

    def remaining(self, slots: int, running: int) -> Optional[float]:
        """Seconds left, from the mean time of the trials finished so far (None before the first)."""
        times = [o.seconds for o in self.outcomes if o.status == "FINISHED"]
        if not times:
            return None
        left = self.counts.state["queued"] + self.counts.state["running"] * 0.5
        return left * (sum(times) / len(times)) / max(1, min(running or 1, slots))
