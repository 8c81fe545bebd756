"""The dashboards' statistics (:mod:`dashboards.stats`) and the typed run columns they read
(:mod:`ledger.frame`), on a run frame made by hand."""
from __future__ import annotations

import math

import pandas as pd
import pytest

from dashboards import stats
from ledger.frame import parse_value, typed_column
from tests.dashboards.hand_made import hand_made_runs


@pytest.fixture
def runs() -> pd.DataFrame:
    return hand_made_runs()


def test_parse_value_and_typed_columns():
    assert [parse_value(t) for t in ("3", "-2", "0.001", "1e-05", "None", "True", "same", "[128, 64]", "1_000")] \
        == [3, -2, 0.001, 1e-05, None, True, "same", [128, 64], "1_000"]
    assert str(typed_column([3, 5, None]).dtype) == "Int64"
    assert str(typed_column([0.1, 1, None]).dtype) == "float64"
    assert typed_column([0, "same"]).tolist() == [0, "same"]
    assert typed_column([[64], [128, 64]]).tolist() == [[64], [128, 64]]


def test_labels_order_numbers_then_text_then_lists():
    assert stats.ordered_labels([7, 3, 5, 3]) == ["3", "5", "7"]
    assert stats.ordered_labels(["same", 2, 0]) == ["0", "2", "same"]
    assert stats.ordered_labels([[128, 64], [64], 0.01, 0.001]) == ["0.001", "0.01", "[64]", "[128, 64]"]


def test_per_point_averages_finished_repeats_only(runs):
    points = stats.per_point(runs).set_index("point")
    assert list(points.index) == ["k3 max", "k3 avg", "k5 max", "k5 avg"]  # order of first start
    assert points.loc["k3 max", "test_accuracy"] == pytest.approx(0.91)
    assert points.loc["k3 max", "test_accuracy_std"] == pytest.approx(math.sqrt(2) * 0.01)
    assert points.loc["k5 avg", "test_accuracy"] == pytest.approx(0.86)  # the duplicate's 0.10 is left out
    assert points.loc["k5 max", "repeats"] == 1 and math.isnan(points.loc["k5 max", "test_accuracy_std"])
    assert points.loc["k3 avg", "best_run_id"] == "r04"
    assert points.loc["k3 avg", "dense"] == [64]  # list values survive the grouping


def test_by_value_aggregates_points_not_runs(runs):
    points = stats.per_point(runs)
    table = stats.by_value(points, "kernel_size")
    assert list(table.index) == ["3", "5"]
    row = table.loc["5"]
    # Over points (0.95, 0.86), not over runs (0.95, 0.85, 0.87): 0.905, not 0.89.
    assert row[("test_accuracy", "mean")] == pytest.approx(0.905)
    assert row[("test_accuracy", "std")] == pytest.approx(math.sqrt(2) * 0.045)
    assert (row[("test_accuracy", "min")], row[("test_accuracy", "max")]) == pytest.approx((0.86, 0.95))
    assert row[("test_accuracy", "count")] == 2
    assert row[("n_params", "mean")] == 5000 and row[("train_seconds", "mean")] == 50.0
    assert table.loc["3", ("val_accuracy", "mean")] == pytest.approx(0.855)


def test_marginal_effects_rank_fields_and_mark_unswept(runs):
    effects = stats.marginal_effects(stats.per_point(runs)).set_index("field")
    assert list(effects.index[:2]) == ["pooling", "kernel_size"]
    assert effects.loc["pooling", "effect"] == pytest.approx(0.93 - 0.84)
    assert (effects.loc["pooling", "best"], effects.loc["pooling", "worst"]) == ("max", "avg")
    assert effects.loc["kernel_size", "effect"] == pytest.approx(0.905 - 0.865)
    assert effects.loc["depth", "levels"] == 0  # not in the frame at all
    one_value = stats.marginal_effects(stats.per_point(runs), ["learning_rate"]).iloc[0]
    assert one_value["levels"] == 1 and one_value["best"] == "0.001" and math.isnan(one_value["effect"])


def test_pivot_kernel_by_pooling(runs):
    table = stats.pivot(stats.per_point(runs), "kernel_size", "pooling")
    assert list(table.index) == ["3", "5"] and list(table.columns) == ["avg", "max"]
    assert table.to_numpy().ravel().tolist() == pytest.approx([0.82, 0.91, 0.86, 0.95])


def test_best_points_and_pareto_front(runs):
    points = stats.per_point(runs)
    best = stats.best_points(points, n=3)
    assert list(best["point_name"]) == ["k5 max", "k3 max", "k5 avg"] and list(best.index) == [1, 2, 3]
    assert best.loc[2, "test_accuracy_std"] == pytest.approx(math.sqrt(2) * 0.01)
    assert best.loc[1, "kernel_size"] == "5"
    front = stats.pareto_front(points)
    # k3 avg costs as little as k3 max but is worse; k5 avg costs more than k3 max and is worse.
    assert list(front["point_name"]) == ["k3 max", "k5 max"]
    assert list(front["forward_flops"]) == [100, 300]


def test_state_counts_and_failures(runs):
    counts = stats.state_counts(runs).set_index("state")
    assert counts["runs"].to_dict() == {"FINISHED": 7, "FAILED": 1, "KILLED": 1, "DUPLICATE": 1, "total": 10}
    # The interrupted k3 max #2 finished later; the duplicate's trial is FINISHED too.
    assert counts["trials"].to_dict() == {"FINISHED": 7, "FAILED": 1, "KILLED": 0, "DUPLICATE": 0, "total": 8}
    fails = stats.failures(runs)
    assert fails[["status", "reason", "runs", "unresolved"]].values.tolist() == [
        ["KILLED", "interrupted: worker died", 1, 0], ["FAILED", "FloatingPointError: NaN", 1, 1]]
    assert fails.loc[1, "examples"] == "k5 max #2"


def test_empty_and_unfinished_frames(runs):
    nothing = runs[runs["status"] == "FAILED"]
    points = stats.per_point(nothing)
    assert points.empty and "test_accuracy" in points.columns
    assert stats.state_counts(runs.iloc[:0])["runs"].tolist() == [0]
    assert stats.failures(runs[runs["status"] == "FINISHED"]).empty
