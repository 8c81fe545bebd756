"""Early stopping in the report (:mod:`dashboards.budget`): a synthetic 2 x 2 grid where the better
value of knob ``a`` was stopped at epoch 3 and the worse one trained to epoch 9, so that the last
values rank ``a`` backwards and only a common budget ranks it right."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from dashboards import budget
from dashboards.analysis import Facts, analyse
from dashboards.document import to_markdown
from dashboards.sections import compose
from ledger import Selection, rank_points

NOISE = {0: 0.0, 1: 0.002}
PARENT = {"method": "random", "run_name": "syn", "status": "FINISHED", "run_id": "p0", "submissions": 1}  # repeat 1 a little better everywhere: the seed noise is known


def curve(a: int, b: str, repeat: int, epoch: int) -> float:
    """True val_accuracy: a=1 is 0.05 better at every epoch, b=y 0.01; every epoch adds 0.01."""
    return 0.80 + 0.05 * a + 0.01 * (b == "y") + 0.01 * epoch + NOISE[repeat]


def synthetic(stop_a1: int = 3, others: int = 9) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(runs, history): 4 points x 2 repeats; a=1 stopped early at ``stop_a1``, a=0 ran ``others``."""
    runs, history = [], []
    for a in (0, 1):
        for b in ("x", "y"):
            for repeat in (0, 1):
                i = len(runs)
                epochs = stop_a1 if a == 1 else others
                runs.append({"run_id": f"r{i:02d}", "run_name": f"a{a} b{b} #{repeat + 1}", "status": "FINISHED",
                             "point": f"a{a}b{b}", "point_name": f"a{a} b{b}", "repeat": repeat, "status_reason": "",
                             "duplicate": False, "start_time": pd.Timestamp("2025-01-01", tz="UTC") + pd.Timedelta(i),
                             "a": a, "b": b, "n_params": 1000, "forward_flops": 100, "train_seconds": 10.0 * epochs,
                             "epochs_run": float(epochs), "stopped_early": epochs if epochs < others else pd.NA,
                             "val_accuracy": curve(a, b, repeat, epochs), "test_accuracy": 0.5})
                history += [{"run_id": f"r{i:02d}", "epoch": e, "metric": "val_accuracy",
                             "value": curve(a, b, repeat, e)} for e in range(1, epochs + 1)]
    frame = pd.DataFrame(runs)
    frame["stopped_early"] = frame["stopped_early"].astype("Int64")
    frame.attrs["swept"] = ["a", "b"]
    return frame, pd.DataFrame(history)


def test_the_stopping_table_counts_trials_per_epoch_and_the_common_epoch_is_the_smallest():
    runs, _ = synthetic()
    table = budget.stopping(runs, "val_accuracy")
    assert table.to_dict("records") == [{"epoch": 3, "trials": 4, "stopped": True},
                                        {"epoch": 9, "trials": 4, "stopped": False}]
    assert budget.common_epoch(runs, "val_accuracy") == 3
    assert budget.describe(table) == "4 of 8 trials ran to the end (9 epochs); early stopping ended 4 at epoch 3."


def test_without_stopping_or_without_epochs_run_there_is_no_budget():
    runs, _ = synthetic(stop_a1=9)
    assert budget.common_epoch(runs, "val_accuracy") is None
    assert budget.describe(budget.stopping(runs, "val_accuracy")) is None
    old = runs.drop(columns=["epochs_run", "stopped_early"])  # a store from before epochs_run
    assert budget.common_epoch(old, "val_accuracy") is None and budget.stopping(old, "val_accuracy").empty


def test_at_epoch_reads_the_history_and_leaves_a_run_without_that_epoch_out():
    runs, history = synthetic()
    history = history[~((history["run_id"] == "r07") & (history["epoch"] == 3))]
    at = budget.at_epoch(runs, history, "val_accuracy", 3)
    assert at.loc[0, "val_accuracy"] == pytest.approx(curve(0, "x", 0, 3))
    assert pd.isna(at.loc[7, "val_accuracy"]) and runs.loc[7, "val_accuracy"] == pytest.approx(curve(1, "y", 1, 3))
    assert budget.missing(at, runs, "val_accuracy") == 1 and at.attrs["swept"] == ["a", "b"]


