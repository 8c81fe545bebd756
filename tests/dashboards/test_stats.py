"""The per-point tables (:mod:`dashboards.stats`) and the typed run columns they read
(:mod:`ledger.frame`), on a run frame made by hand (hand_made.py)."""
from __future__ import annotations

import math

import pandas as pd
import pytest

from dashboards import stats
from ledger import Selection
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
    points = stats.per_point(runs, Selection()).set_index("point")
    assert list(points.index) == ["k3 max", "k3 avg", "k5 max", "k5 avg"]  # order of first start
    assert points.loc["k3 max", "test_accuracy"] == pytest.approx(0.91)
    assert points.loc["k3 max", "test_accuracy_std"] == pytest.approx(math.sqrt(2) * 0.01)
    assert points.loc["k5 avg", "test_accuracy"] == pytest.approx(0.86)  # the duplicate's 0.10 is left out
    assert points.loc["k5 max", "repeats"] == 1 and math.isnan(points.loc["k5 max", "test_accuracy_std"])
    assert points.loc["k3 avg", "dense"] == [64]  # list values survive the grouping


def test_the_best_repeat_is_chosen_on_validation_where_test_disagrees(runs):
    """best_run_id (written into points.csv) follows the selection rule: k3 avg's repeat r04 is
    best on test (0.84 against 0.80) but r03 is best on validation once validation disagrees."""
    runs = runs.copy()
    runs.loc[runs["run_id"] == "r03", "val_accuracy"] = 0.90  # r03: test 0.80, val 0.90; r04: test 0.84, val 0.83
    points = stats.per_point(runs, Selection()).set_index("point")
    assert points.loc["k3 avg", "best_run_id"] == "r03"
    by_test = runs[runs["point"] == "k3 avg"].sort_values("test_accuracy")["run_id"].iloc[-1]
    assert by_test == "r04" != points.loc["k3 avg", "best_run_id"]
    on_loss = stats.per_point(runs.assign(val_loss=1 - runs["val_accuracy"]), Selection("val_loss", "min"))
    assert on_loss.set_index("point").loc["k3 avg", "best_run_id"] == "r03"  # lowest loss = highest accuracy


def test_no_function_has_a_default_metric():
    import inspect

    import dashboards
    from dashboards import (advice, analysis, checks, compare, conclusion, figures, inference, nextsweep, report,
                            sections)

    for module in (stats, advice, analysis, checks, compare, conclusion, figures, inference, nextsweep, report,
                   sections, dashboards):
        for name, function in inspect.getmembers(module, inspect.isfunction):
            if function.__module__ != module.__name__:
                continue
            for parameter in inspect.signature(function).parameters.values():
                default = parameter.default
                # None is "the rule the sweep recorded" (build_report reads it from the parent run).
                assert parameter.name not in ("metric", "selection") or default in (inspect.Parameter.empty, None), \
                    f"{module.__name__}.{name}({parameter.name}={default!r})"
                assert default not in ("test_accuracy", "val_accuracy", "val_loss"), f"{module.__name__}.{name}"


def test_pareto_front_follows_the_selection(runs):
    points = stats.per_point(runs, Selection())
    front = stats.pareto_front(points, "forward_flops", Selection())
    # val = test - 0.01: k3 avg costs as little as k3 max but is worse; k5 avg costs more than
    # k3 max and is worse.
    assert list(front["point_name"]) == ["k3 max", "k5 max"] and list(front["forward_flops"]) == [100, 300]
    losses = points.assign(val_loss=1 - points["val_accuracy"])
    assert list(stats.pareto_front(losses, "forward_flops", Selection("val_loss", "min"))["point_name"]) == \
        ["k3 max", "k5 max"]


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
    points = stats.per_point(nothing, Selection())
    assert points.empty and "test_accuracy" in points.columns
    assert stats.state_counts(runs.iloc[:0])["runs"].tolist() == [0]
    assert stats.failures(runs[runs["status"] == "FINISHED"]).empty
