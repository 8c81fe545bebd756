"""tests/faults.py, the counting behind the fault table, on runs made up to fail it."""
from collections import Counter

from tests.faults import cost


def test_fault_counts_see_a_lost_step_and_a_zombie():
    """The counting itself can fail: a FINISHED trial missing step 2, and a run left RUNNING."""
    class M:
        def __init__(self, step):
            self.step = step

    class R:
        def __init__(self, run_id, status, steps, epochs_run=3):
            self.info = type("I", (), {"run_id": run_id, "run_name": run_id, "status": status})()
            self.data = type("D", (), {"tags": {"sweep.kind": "trial", "sweep.point": "p", "sweep.repeat": "0"},
                                       "metrics": {"epochs_run": epochs_run}})()
            self.steps = steps

    class Page(list):
        token = None

    runs = [R("a", "FINISHED", [1, 3]), R("b", "RUNNING", [])]

    class C:
        def search_runs(self, *a, **k):
            return Page(runs)

        def get_metric_history(self, run_id, key):
            return [M(s) for s in next(r for r in runs if r.info.run_id == run_id).steps]

    result = cost(C(), "1", 3)
    assert result.steps_lost == 1 and result.zombies == ["b"] and Counter(result.finished_per_trial) == {("p", "0"): 1}
