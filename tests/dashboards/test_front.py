"""The report of a sweep with several objectives: the Pareto front drawn, listed, the chosen point marked."""
from __future__ import annotations

import pandas as pd

from dashboards.analysis import Facts
from dashboards.document import to_markdown
from dashboards.front import front_table
from dashboards.sections import compose
from ledger import Selection, rank_points
from tests.dashboards.hand_made import hand_made_runs

TWO = Selection("val_accuracy", "max", (("val_accuracy", "max"), ("train_seconds", "min")))


def test_the_report_draws_and_lists_the_front(tmp_path):
    runs = hand_made_runs()
    history = pd.DataFrame(columns=["run_id", "epoch", "metric", "value"])
    report = compose(Facts("hand", "sqlite:///x.db", runs, TWO, tmp_path, history=history, with_plots=True))
    titles = [s.title for s in report.sections]
    assert titles[:3] == ["Conclusion", "Chosen point", "Pareto front"]
    assert (tmp_path / "pareto.png").stat().st_size > 0
    md = to_markdown(list(report.sections), "hand")
    assert "Objectives: val_accuracy (maximize), train_seconds (minimize)" in md
    ranked = rank_points(runs, TWO)
    table = front_table(ranked, TWO.objectives, ranked.index[0])
    # every listed point is non-dominated; the chosen one is the most accurate of them
    assert set(table["point"]) == set(ranked.loc[ranked["front"], "point_name"])
    assert table.loc[table["chosen"] == "chosen", "val_accuracy"].item() == table["val_accuracy"].max()
    assert "k5 max: the best mean val_accuracy on the Pareto front" in md


def test_without_objectives_there_is_no_front_section(tmp_path):
    history = pd.DataFrame(columns=["run_id", "epoch", "metric", "value"])
    report = compose(Facts("hand", "sqlite:///x.db", hand_made_runs(), Selection(), tmp_path, history=history))
    assert "Pareto front" not in [s.title for s in report.sections]
