"""The points of a search (methods random, sobol, tpe, nsga2) as a plan lists them.

A stream's points (random, sobol) are all drawn here, skipping equal, excluded and infeasible
proposals; a tpe or nsga2 search's points are the ledger's so far, and the returned
:class:`~sweeper.plan.search.feed.Feed` draws the rest as trials end. Called by
:func:`sweeper.plan.points.make_plan`.
"""
from __future__ import annotations

from sweeper.plan.points import Excluded, Infeasible, matching_rule, network_key, resolve_point
from sweeper.plan.search import make_sampler, objective_metrics, space_of
from sweeper.plan.search.feed import Feed
from sweeper.spec.config import SweepConfig


#: Proposals a stream sampler (random, sobol) may make per point it must find.
STREAM_ATTEMPTS = 20
#: Points of a tpe search drawn at random to estimate the cost of its budget.
PREVIEW_POINTS = 16


def search_points(config: SweepConfig, data, why_not, excluded: list, infeasible: list, history: list):
    """Methods random, sobol, tpe: ``(points, feed)``. A stream's points are all drawn here; tpe's
    are the ledger's so far, and the feed draws the rest as trials end."""
    def make_point(values):
        rule = matching_rule(values, config.exclude)
        point = resolve_point(config, values, data.input_shape)
        if rule is not None:
            return point, f"exclude[{rule}]", network_key(point)
        return point, why_not(point), network_key(point)

    repeats, budget = config.repeats, config.budget
    max_points = config.samples or (budget.max_trials // repeats if budget.max_trials else None)
    if max_points is None:  # a time budget only: the trial limit of every sweep still holds
        from sweeper.spec.config import MAX_TRIALS
        max_points = MAX_TRIALS // repeats
    sampler = make_sampler(config.method, space_of(config), config.seed,
                           [mode for _, mode in objective_metrics(config)], budget=max_points)
    feed = Feed(sampler, make_point, max_points, repeats)
    seen_bad: set = set()

    def note(rejected):
        for point, why in rejected:
            if point is not None and point.hash not in seen_bad:
                seen_bad.add(point.hash)
                if why.startswith("exclude["):
                    excluded.append(Excluded(point.values, point.name, int(why[8:-1]), config.exclude[int(why[8:-1])]))
                else:
                    infeasible.append(Infeasible(point, why))

    if sampler.stream:
        size = config.grid.size()
        attempts = STREAM_ATTEMPTS * max_points + 100
        if size is not None:
            attempts = min(attempts, STREAM_ATTEMPTS * size + 100)
        points = []
        for i in range(attempts):
            if not feed.can_draw():
                break
            point, rejected = feed.draw(i)
            note(rejected)
            if point is not None:
                points.append(point)
        return points, None
    feed.absorb(history)
    points = [resolve_point(config, values, data.input_shape) for values in feed.values.values()]
    # Points the plan costs the budget's ETA on: a random draw of the space (tpe's own are yet unknown).
    stream = Feed(make_sampler("random", space_of(config), config.seed), make_point, PREVIEW_POINTS, repeats)
    feed.preview = [p for i in range(STREAM_ATTEMPTS * PREVIEW_POINTS) if stream.can_draw()
                    for p in [stream.draw(i)[0]] if p is not None]
    return points, feed
