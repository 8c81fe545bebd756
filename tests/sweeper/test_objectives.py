"""Several objectives: the sweep file's ``objectives:`` (closed, typed, every problem with its key
and line) and the samplers that take them (multi-objective TPE, NSGA-II), rebuilt from history."""
import math

import pytest

from sweeper.plan.search import Observation, make_sampler, space_of
from sweeper.spec.config import parse_sweep
from sweeper.spec.yamlsource import SweepFileError, parse_yaml

GRID = {"kernel_size": [3, 5], "learning_rate": {"low": 1.0e-4, "high": 0.1, "log": True}}
TWO = [{"metric": "val_accuracy", "direction": "maximize"}, {"metric": "train_seconds", "direction": "minimize"}]


def sweep(**fields):
    return parse_sweep({"name": "t", "method": "tpe", "budget": {"max_trials": 20}, "grid": GRID, **fields})


def problems(**fields):
    with pytest.raises(SweepFileError) as info:
        sweep(**fields)
    return [(p.path, p.message) for p in info.value.problems]


def test_objectives_parse_with_natural_directions():
    config = sweep(objectives=[{"metric": "val_accuracy"}, {"metric": "forward_flops"}])
    assert [(o.metric, o.direction, o.mode) for o in config.objectives] == [
        ("val_accuracy", "maximize", "max"), ("forward_flops", "minimize", "min")]
    rule = config.rule()
    assert rule.metric == "val_accuracy" and rule.objectives == (("val_accuracy", "max"), ("forward_flops", "min"))
    assert sweep().rule().objectives == ()  # no objectives: the one selection metric, as before
    assert sweep(objectives=TWO, method="nsga2").method == "nsga2"


@pytest.mark.parametrize("objectives, where, words", [
    ([{"metric": "test_accuracy"}, {"metric": "train_seconds"}], "objectives[0].metric", "Input should be"),
    ([{"metric": "val_accuracy"}, {"metric": "val_accuracy"}], "objectives[1].metric", "already objective 0"),
    ([{"metric": "val_accuracy"}, {"metric": "train_seconds", "direction": "maximize"}],
     "objectives[1].direction", "would prefer the worst"),
    ([{"metric": "val_accuracy"}, {"metric": "train_seconds", "direction": "up"}], "objectives[1].direction",
     "Input should be"),
    ([{"metric": "val_accuracy"}, {"metric": "train_seconds", "weight": 2}], "objectives[1].weight", "unknown key"),
    ([{"metric": "val_accuracy"}], "objectives", "at least 2"),
    ([{"metric": "val_loss"}, {"metric": "train_seconds"}], "objectives", "selection metric val_accuracy is not"),
])
def test_bad_objectives_name_key(objectives, where, words):
    found = problems(objectives=objectives)
    assert any(path == where and words in message for path, message in found), found


def test_objectives_and_other_sections():
    # early stopping ranks trials on the first objective
    found = problems(objectives=[{"metric": "train_seconds"}, {"metric": "val_accuracy"}], early_stopping={})
    assert found[0][0] == "early_stopping.metric" and "first objective (train_seconds)" in found[0][1]
    assert sweep(objectives=TWO, early_stopping={}).early_stopping.metric == "val_accuracy"
    # the selection must agree with its objective's direction
    found = problems(objectives=TWO, selection={"metric": "val_accuracy", "mode": "min"})
    assert found[0][0] == "selection.mode"
    assert problems(method="nsga2", budget={})[0][0] == "method"  # nsga2 needs a budget, like tpe
    assert sweep(method="grid", budget={}, grid={"kernel_size": [3, 5]}, objectives=TWO).objectives  # grid: just runs


def test_objective_problems_have_lines():
    text = ("name: t\nmethod: nsga2\nbudget: {max_trials: 8}\ngrid:\n  kernel_size: [3, 5]\nobjectives:\n"
            "  - {metric: val_accuracy}\n  - {metric: val_accuracy}\n")
    data, lines = parse_yaml(text)
    with pytest.raises(SweepFileError) as info:
        parse_sweep(data, lines, "s.yaml")
    (problem,) = info.value.problems
    assert (problem.path, problem.line) == ("objectives[1].metric", 8)


# --- samplers ---------------------------------------------------------------------------------


def _history(sampler, n, objective):
    history = []
    for i in range(n):
        values = sampler.ask(history, i)
        history.append(Observation(values, value=objective(values)))
    return history


def _two(values):
    """Accuracy best at lr 1e-2, cost falling with lr: a front along the learning rate."""
    x = math.log10(values["learning_rate"])
    return (-abs(x + 2), -x + (0.5 if values["kernel_size"] == 5 else 0.0))


@pytest.mark.parametrize("method", ["tpe", "nsga2"])
def test_multi_objective_samplers_are_deterministic_in_their_history(method):
    space = space_of(sweep(objectives=TWO, method=method))
    runs = [_history(make_sampler(method, space, 3, ("max", "min"), budget=20), 14, _two) for _ in range(2)]
    assert [o.values for o in runs[0]] == [o.values for o in runs[1]]
    for obs in runs[0]:
        assert 1e-4 <= obs.values["learning_rate"] <= 0.1 and obs.values["kernel_size"] in (3, 5)
    # A pending point (None) and a failed one are taken too.
    sampler = make_sampler(method, space, 3, ("max", "min"), budget=20)
    history = runs[0] + [Observation({"kernel_size": 3, "learning_rate": 0.01}),
                         Observation({"kernel_size": 5, "learning_rate": 0.02}, failed=True)]
    assert set(sampler.ask(history, 14)) == {"kernel_size", "learning_rate"}


def test_nsga2_breeds_from_the_rebuilt_population():
    """Past the first generation, NSGA-II proposals come from parents of the history (the
    generations are rebuilt from the ledger's order), not from the random initial draws."""
    from sweeper.plan.search.tpe import population_size

    space = space_of(sweep(objectives=TWO, method="nsga2"))
    size = population_size(20)
    sampler = make_sampler("nsga2", space, 0, ("max", "min"), budget=20)
    history = _history(sampler, 2 * size, _two)
    study = sampler.study(history, 2 * size)
    generations = {t.system_attrs.get("NSGAIISampler:generation") for t in study.trials}
    assert generations == {0, 1}


def test_feed_tells_the_model_each_objectives_seed_average():
    """Repeats: a point is told to the model once all its repeats finished, each objective averaged."""
    from sweeper.plan.points import make_plan
    from sweeper.plan.search.feed import Recorded

    config = sweep(objectives=TWO, method="nsga2", repeats=2, budget={"max_trials": 8})
    empty = make_plan(config, flops_per_cpu=1e9, history=[])
    point, _ = empty.feed.draw()
    history = [Recorded((point.hash, 0), dict(point.values), "FINISHED", (0.8, 10.0))]
    plan = make_plan(config, {(point.hash, 0): "run"}, flops_per_cpu=1e9, history=history)
    assert plan.feed.history() == [Observation(dict(point.values), None)]  # one repeat of two: pending
    plan.feed.tell((point.hash, 1), (0.9, 14.0))
    (obs,) = plan.feed.history()
    assert obs.value == pytest.approx((0.85, 12.0))
    assert plan.feed.draw()[0] is not None  # the model takes the tuple
