"""The report's sections (:mod:`dashboards.sections`), composed from run frames made by hand (hand_made.py)."""
from __future__ import annotations

import pandas as pd

from dashboards.analysis import Facts
from dashboards.document import to_html, to_markdown
from dashboards.sections import NEED_A_CHOICE, SECTIONS, compose
from ledger import Selection
from tests.dashboards.hand_made import hand_made_runs


def facts(runs, tmp_path, history=None, with_plots=True) -> Facts:
    history = history if history is not None else pd.DataFrame(columns=["run_id", "epoch", "metric", "value"])
    return Facts("hand", "sqlite:///x.db", runs, Selection(), tmp_path, history=history, with_plots=with_plots)


def test_the_sections_come_in_order_with_the_conclusion_first(tmp_path):
    runs = hand_made_runs()
    runs["dense"] = [[64] if "max" in p else [128, 64] for p in runs["point"]]
    runs.attrs["swept"] = ["kernel_size", "pooling", "dense"]
    history = pd.DataFrame({"run_id": ["r00", "r00", "r02"], "epoch": [1, 2, 1], "metric": "val_accuracy",
                            "value": [0.5, 0.8, 0.6]})
    report = compose(facts(runs, tmp_path, history))
    titles = [s.title for s in report.sections]
    assert titles == ["Conclusion", "Chosen point", "Which knobs matter", "Means by value",
                      "Differences between values", "Leaderboard (val_accuracy)", "Next sweep", "Checks",
                      "Pairs of knobs", "Accuracy against cost", "Learning curves", "All points", "About this report",
                      "Trial states"]
    assert report.sections[0].lead and not any(s.lead for s in report.sections[1:])
    assert {p.name for p in tmp_path.glob("*.png")} == {"levels.png", "heatmaps.png", "cost.png",
                                                          "learning_curves.png", "parallel.png"}
    md = to_markdown(list(report.sections), "hand")
    # chosen on validation: k5 max (0.94 on its one finished repeat) over k3 max (0.90 mean)
    assert "k5 max: the best mean val_accuracy over 1 repeat(s)" in md
    assert md.count("test_accuracy") == 3 and "| test_accuracy | 0.9500 |" in md  # the chosen point only
    assert "| dense | [64] |" in md and "**k5 max**" in report.note


def test_a_sweep_with_nothing_finished_says_so(tmp_path):
    from ledger.frame import runs_frame

    empty = runs_frame([])
    report = compose(facts(empty, tmp_path))
    assert [s.title for s in report.sections] == ["Conclusion", "About this report", "Trial states"]
    assert report.points.empty and report.next_yaml is None
    assert "Nothing to conclude" in to_html(list(report.sections), "empty", {})


def test_every_builder_is_listed_once_and_needs_only_facts_and_findings():
    assert len(set(SECTIONS)) == len(SECTIONS) and NEED_A_CHOICE < set(SECTIONS)
