"""Several objectives end to end on a real local Ray and a real MLflow SQLite store: tpe (Optuna's
multi-objective TPE) and nsga2 train exactly their budget, a larger budget continues the search
from the ledger, and the report draws the Pareto front with the chosen point on it."""
from collections import Counter

import pytest

from ledger import load_parent, load_runs, rank_points
from sweeper.app.cli import main
from tests.sweeper.test_sweep_e2e import children, parents, sweep_file

pytestmark = pytest.mark.slow

SPACE = {"kernel_size": [3, 5],
         "learning_rate": {"low": 1.0e-4, "high": 0.1, "log": True}}
OBJECTIVES = [{"metric": "val_accuracy", "direction": "maximize"}, {"metric": "train_seconds", "direction": "minimize"}]


@pytest.mark.parametrize("method", ["tpe", "nsga2"])
def test_two_objectives_train_the_budget_once_and_report_the_front(method, tmp_path, ray_local, mlflow_uri):
    name = f"objectives-{method}"
    path = sweep_file(tmp_path, name, mlflow_uri, method=method, budget={"max_trials": 5}, grid=SPACE,
                      objectives=OBJECTIVES, train={"epochs": 1})
    assert main(["run", str(path), "--address", ray_local, "-q"]) == 0
    runs = children(mlflow_uri, name, "FINISHED")
    counts = Counter((r.data.tags["sweep.point"], r.data.tags["sweep.repeat"]) for r in runs)
    assert len(runs) == 5 and set(counts.values()) == {1}
    assert all("train_seconds" in r.data.metrics and "val_accuracy" in r.data.metrics for r in runs)
    (parent,) = parents(mlflow_uri, name)
    assert parent.data.tags["sweep.method"] == method
    # The objectives are on the parent run: the report and status read them from there.
    selection = load_parent(mlflow_uri, name)["selection"]
    assert selection.objectives == (("val_accuracy", "max"), ("train_seconds", "min"))
    # A larger budget continues the one search: the model is rebuilt from the ledger's tuples.
    assert main(["run", str(path), "--address", ray_local, "-q", "--set", "budget.max_trials=7"]) == 0
    runs = children(mlflow_uri, name, "FINISHED")
    assert len(runs) == 7 and len({r.data.tags["sweep.point"] for r in runs}) == 7
    assert len(children(mlflow_uri, name)) == 7
    out = tmp_path / "report"
    assert main(["report", name, "--tracking-uri", mlflow_uri, "--out", str(out)]) == 0
    assert (out / "pareto.png").stat().st_size > 0
    md = (out / "report.md").read_text()
    assert "## Pareto front" in md and "Objectives: val_accuracy (maximize), train_seconds (minimize)" in md
    ranked = rank_points(load_runs(mlflow_uri, name), selection)
    assert ranked["front"].iloc[0]  # the chosen point is on the front
    assert f"| {ranked['point_name'].iloc[0]} |" in md and "| chosen |" in md
    # attaching the report kept the objectives on the parent
    assert load_parent(mlflow_uri, name)["selection"] == selection


def test_objectives_with_repeats_and_early_stopping(tmp_path, ray_local, mlflow_uri):
    """Each point trained `repeats` times (the model told each objective's mean over them); ASHA
    stops trials on the first objective, as without objectives."""
    name = "objectives-asha"
    path = sweep_file(tmp_path, name, mlflow_uri, method="nsga2", repeats=2, budget={"max_trials": 6}, grid=SPACE,
                      objectives=OBJECTIVES, train={"epochs": 3},
                      early_stopping={"metric": "val_accuracy", "grace_epochs": 1, "reduction_factor": 2})
    assert main(["run", str(path), "--address", ray_local, "-q"]) == 0
    runs = children(mlflow_uri, name, "FINISHED")
    per_point = Counter(r.data.tags["sweep.point"] for r in runs)
    assert len(runs) == 6 and len(per_point) == 3 and set(per_point.values()) == {2}


def test_sigkilled_nsga2_search_resumes_from_the_ledger(tmp_path, ray_local, mlflow_uri):
    """SIGKILL mid-search with two objectives, then resume: exactly max_trials FINISHED runs, none
    twice, the earlier points part of the one search."""
    import os
    import subprocess

    from tests.sweeper.procs import sigkill_when
    from tests.sweeper.test_driver_faults import CLI

    name = "objectives-kill"
    path = sweep_file(tmp_path, name, mlflow_uri, method="nsga2", budget={"max_trials": 6}, grid=SPACE,
                      objectives=OBJECTIVES, data={"train_size": 1500}, train={"epochs": 4},
                      resources={"max_concurrent": 1})
    with open(tmp_path / "driver.log", "w") as log:
        proc = subprocess.Popen([*CLI, "run", str(path), "-q", "--address", ray_local],
                                env={**os.environ, "PYTHONUNBUFFERED": "1"}, start_new_session=True, stdout=log,
                                stderr=subprocess.STDOUT, text=True)
        sigkill_when(proc, lambda: len(children(mlflow_uri, name, "FINISHED")) >= 2, 300, "two finished trials",
                     tmp_path / "driver.log")
    before = {r.data.tags["sweep.point"] for r in children(mlflow_uri, name, "FINISHED")}
    assert 2 <= len(before) < 6
    resume = subprocess.run([*CLI, "resume", name, "--tracking-uri", mlflow_uri, "-q", "--address", ray_local],
                            capture_output=True, text=True, timeout=600)
    assert resume.returncode == 0, resume.stderr
    runs = children(mlflow_uri, name, "FINISHED")
    counts = Counter((r.data.tags["sweep.point"], r.data.tags["sweep.repeat"]) for r in runs)
    assert len(runs) == 6 and set(counts.values()) == {1}, counts
    assert before <= {k[0] for k in counts}
    assert f"{len(before)} with a result" in resume.stderr, resume.stderr
    assert [r for r in children(mlflow_uri, name) if r.info.status in ("RUNNING", "SCHEDULED")] == []
