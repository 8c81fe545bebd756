"""The one rule for the best point: validation metric, mean over repeats, cheaper on ties."""
import math

import pandas as pd
import pytest

from ledger.selection import (DEFAULT, Selection, best_mean, choose_point, rank_points, selection_from_tags,
                              selection_tags)


def frame(rows):
    """Run rows ``(point, repeat, val_accuracy, test_accuracy, status)``."""
    out = pd.DataFrame(rows, columns=["point", "repeat", "val_accuracy", "test_accuracy", "status"])
    out["point_name"] = out["point"].str.upper()
    out["run_id"] = [f"r{i}" for i in range(len(out))]
    out["start_time"] = pd.to_datetime(range(len(out)), unit="s", utc=True)
    out["duplicate"] = False
    out["forward_flops"] = out["point"].map({"a": 10, "b": 20, "c": 30, "d": 5}).astype("Int64")
    return out


def test_best_is_chosen_on_validation_not_test():
    runs = frame([("a", 0, 0.90, 0.99, "FINISHED"), ("a", 1, 0.92, 0.99, "FINISHED"),
                  ("b", 0, 0.95, 0.80, "FINISHED"), ("b", 1, 0.93, 0.80, "FINISHED")])
    assert choose_point(runs) == "b"
    ranked = rank_points(runs)
    assert list(ranked.index) == ["b", "a"] and ranked.loc["b", "score"] == pytest.approx(0.94)
    assert ranked.loc["b", "repeats"] == 2 and ranked.loc["a", "score_std"] == pytest.approx(math.sqrt(2e-4))


def test_failed_and_duplicate_runs_do_not_count_and_min_mode_ranks_low_first():
    runs = frame([("a", 0, 0.5, 0.5, "FINISHED"), ("b", 0, 0.99, 0.5, "FAILED"), ("c", 0, 0.7, 0.5, "FINISHED"),
                  ("c", 0, 0.1, 0.5, "FINISHED")])  # a second FINISHED run of c #0: the earliest counts
    assert choose_point(runs) == "c" and rank_points(runs).loc["c", "repeats"] == 1
    losses = runs.rename(columns={"val_accuracy": "val_loss"})
    assert choose_point(losses, Selection("val_loss", "min")) == "a"


def test_ties_go_to_the_cheaper_point_and_no_metric_chooses_nothing():
    runs = frame([("c", 0, 0.9, 0.5, "FINISHED"), ("d", 0, 0.9, 0.5, "FINISHED")])
    assert choose_point(runs) == "d"
    assert choose_point(runs.assign(val_accuracy=math.nan)) is None


def test_best_mean_and_tags_round_trip():
    assert best_mean({"a": [0.9, 0.7], "b": [0.85]}) == ("b", 0.85)
    assert best_mean({"a": [0.9, 0.7], "b": [0.85]}, Selection("val_loss", "min")) == ("a", pytest.approx(0.8))
    assert best_mean({}) is None
    assert selection_from_tags(selection_tags(Selection("val_loss", "min"))) == Selection("val_loss", "min")
    assert selection_from_tags({}) == DEFAULT and selection_from_tags({"sweep.selection.metric": "val_loss"}).mode == "min"
    with pytest.raises(ValueError):
        Selection("val_accuracy", "up")
