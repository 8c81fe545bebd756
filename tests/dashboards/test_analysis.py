"""What the report finds (:mod:`dashboards.analysis`): chosen on validation, every table once, frozen."""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path

from dashboards.analysis import Facts, analyse
from dashboards.document import to_markdown
from dashboards.sections import compose
from ledger import Selection
from tests.dashboards import simulated
from tests.dashboards.hand_made import hand_made_runs


def test_the_chosen_point_and_its_numbers_come_from_validation_where_test_disagrees():
    """simulated.TRAP is the best point on test and average on validation."""
    runs = simulated.runs(0)
    found = analyse(Facts("sim", "x", runs, Selection(), Path("unused")))
    trap = runs.loc[runs["point_name"] == "k{} d{} {}".format(*simulated.TRAP), "point"].iloc[0]
    assert runs.groupby("point")["test_accuracy"].mean().idxmax() == trap != found.chosen
    assert found.chosen == runs.groupby("point")["val_accuracy"].mean().idxmax()
    mine = runs[runs["point"] == found.chosen]
    metrics = found.choice.metrics.set_index("metric")
    assert metrics.loc["val_accuracy", "mean"] == mine["val_accuracy"].mean()
    assert metrics.loc["test_accuracy", "repeats"] == 3 and metrics.loc["test_accuracy", "lo"] < mine[
        "test_accuracy"].mean() < metrics.loc["test_accuracy", "hi"]
    best = found.points.set_index("point")["best_run_id"]
    assert (best == runs.loc[runs.groupby("point")["val_accuracy"].idxmax()].set_index("point")["run_id"]).all()


def test_one_repeat_has_no_noise_and_no_intervals():
    found = analyse(Facts("sim", "x", simulated.runs(0, repeats=1), Selection(), Path("unused")))
    assert not found.noise_known and math.isnan(found.effects.noise[0])
    assert found.choice.metrics["lo"].isna().all() and found.choice.versus["lo"].isna().all()


def test_facts_and_findings_cannot_be_changed(tmp_path):
    f = Facts("hand", "sqlite:///x.db", hand_made_runs(), Selection(), tmp_path)
    found = analyse(f)
    for obj, name in ((f, "runs"), (found, "chosen"), (found.advice, "verdict"), (found.advice.knobs[0], "values")):
        try:
            setattr(obj, name, None)
        except dataclasses.FrozenInstanceError:
            continue
        raise AssertionError(f"{type(obj).__name__}.{name} could be set")
    before = to_markdown(list(compose(f).sections), "hand")
    assert before.split("Generated")[0] == to_markdown(list(compose(f).sections), "hand").split("Generated")[0]
