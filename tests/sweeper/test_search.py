"""The samplers of sweeper.plan.search and the plans they make, without Ray or MLflow."""
import math

import pytest

from sweeper.plan.points import make_plan
from sweeper.plan.search import Observation, make_sampler, space_of
from sweeper.plan.search.feed import Feed, Recorded
from sweeper.spec.config import parse_sweep

RANGES = {"learning_rate": {"low": 1.0e-4, "high": 0.1, "log": True},
          "epochs": {"low": 1, "high": 9, "step": 2},
          "weight_decay": {"low": 0.0, "high": 0.01}}


def sweep(method="random", grid=None, **more):
    data = {"name": "s", "method": method, "data": {"source": "bundled"}, "grid": grid or RANGES, **more}
    if method != "grid" and "budget" not in more and "samples" not in more:
        data["budget"] = {"max_trials": 12}
    return parse_sweep(data)


@pytest.mark.parametrize("method", ["random", "sobol", "tpe"])
def test_proposals_lie_in_the_space_and_repeat_for_equal_inputs(method):
    config = sweep(method)
    space = space_of(config)
    a, b = make_sampler(method, space, 3), make_sampler(method, space, 3)
    history = []
    for i in range(14):
        values = a.ask(history, i)
        assert values == b.ask(history, i)  # deterministic in (seed, history, index)
        assert 1e-4 <= values["learning_rate"] <= 0.1 and 0 <= values["weight_decay"] <= 0.01
        assert values["epochs"] in (1, 3, 5, 7, 9)
        history.append(Observation(values, value=-abs(math.log10(values["learning_rate"]) + 2)))


def test_log_range_is_sampled_on_a_log_scale():
    space = space_of(sweep("random", grid={"learning_rate": RANGES["learning_rate"]}))
    sampler = make_sampler("random", space, 0)
    rates = [sampler.ask([], i)["learning_rate"] for i in range(400)]
    below = sum(r < 1e-3 for r in rates) / len(rates)  # a third of the decades, a third of the draws
    assert 0.25 < below < 0.42


def test_sobol_covers_a_discrete_space_without_duplicates():
    grid = {"kernel_size": [3, 5], "pooling": ["max", "avg", "l2"], "epochs": {"low": 1, "high": 2}}
    config = sweep("sobol", grid=grid, budget={"max_trials": 12})
    plan = make_plan(config, flops_per_cpu=1e9)
    assert len(plan.points) == 12 and len({p.hash for p in plan.points}) == 12  # every point, once


def test_conditional_knob_is_set_only_under_its_condition():
    grid = {"pooling": ["max", "none"], "pool_size": {"values": [2, 3], "when": {"pooling": "max"}},
            "learning_rate": RANGES["learning_rate"]}
    for method in ("random", "sobol", "tpe"):
        sampler = make_sampler(method, space_of(sweep(method, grid=grid)), 1)
        for i in range(20):
            values = sampler.ask([], i)
            assert ("pool_size" in values) == (values["pooling"] == "max")


def test_conditional_grid_collapses_equivalent_points():
    grid = {"pooling": ["max", "none"], "pool_size": {"values": [2, 3], "when": {"pooling": "max"}}}
    plan = make_plan(sweep("grid", grid=grid), flops_per_cpu=1e9)
    assert plan.space == 4 and len(plan.points) == 3  # none x {2, 3} is one point
    assert {p.name for p in plan.points} == {"max pool_size=2", "max pool_size=3", "nopool"}


def test_tpe_is_told_the_history_and_moves_towards_the_best():
    space = space_of(sweep("tpe", grid={"learning_rate": RANGES["learning_rate"]}))
    sampler = make_sampler("tpe", space, 0)
    history = []
    for i in range(30):
        values = sampler.ask(history, 0)
        history.append(Observation(values, value=-abs(math.log10(values["learning_rate"]) + 2)))
    late = [abs(math.log10(o.values["learning_rate"]) + 2) for o in history[-10:]]
    early = [abs(math.log10(o.values["learning_rate"]) + 2) for o in history[:10]]
    assert sum(late) < sum(early)  # closer to 1e-2 once the model is used


def test_random_stream_plan_draws_the_budget_and_is_reproducible():
    config = sweep("random", repeats=2, budget={"max_trials": 10})
    plan = make_plan(config, flops_per_cpu=1e9)
    assert len(plan.points) == 5 and len(plan.trials) == 10
    again = make_plan(config, flops_per_cpu=1e9)
    assert [p.hash for p in plan.points] == [p.hash for p in again.points]


def test_tpe_plan_is_rebuilt_from_the_ledger_and_counts_the_budget():
    config = sweep("tpe", budget={"max_trials": 6})
    empty = make_plan(config, flops_per_cpu=1e9, history=[])
    assert empty.points == () and empty.feed.left == 6
    point, _ = empty.feed.draw()
    history = [Recorded((point.hash, 0), dict(point.values), "FINISHED", 0.9),
               Recorded(("elsewhere", 0), {"learning_rate": 5.0}, "FINISHED", 0.1)]  # not of this file: ignored
    plan = make_plan(config, {(point.hash, 0): "run"}, flops_per_cpu=1e9, history=history)
    assert [p.hash for p in plan.points] == [point.hash] and len(plan.done) == 1 and plan.feed.left == 5
    assert plan.feed.history() == [Observation(dict(point.values), 0.9)]
    drawn = [plan.feed.draw()[0] for _ in range(6)]
    assert sum(p is not None for p in drawn) == 5 and point.hash not in {p.hash for p in drawn if p}


def test_feed_never_proposes_a_known_point_of_a_small_space():
    config = sweep("tpe", grid={"kernel_size": [3, 5], "pooling": ["max", "avg"]}, budget={"max_trials": 10})
    plan = make_plan(config, flops_per_cpu=1e9, history=[])
    points = []
    while (p := plan.feed.draw()[0]) is not None:
        points.append(p)
    assert len(points) == 4 and len({p.hash for p in points}) == 4 and not plan.feed.can_draw()


def test_plan_text_shows_space_budget_and_eta():
    config = sweep("tpe", budget={"max_trials": 20, "time_budget": 60})
    text = make_plan(config, flops_per_cpu=1e9, history=[], total_cpus=2).summary()
    assert "learning_rate: float [0.0001, 0.1] log" in text and "epochs: int [1, 9] step 2" in text
    assert "size: infinite" in text and "budget: max_trials 20, time_budget 1m00s" in text
    assert "ETA of the budget: 20 trial(s)" in text
    finite = make_plan(sweep("sobol", grid={"kernel_size": [3, 5], "epochs": {"low": 1, "high": 3}},
                             budget={"max_trials": 4}), flops_per_cpu=1e9, total_cpus=2).summary()
    assert "size: 6 points" in finite and "ETA of the budget: 4 trial(s)" in finite
