"""The plan's expected cost under early stopping: ASHA's share of the epochs, against its rule run."""
import numpy as np
import pytest

from sweeper.plan import cost as cost_module
from sweeper.plan.cost import asha_share, calibrated_efficiency, rung_epochs
from sweeper.plan.points import make_plan
from sweeper.trials.asha import Rungs
from sweeper.spec.config import parse_sweep


@pytest.fixture(autouse=True)
def no_calibration(monkeypatch, tmp_path):
    monkeypatch.setenv(cost_module.CALIBRATION_ENV, str(tmp_path / "none.json"))
    calibrated_efficiency.cache_clear()
    yield
    calibrated_efficiency.cache_clear()


def test_rungs_are_the_coordinators():
    for grace, rf, epochs in ((1, 3, 9), (3, 3, 15), (2, 2, 20), (5, 3, 5)):
        assert rung_epochs(grace, rf, epochs) == Rungs("val_accuracy", "max", grace, rf, epochs).milestones


def _simulated(trials, grace, rf, epochs, reps=200):
    """The coordinator's own rule, trials one after another, scores in random order."""
    rng, total = np.random.default_rng(1), 0
    for _ in range(reps):
        rungs, scores = Rungs("val_accuracy", "max", grace, rf, epochs), rng.random(trials)
        for i, score in enumerate(scores):
            stop = next((m for m in rungs.milestones if not rungs.decide(i, m, {"val_accuracy": score})), epochs)
            total += stop
    return total / (reps * trials * epochs)


@pytest.mark.parametrize("trials,grace,rf,epochs", [(9, 1, 3, 9), (27, 3, 3, 15), (40, 2, 2, 16), (6, 1, 4, 8)])
def test_share_matches_the_rule_it_models(trials, grace, rf, epochs):
    # Both are averages over random orders (a few hundred each): they agree to their sampling noise.
    assert asha_share(trials, grace, rf, epochs) == pytest.approx(_simulated(trials, grace, rf, epochs), abs=0.04)


def test_share_bounds():
    assert asha_share(1, 1, 3, 9) == 1.0  # a lone trial always goes on
    assert asha_share(50, 10, 3, 10) == 1.0  # no rung below the last epoch
    many = asha_share(2000, 1, 3, 9)
    assert (1 + 2 / 3 + 6 / 9) / 9 < many < 0.3  # towards 1/rf per rung, from above
    assert asha_share(10, 1, 3, 9) > asha_share(100, 1, 3, 9)


def test_plan_states_the_expected_cost_with_early_stopping():
    base = {"name": "t", "train": {"epochs": 9}, "grid": {"kernel_size": [3, 5, 7], "depth": [4, 8, 16]}}
    plain = make_plan(parse_sweep(base), flops_per_cpu=1e10, total_cpus=2)
    assert plain.cost.asha_share is None and "with early stopping" not in plain.summary()
    stopped = make_plan(parse_sweep({**base, "early_stopping": {"grace_epochs": 1, "reduction_factor": 3}}),
                        flops_per_cpu=1e10, total_cpus=2)
    cost = stopped.cost
    assert cost.asha_share == pytest.approx(asha_share(9, 1, 3, 9))
    assert cost.asha_cpu_seconds == pytest.approx(cost.cpu_seconds * cost.asha_share)
    assert cost.asha_wall_seconds < cost.wall_seconds
    assert "with early stopping, expected: CPU time" in stopped.summary()
    assert "ASHA keeps the best 1/3 at epochs 1, 3" in stopped.summary()
