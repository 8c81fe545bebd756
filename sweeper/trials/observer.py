"""What a submission tells whoever watches it: the app layer passes an observer in.

:mod:`sweeper.trials` imports nothing above it; the terminal's progress line
(:class:`sweeper.app.progress.Progress`) is one such observer, :class:`Silent` another.
"""
from __future__ import annotations

from typing import Optional, Protocol

from sweeper.trials.counts import Counts


class Observer(Protocol):
    def update(self, counts: Counts, best: str, remaining: Optional[float]) -> None:
        """The state of the trials now, the best point so far and the seconds left (None: unknown)."""

    def event(self, text: str) -> None:
        """A line worth keeping: a failure, a retry, a stop."""

    def close(self) -> None:
        """The submission's loop has ended."""


class Silent:
    """An observer that shows nothing."""

    def update(self, counts: Counts, best: str, remaining: Optional[float]) -> None:
        pass

    def event(self, text: str) -> None:
        pass

    def close(self) -> None:
        pass
