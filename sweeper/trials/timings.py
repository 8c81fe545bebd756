"""Where a submission's driver spends its time, per activity and per trial (the sweep benchmark reads both)."""
from __future__ import annotations

import time
from collections import Counter
from contextlib import contextmanager


class Timings:
    """Seconds per driver activity, and per trial the driver's stamps (run created, submitted, collected)."""

    def __init__(self, profile: bool = False):
        self.profile = profile  # trials time their phases too (SWEEPER_PROFILE)
        self.driver: Counter = Counter()
        self.stamps: dict[str, dict] = {}  # run_id -> stamps
        self.started = time.monotonic()

    def start(self) -> None:
        self.started = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    @contextmanager
    def timed(self, activity: str):
        began = time.time()
        try:
            yield
        finally:
            self.driver[activity] += time.time() - began

    def stamp(self, run_id: str, **values) -> None:
        self.stamps.setdefault(run_id, {}).update(values)

    def timeline(self, outcomes: list) -> list[dict]:
        return [{**self.stamps.get(o.run_id, {}), "status": o.status, "seconds": o.seconds, **o.profile}
                for o in outcomes]
