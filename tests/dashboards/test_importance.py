"""PED-ANOVA importance of a search's knobs (dashboards.importance)."""
import numpy as np
import pandas as pd

from dashboards.importance import ped_anova


def _points(n=40, seed=0):
    rng = np.random.default_rng(seed)
    lr = 10 ** rng.uniform(-4, -1, n)
    return pd.DataFrame({"learning_rate": lr, "kernel_size": rng.choice([3, 5], n),
                         "weight_decay": 10 ** rng.uniform(-6, -2, n), "pooling": ["max"] * n,
                         "val_accuracy": 0.9 - 0.1 * np.abs(np.log10(lr) + 2.5) + rng.normal(0, 0.005, n)})


def test_the_knob_that_decides_ranks_first_with_an_interval():
    table = ped_anova(_points(), ["kernel_size", "learning_rate", "weight_decay", "pooling"], "val_accuracy",
                      boots=20)
    assert list(table["field"])[0] == "learning_rate" and "pooling" not in set(table["field"])  # constant: left out
    assert abs(table["importance"].sum() - 1) < 1e-6
    assert ((table["lo"] <= table["importance"] + 1e-9) | table["lo"].isna()).all()


def test_too_few_points_give_an_empty_table():
    assert ped_anova(_points(n=3), ["learning_rate"], "val_accuracy").empty