def test_the_knobs_are_compared_at_the_common_epoch_while_the_choice_stays_on_final_values():
    runs, history = synthetic()
    found = analyse(Facts("syn", "x", runs, Selection(), Path("unused"), epochs=history))
    assert found.effects.epoch == 3 and found.effects.measure("val_accuracy") == "val_accuracy at epoch 3"
    diff = found.effects.differences.set_index("field").loc["a", "diff"]
    assert diff == pytest.approx(0.05)  # last values say 0.88 - 0.89 = -0.01: backwards
    assert found.advice.knobs[0].field == "a" and found.advice.knobs[0].best == "1"
    pd.testing.assert_frame_equal(found.ranked, rank_points(runs, Selection()))
    assert found.chosen == "a0by"  # the best final value, ledger/selection.py's rule
    assert any("at epoch 3, the epoch every trial reached" in w for w in found.warnings)


def test_last_values_are_compared_with_a_warning_when_the_history_was_not_read():
    runs, _ = synthetic()
    found = analyse(Facts("syn", "x", runs, Selection(), Path("unused")))
    assert found.effects.epoch is None
    assert found.effects.differences.set_index("field").loc["a", "diff"] == pytest.approx(-0.01)
    assert any("was not read" in w for w in found.warnings)


def test_the_report_states_the_stopping_and_the_budget_of_its_knob_sections(tmp_path):
    runs, history = synthetic()
    report = compose(Facts("syn", "sqlite:///x.db", runs, Selection(), tmp_path, epochs=history))
    md = to_markdown(list(report.sections), "syn")
    titles = [s.title for s in report.sections]
    assert titles.index("Early stopping") < titles.index("Which knobs matter")
    assert "**Early stopping:** 4 of 8 trials ran to the end (9 epochs); early stopping ended 4 at epoch 3." in md
    assert "| 3 | 4 | stopped early |" in md and "| 9 | 4 | ran to the end |" in md
    knobs = md.split("## Which knobs matter")[1].split("## Means by value")[0]
    assert "Factorial ANOVA of val_accuracy at epoch 3" in knobs and "the epoch every trial reached" in knobs
    assert "difference b - a in val_accuracy at epoch 3" in md


def test_a_sweep_without_stopping_reads_as_before(tmp_path):
    runs, history = synthetic(stop_a1=9)
    report = compose(Facts("syn", "sqlite:///x.db", runs, Selection(), tmp_path, epochs=history))
    md = to_markdown(list(report.sections), "syn")
    assert "Early stopping" not in md and "at epoch" not in md


def test_a_store_whose_best_kernel_was_stopped_early_is_analysed_at_epoch_3(known, tmp_path):
    """build_report reads every finished trial's curve when trials stopped at different epochs."""
    from dashboards import build_report
    from ledger import load_runs

    uri, _, _ = known
    build_report(uri, "stopped", tmp_path / "report")
    md = (tmp_path / "report" / "report.md").read_text(encoding="utf-8")
    assert "12 of 18 trials ran to the end (9 epochs); early stopping ended 6 at epoch 3." in md
    assert "Factorial ANOVA of val_accuracy at epoch 3 per trial" in md
    means = md.split("## Means by value")[1].split("## Differences")[0]
    runs = load_runs(uri, "stopped")
    chosen = rank_points(runs, Selection()).index[0]
    assert runs.set_index("point").loc[chosen, "kernel_size"] == 7  # chosen on final values, as before
    best = [line for line in means.splitlines() if line.startswith("| kernel_size") and line.endswith("best |")]
    assert best and best[0].startswith("| kernel_size | 5 |")  # last values: 5 the worst, 0.12 below the rest


def test_importance_over_points_of_a_random_search_is_at_the_common_epoch_too(tmp_path):
    runs, history = synthetic()
    report = compose(Facts("syn", "sqlite:///x.db", runs, Selection(), tmp_path, PARENT, epochs=history))
    importance = to_markdown(list(report.sections), "syn").split("Variance-based importance")[1]
    assert "| a | 2 | 0.962 |" in importance  # a explains 25/26 of the variance at epoch 3; at the last epochs 1/2
