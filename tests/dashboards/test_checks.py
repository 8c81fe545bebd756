"""The tuning playbook's warnings (:mod:`dashboards.checks`) on simulated sweeps (simulated.py)."""
import pandas as pd

from dashboards import checks
from ledger import Selection, rank_points
from tests.dashboards import simulated


def test_overfitting_is_a_train_validation_gap_or_an_early_peak():
    runs = simulated.runs(2)
    overfit = runs.assign(train_accuracy=runs["val_accuracy"] + 0.05)
    assert "overfits" in checks.overfitting(overfit, None, 0.004, Selection())[0]
    assert checks.overfitting(runs, None, 0.004, Selection()) == []  # train = val + 0.005: under the gap
    curve = pd.DataFrame({"epoch": [1, 2, 3], "mean": [0.9, 0.97, 0.95]})
    assert "best at epoch 2" in checks.overfitting(runs, curve, 0.004, Selection())[0]
    assert checks.overfitting(runs, curve, 0.03, Selection()) == []  # the drop is within the noise
    losses = pd.DataFrame({"epoch": [1, 2, 3], "mean": [0.4, 0.2, 0.3]})  # a loss: best is lowest
    assert "best at epoch 2" in checks.overfitting(runs, losses, 0.004, Selection("val_loss", "min"))[0]


def test_noise_warns_when_the_top_is_not_settled_or_one_repeat_hides_it():
    runs = simulated.runs(2)
    ranked = rank_points(runs)
    close = ranked.assign(score=[0.99, 0.989, *ranked["score"].iloc[2:]])
    empty = pd.DataFrame(columns=["field", "a", "b", "contexts", "lo", "hi", "diff"])
    assert "not settled" in " ".join(checks.noise(0.004, close, empty, "v"))
    apart = ranked.assign(score=[0.99, 0.95, *ranked["score"].iloc[2:]])
    assert checks.noise(0.004, apart, empty, "v") == []
    claimed = pd.DataFrame([{"field": "depth", "a": "4", "b": "8", "contexts": 5, "diff": 0.001, "lo": 0.0005,
                             "hi": 0.0015}])
    assert "a single run may show the opposite" in checks.noise(0.004, apart, claimed, "v")[0]
    assert "one repeat" in checks.noise(float("nan"), ranked, empty, "v")[0]
