"""Several objectives in the one selection rule: the Pareto front, and the chosen point on it."""
import numpy as np
import pandas as pd
from hypothesis import given, settings, strategies as st

from ledger.selection import (Selection, choose_point, natural_mode, non_dominated, rank_points, selection_from_tags,
                              selection_tags)

TWO = Selection("val_accuracy", "max", (("val_accuracy", "max"), ("train_seconds", "min")))


def frame(rows):
    """Run rows ``(point, repeat, val_accuracy, train_seconds)``, all FINISHED."""
    out = pd.DataFrame(rows, columns=["point", "repeat", "val_accuracy", "train_seconds"])
    out["point_name"] = out["point"].str.upper()
    out["status"] = "FINISHED"
    out["run_id"] = [f"r{i}" for i in range(len(out))]
    out["start_time"] = pd.to_datetime(range(len(out)), unit="s", utc=True)
    out["duplicate"] = False
    out["forward_flops"] = 10
    return out


def test_non_dominated_by_hand():
    values = [[0.9, 10], [0.8, 5], [0.85, 12], [0.9, 10], [0.7, 5], [np.nan, 1]]
    mask = non_dominated(values, ["max", "min"])
    # (0.85, 12) is beaten by (0.9, 10); (0.7, 5) by (0.8, 5); equal points are both on the front
    assert mask.tolist() == [True, True, False, True, False, False]
    assert non_dominated(np.empty((0, 2)), ["max", "min"]).tolist() == []


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 5), st.integers(0, 5)), min_size=1, max_size=12))
def test_non_dominated_matches_the_definition(rows):
    x = np.array(rows, dtype=float)
    modes = ["max", "min", "max"]
    sign = np.array([1, -1, 1])  # higher is better on every column after this
    y = x * sign
    expected = [not any((y[j] >= y[i]).all() and (y[j] > y[i]).any() for j in range(len(y))) for i in range(len(y))]
    assert non_dominated(x, modes).tolist() == expected


def test_the_chosen_point_is_the_selection_metrics_best_on_the_front():
    # a and b tie on accuracy; b is faster, so a is dominated and b is chosen (FLOPs, the old
    # tie-break, are equal here). c is fast but worse: on the front, not chosen.
    runs = frame([("a", 0, 0.9, 20.0), ("a", 1, 0.9, 22.0), ("b", 0, 0.9, 10.0), ("b", 1, 0.9, 12.0),
                  ("c", 0, 0.6, 1.0), ("c", 1, 0.7, 1.0), ("d", 0, 0.5, 30.0), ("d", 1, 0.5, 30.0)])
    ranked = rank_points(runs, TWO)
    assert list(ranked.index) == ["b", "a", "c", "d"]
    assert ranked["front"].to_dict() == {"b": True, "a": False, "c": True, "d": False}
    assert ranked.loc["b", "train_seconds"] == 11.0 and abs(ranked.loc["c", "val_accuracy"] - 0.65) < 1e-12  # seed-averaged
    assert choose_point(runs, TWO) == "b"
    assert choose_point(runs) == "a"  # one objective: the earlier of the tie, as always
    # A rule whose metric is not an objective (given by hand): still the best on the front.
    by_loss = Selection("val_loss", "min", (("val_accuracy", "max"), ("train_seconds", "min")))
    runs["val_loss"] = runs["point"].map({"a": 0.1, "b": 0.5, "c": 0.4, "d": 0.01})
    assert choose_point(runs, by_loss) == "c"


def test_objectives_round_trip_through_the_parent_tags():
    tags = selection_tags(TWO)
    assert selection_from_tags(tags) == TWO
    assert selection_from_tags({**tags, "sweep.objectives": "not json"}) == Selection()
    assert "sweep.objectives" not in selection_tags(Selection())
    assert [natural_mode(m) for m in ("val_accuracy", "val_loss", "train_seconds", "forward_flops", "n_params",
                                      "peak_rss_mib")] == ["max", "min", "min", "min", "min", "min"]
