"""Two sweeps side by side (:mod:`dashboards.compare`) on simulated sweeps (simulated.py)."""
import pytest

from dashboards import compare
from tests.dashboards import simulated

FIELDS = ["kernel_size", "depth", "pooling"]


def test_compare_matches_points_and_pairs_shared_seeds():
    a, b = simulated.runs(4), simulated.runs(5)
    b["val_accuracy"] += 0.01
    b = b[b["point_name"] != "k3 d4 max"]
    table, overall = compare.matched(a, b, FIELDS, "val_accuracy")
    assert overall["points"] == len(simulated.points()) - 1 and overall["only_a"] == 1
    assert table["paired"].all() and overall["lo"] < 0.01 < overall["hi"]
    with pytest.raises(ValueError):
        compare.matched(a, b.drop(columns="depth"), FIELDS, "val_accuracy")
