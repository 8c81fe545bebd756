"""Trials of a submission by state: counts that always add up to the plan."""
from __future__ import annotations

from dataclasses import dataclass, field

#: ``elsewhere``: trained by another submission that held the trial's claim (see ledger.claims);
#: ``unspent``: trials of a search's budget not drawn (its time budget ran out, or its space did).
STATES = ("done_before", "failed_before", "queued", "running", "finished", "failed", "killed", "duplicate",
          "elsewhere", "unspent")


@dataclass
class Counts:
    """Trials of the plan by state; ``total`` never changes, so the states always add up to it."""

    total: int
    state: dict = field(default_factory=dict)

    def __post_init__(self):
        self.state = {s: self.state.get(s, 0) for s in STATES}

    def move(self, src: str, dst: str, n: int = 1) -> None:
        self.state[src] -= n
        self.state[dst] += n

    def check(self) -> None:
        assert sum(self.state.values()) == self.total and min(self.state.values()) >= 0, self.state

    def as_dict(self) -> dict:
        return {"planned": self.total, **self.state}
