"""ledger/rules.py: which run decides a trial, on runs and on the run frame alike."""
from types import SimpleNamespace

import pandas as pd

from ledger import rules


def run(run_id, point="p", repeat=0, status="FINISHED", start=0):
    return SimpleNamespace(info=SimpleNamespace(run_id=run_id, status=status, start_time=start),
                           data=SimpleNamespace(tags={"sweep.point": point, "sweep.repeat": str(repeat)}))


def test_key_is_point_and_repeat():
    assert rules.key(run("a", "h1", 2)) == ("h1", 2)


def test_runs_of_a_trial_in_start_order_then_run_id_and_unknown_starts_last():
    runs = [run("c", start=5), run("a", start=5), run("b", start=1), run("z", start=None)]
    assert [r.info.run_id for r in rules.by_trial(runs)[("p", 0)]] == ["b", "a", "c", "z"]


def test_the_earliest_finished_run_decides_and_other_statuses_never_do():
    runs = [run("late", start=9), run("early", start=3), run("killed", status="KILLED", start=1),
            run("other", point="q", status="FAILED")]
    decided = rules.deciding_runs(runs)
    assert {k: r.info.run_id for k, r in decided.items()} == {("p", 0): "early"}


def test_a_tie_in_start_time_goes_to_the_smaller_run_id():
    assert rules.deciding_runs([run("b", start=4), run("a", start=4)])[("p", 0)].info.run_id == "a"


def test_the_current_run_is_the_deciding_one_else_the_latest():
    runs = [run("f", start=1), run("k", status="KILLED", start=2), run("x", point="q", status="KILLED", start=1),
            run("y", point="q", status="RUNNING", start=2)]
    current = {k: r.info.run_id for k, r in rules.current_runs(runs).items()}
    assert current == {("p", 0): "f", ("q", 0): "y"}


def test_deciding_rows_applies_the_same_rule_to_the_frame_and_skips_duplicates():
    frame = pd.DataFrame({
        "run_id": ["a", "b", "c", "d", "e"], "point": ["p", "p", "p", "q", "q"], "repeat": [0, 0, 0, 0, 0],
        "status": ["FINISHED", "FINISHED", "FAILED", "FINISHED", "KILLED"],
        "duplicate": [False, False, False, True, True],
        "start_time": pd.to_datetime([3, 1, 0, 0, 0], unit="s")})
    kept = rules.deciding_rows(frame)
    assert list(kept["run_id"]) == ["b"]  # p: the earlier FINISHED; q: a duplicate never decides
    as_runs = [run(r.run_id, r.point, r.repeat, r.status, r.start_time.value) for r in frame.itertuples()
               if not r.duplicate]
    assert {k: r.info.run_id for k, r in rules.deciding_runs(as_runs).items()} == {("p", 0): "b"}
