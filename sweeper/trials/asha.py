"""Early stopping of weak trials with the asynchronous successive-halving rule (ASHA).

Rungs sit at epochs ``grace * rf**k`` (``rf`` the reduction factor). A trial reaching a rung
records its metric there and goes on only if it is in the best ``1/rf`` of all values recorded at
that rung so far; it never waits for the others, so no CPU sits idle (Li et al., 2018). The rule
is the same as Ray Tune's ASHAScheduler with ``max_t`` the number of epochs.
"""
from __future__ import annotations

from typing import Optional

import numpy as np


class Rungs:
    def __init__(self, metric: str, mode: str, grace_epochs: int, reduction_factor: int, max_epochs: int):
        self.metric, self.mode, self.rf = metric, mode, reduction_factor
        self.milestones = []
        m = grace_epochs
        while m < max_epochs:  # a rung at the last epoch would stop nothing
            self.milestones.append(m)
            m *= reduction_factor
        self.recorded: dict[int, dict] = {m: {} for m in self.milestones}

    def decide(self, key, epoch: int, metrics: dict) -> bool:
        """Record ``metrics`` at a rung epoch; ``False`` means stop this trial."""
        if epoch not in self.recorded or self.metric not in metrics:
            return True
        value = float(metrics[self.metric])
        score = value if self.mode == "max" else -value
        rung = self.recorded[epoch]
        rung[key] = score
        cutoff = np.nanpercentile(list(rung.values()), (1 - 1 / self.rf) * 100)
        return not score < cutoff


class LocalCoordinator:
    """Applies the stopping rule to every epoch a trial reports (``None``: never stops).

    In a sweep with early stopping it runs as one Ray actor that every trial reports to;
    otherwise each trial keeps a local one.
    """

    def __init__(self, rule: Optional[dict], max_epochs: int = 0):
        self.rungs = Rungs(max_epochs=max_epochs, **rule) if rule else None

    def report(self, key, epoch: int, metrics: dict) -> bool:
        """False: stop this trial."""
        return True if self.rungs is None else self.rungs.decide(tuple(key), epoch, metrics)


class ActorProxy:
    """Makes a Ray actor handle look like a :class:`LocalCoordinator` to the trial."""

    def __init__(self, handle):
        self.handle = handle

    def report(self, key, epoch, metrics) -> bool:
        import ray
        from ray.exceptions import ActorUnavailableError, RayActorError

        try:
            return ray.get(self.handle.report.remote(key, epoch, metrics))
        except (RayActorError, ActorUnavailableError):
            # The coordinator went with its node: train on rather than fail a healthy trial.
            return True
