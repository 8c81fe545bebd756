"""Live progress in the terminal: counts per state that add up to the plan, best so far, time left."""
from __future__ import annotations

import sys
import time

from sweeper.plan.cost import duration  # noqa: F401 (the app's callers import it from here too)
from sweeper.trials.counts import Counts

LABELS = {"done_before": "done before", "failed_before": "failed before", "queued": "queued", "running": "running",
          "finished": "finished", "failed": "failed", "killed": "killed", "duplicate": "duplicate",
          "elsewhere": "trained elsewhere", "unspent": "unspent (budget)"}


def counts_text(counts: Counts) -> str:
    """``queued 4 | running 2 | finished 0``: the states with trials in them (and the three always shown)."""
    return " | ".join(f"{LABELS[s]} {n}" for s, n in counts.state.items()
                      if n or s in ("queued", "running", "finished"))


class Progress:
    """The terminal's observer of a submission (:mod:`sweeper.trials.observer`): one status line,
    redrawn in place on a terminal and printed every ``every`` s otherwise."""

    def __init__(self, stream=None, quiet: bool = False, every: float = 10.0):
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.every = every
        self.started = time.monotonic()
        self._last_line, self._last_print = "", 0.0

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def update(self, counts: Counts, best: str, remaining: float | None) -> None:
        if self.quiet:
            return
        eta = "" if remaining is None else f" | ~{duration(remaining)} left"
        line = f"[{duration(self.elapsed())}] {counts_text(counts)}{(' | best ' + best) if best else ''}{eta}"
        now = time.monotonic()
        if self.tty:
            self.stream.write("\r" + line.ljust(len(self._last_line)))
            self.stream.flush()
        elif line.split("]", 1)[1] != self._last_line.split("]", 1)[-1] or now - self._last_print >= self.every:
            if now - self._last_print >= min(self.every, 2.0) or "running 0" in line:
                self.stream.write(line + "\n")
                self.stream.flush()
                self._last_print = now
            else:
                return
        self._last_line = line

    def event(self, text: str) -> None:
        """A line that stays (a failure, a stop); always shown, even when quiet."""
        if self.tty and self._last_line:
            self.stream.write("\r" + " " * len(self._last_line) + "\r")
        self.stream.write(text + "\n")
        self.stream.flush()
        if self.tty:
            self._last_line = ""

    def close(self) -> None:
        if self.tty and self._last_line and not self.quiet:
            self.stream.write("\n")
            self.stream.flush()
