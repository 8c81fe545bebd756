"""Run names within MLflow's run-name column, checked at validation: what validates never fails on
PostgreSQL later (tests/sweeper/malformed/run-name-too-long.yaml is the refused case)."""
from ledger.schema import MAX_RUN_NAME
from sweeper.plan.points import make_plan
from sweeper.spec.config import parse_sweep
from sweeper.spec.names import point_name, run_name, run_name_problem


def test_run_names_are_the_plans():
    config = parse_sweep({"name": "t", "repeats": 2, "grid": {"kernel_size": [3, 5], "pooling": ["max", "none"]}})
    plan = make_plan(config, flops_per_cpu=1e9)
    for trial in plan.trials:
        assert trial.run_name == run_name(trial.point.values, trial.repeat)
        assert trial.point.name == point_name(trial.point.values)


def test_the_longest_name_is_the_bound():
    values = [[1000] * n for n in (1, 40)]
    assert len(run_name({"dense": values[1]}, 0)) <= MAX_RUN_NAME
    assert run_name_problem([("dense", values)], 1) is None
    assert "MLflow's SQL stores hold at most 250" in run_name_problem([("dense", [[1000] * 60])], 1)
