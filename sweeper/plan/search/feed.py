"""A search's points drawn one at a time, within its budget, from what the ledger has measured.

:class:`Feed` is what a submission asks for its next trials when a slot frees (method ``tpe``),
and what a plan lists its points with (``random``, ``sobol``: proposals that do not depend on
measurements). It knows every point of the search (the ledger's, then the ones it drew) and
their seed-averaged metrics; the budget is counted over all of them, so every submission of a
sweep together trains at most ``budget.max_trials`` trials.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Union

from sweeper.plan.search.base import Observation, Sampler

#: Proposals tried for one new point before the space is taken as exhausted (all equal to
#: points already known, or infeasible).
ATTEMPTS = 50


@dataclass(frozen=True)
class Recorded:
    """A trial run of the sweep, as the ledger holds it: ``status`` FINISHED, FAILED, KILLED ...;
    ``metric`` the selection metric of a finished one (with several objectives, a tuple of their
    values); ``failed`` for an error of its own."""

    key: tuple[str, int]
    values: dict
    status: str
    metric: Optional[Union[float, tuple]] = None
    failed: bool = False


class Feed:
    """Draws new points of a search; ``make_point(values) -> (point, why_not or None, network key)``."""

    def __init__(self, sampler: Sampler, make_point: Callable, max_points: Optional[int], repeats: int,
                 refresh: Optional[Callable[[], list]] = None):
        self.sampler, self.make_point, self.max_points, self.repeats = sampler, make_point, max_points, repeats
        self.refresh = refresh
        self.values: dict[str, dict] = {}  # point hash -> swept values, every point known
        self.networks: set[str] = set()  # network keys of the known points (equal settings collapse)
        self.scores: dict[str, dict[int, tuple]] = {}  # point hash -> repeat -> each objective's value
        self.failed: set[str] = set()
        self.closed = False
        self.drawn = 0  # points this feed proposed
        self.mine: set[str] = set()  # hashes of the points this feed drew
        self.preview: list = []  # points a plan estimates the budget's cost on

    # -- what is known -------------------------------------------------------------------------

    def know(self, point) -> bool:
        """Add a point (from the ledger, or drawn); False if it was known."""
        if point.hash in self.values:
            return False
        self.values[point.hash] = dict(point.values)
        self.networks.add(self.network_of(point))
        return True

    def network_of(self, point) -> str:
        return self.make_point(point.values)[2]

    def tell(self, key: tuple[str, int], metric: Union[float, tuple, None], failed: bool = False) -> None:
        """A trial ended: its selection metric, or a tuple of each objective's value (each
        seed-averaged per point for the sampler)."""
        if failed:
            self.failed.add(key[0])
        elif metric is not None:
            values = tuple(metric) if isinstance(metric, (tuple, list)) else (metric,)
            self.scores.setdefault(key[0], {})[key[1]] = tuple(float(v) for v in values)

    def absorb(self, records: list[Recorded]) -> None:
        """The ledger's trials (read again: another submission's points and results count too)."""
        for rec in records:
            if rec.key[0] not in self.values:
                point, why_not, network = self.make_point(rec.values)
                if point is None or point.hash != rec.key[0]:
                    continue  # a point of another version of the sweep file
                self.values[point.hash] = dict(point.values)
                self.networks.add(network)
            if rec.status == "FINISHED":
                self.tell(rec.key, rec.metric)
            elif rec.failed:
                self.tell(rec.key, None, failed=True)

    def history(self) -> list[Observation]:
        """Every known point: its mean metric (a tuple of means with several objectives) once all
        its repeats finished, else pending."""
        out = []
        for h, values in self.values.items():
            scores = list(self.scores.get(h, {}).values())
            mean = None
            if len(scores) >= self.repeats:
                mean = tuple(sum(column) / len(scores) for column in zip(*scores))
                mean = mean[0] if len(mean) == 1 else mean
            out.append(Observation(values, mean, failed=h in self.failed))
        return out

    def within_budget(self, point_hash: str) -> bool:
        """Whether a point this feed drew, its run now created, is among the first ``max_points``
        points of the ledger in the order their first runs were created. Two submissions that drew
        at the same moment read the same order, so exactly one of them steps back: the total never
        exceeds the budget. Without a ledger to read (a plan, a benchmark) the count drawn decides."""
        if self.refresh is None or self.max_points is None or point_hash not in self.mine:
            return True
        order = list(dict.fromkeys(rec.key[0] for rec in self.refresh()))
        return point_hash not in order or order.index(point_hash) < self.max_points

    # -- drawing ---------------------------------------------------------------------------------

    @property
    def left(self) -> Optional[int]:
        """Points the budget still allows (None: no limit of points)."""
        if self.closed:
            return 0
        return None if self.max_points is None else max(0, self.max_points - len(self.values))

    def can_draw(self) -> bool:
        return self.left is None or self.left > 0

    def close(self) -> None:
        """No more points (the time budget is spent, or the sweep stops)."""
        self.closed = True

    def draw(self, index: int = 0) -> tuple[Optional[object], list]:
        """The next new point (None when the budget or the space is exhausted), and the proposals
        left out on the way: ``(values, why)`` of infeasible ones."""
        if self.refresh is not None:
            self.absorb(self.refresh())
        if not self.can_draw():
            return None, []
        history = self.history()
        rejected = []
        for attempt in range(ATTEMPTS if not self.sampler.stream else 1):
            values = self.sampler.ask(history, index + attempt)
            point, why_not, network = self.make_point(values)
            if point is None or why_not is not None:
                rejected.append((point, why_not))
                history = history + [Observation(values, failed=True)]
                continue
            if network in self.networks:
                continue
            self.know(point)
            self.drawn += 1
            self.mine.add(point.hash)
            return point, rejected
        if not self.sampler.stream:
            self.closed = True  # the model keeps proposing known or infeasible points: the space is spent
        return None, rejected
