"""Searches (random, sobol, tpe over ranges) end to end on a real local Ray and a real MLflow
SQLite store; a TPE search whose driver is SIGKILLed continues from the ledger on resume."""
import os
import subprocess
from collections import Counter

import pytest

from sweeper.app.cli import main
from tests.sweeper.procs import sigkill_when
from tests.sweeper.test_driver_faults import CLI
from tests.sweeper.test_sweep_e2e import children, parents, sweep_file

pytestmark = pytest.mark.slow

SPACE = {"kernel_size": [3, 5],
         "learning_rate": {"low": 1.0e-4, "high": 0.1, "log": True},
         "weight_decay": {"low": 1.0e-6, "high": 1.0e-2, "log": True}}


def _finished_points(uri, name):
    runs = children(uri, name, "FINISHED")
    return Counter((r.data.tags["sweep.point"], r.data.tags["sweep.repeat"]) for r in runs), runs


@pytest.mark.parametrize("method", ["random", "sobol", "tpe"])
def test_search_trains_its_budget_once(method, tmp_path, ray_local, mlflow_uri, capsys):
    name = f"search-{method}"
    path = sweep_file(tmp_path, name, mlflow_uri, method=method, budget={"max_trials": 5}, grid=SPACE,
                      train={"epochs": 1})
    assert main(["run", str(path), "--address", ray_local, "-q"]) == 0
    counts, runs = _finished_points(mlflow_uri, name)
    assert len(counts) == 5 and set(counts.values()) == {1}
    for run in runs:
        lr = float(run.data.params["learning_rate"])
        assert 1e-4 <= lr <= 0.1 and run.data.params["kernel_size"] in ("3", "5")
    (parent,) = parents(mlflow_uri, name)
    assert parent.data.tags["sweep.method"] == method and parent.data.metrics["trials_planned"] == 5
    capsys.readouterr()
    assert main(["run", str(path), "--address", ray_local, "-q"]) == 0  # the budget is spent: nothing more
    assert len(children(mlflow_uri, name)) == 5
    # A larger budget continues the same search (the same first points, then new ones).
    assert main(["run", str(path), "--address", ray_local, "-q", "--set", "budget.max_trials=7"]) == 0
    counts, _ = _finished_points(mlflow_uri, name)
    assert len(counts) == 7 and set(counts.values()) == {1}


def test_sigkilled_tpe_search_resumes_from_the_ledger(tmp_path, ray_local, mlflow_uri):
    name = "search-tpe-kill"
    path = sweep_file(tmp_path, name, mlflow_uri, method="tpe", budget={"max_trials": 6}, grid=SPACE,
                      data={"train_size": 1500}, train={"epochs": 4}, resources={"max_concurrent": 1})
    log = open(tmp_path / "driver.log", "w")
    proc = subprocess.Popen([*CLI, "run", str(path), "-q", "--address", ray_local], env={**os.environ, "PYTHONUNBUFFERED": "1"},
                            start_new_session=True,
                            stdout=log, stderr=subprocess.STDOUT, text=True)
    sigkill_when(proc, lambda: len(children(mlflow_uri, name, "FINISHED")) >= 2, 300, "two finished trials",
                 tmp_path / "driver.log")
    before = {r.data.tags["sweep.point"] for r in children(mlflow_uri, name, "FINISHED")}
    assert 2 <= len(before) < 6
    resume = subprocess.run([*CLI, "resume", name, "--tracking-uri", mlflow_uri, "-q", "--address", ray_local],
                            capture_output=True,
                            text=True, timeout=600)
    assert resume.returncode == 0, resume.stderr
    counts, runs = _finished_points(mlflow_uri, name)
    assert len(runs) == 6 and set(counts.values()) == {1}, counts  # exactly max_trials, none twice
    assert before <= {k[0] for k in counts}  # the earlier points are part of the one search
    active = [r for r in children(mlflow_uri, name) + parents(mlflow_uri, name)
              if r.info.status in ("RUNNING", "SCHEDULED")]
    assert active == []
    # The resumed driver's sampler was rebuilt from the ledger: it said how many points it knew.
    known = len({r.data.tags["sweep.point"] for r in children(mlflow_uri, name)
                 if r.data.tags["sweep.point"] in before})
    assert f"rebuilt from the ledger: " in resume.stderr and f"{len(before)} with a result" in resume.stderr, \
        resume.stderr
    assert known == len(before)


def test_tpe_with_repeats_and_early_stopping(tmp_path, ray_local, mlflow_uri):
    """Each point trained `repeats` times; ASHA stops trials on the validation metric as in a grid."""
    name = "search-tpe-asha"
    path = sweep_file(tmp_path, name, mlflow_uri, method="tpe", repeats=2, budget={"max_trials": 6}, grid=SPACE,
                      train={"epochs": 3},
                      early_stopping={"metric": "val_accuracy", "grace_epochs": 1, "reduction_factor": 2})
    assert main(["run", str(path), "--address", ray_local, "-q"]) == 0
    counts, runs = _finished_points(mlflow_uri, name)
    assert len(runs) == 6 and set(counts.values()) == {1}
    per_point = Counter(k[0] for k in counts)
    assert len(per_point) == 3 and set(per_point.values()) == {2}
    (parent,) = parents(mlflow_uri, name)
    assert parent.data.metrics["trials_finished"] == 6
    # The report reads a search as it reads a grid (every value of a range is its own level).
    out = tmp_path / "report"
    assert main(["report", name, "--tracking-uri", mlflow_uri, "--out", str(out), "--no-attach"]) == 0
    assert any(out.iterdir())


def test_two_concurrent_submissions_continue_one_search(tmp_path, ray_local, mlflow_uri):
    """Two drivers of one tpe file at once: together exactly max_trials FINISHED runs, none twice."""
    name = "search-tpe-two"
    path = sweep_file(tmp_path, name, mlflow_uri, method="tpe", budget={"max_trials": 5}, grid=SPACE,
                      train={"epochs": 1}, resources={"max_concurrent": 1})
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    procs = [subprocess.Popen([*CLI, "run", str(path), "-q", "--address", ray_local], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    counts, runs = _finished_points(mlflow_uri, name)
    assert len(runs) == 5 and set(counts.values()) == {1}, counts
    active = [r for r in children(mlflow_uri, name) if r.info.status in ("RUNNING", "SCHEDULED")]
    assert active == []


def test_time_budget_stops_new_trials(tmp_path, ray_local, mlflow_uri, capsys):
    """No trial starts after budget.time_budget; the running ones end, the rest is unspent."""
    name = "search-time-budget"
    path = sweep_file(tmp_path, name, mlflow_uri, method="random", budget={"max_trials": 8, "time_budget": 1},
                      grid=SPACE, train={"epochs": 2})
    assert main(["run", str(path), "--address", ray_local]) == 0
    finished = children(mlflow_uri, name, "FINISHED")
    assert 1 <= len(finished) < 8 and len(children(mlflow_uri, name)) == len(finished)
    err = capsys.readouterr().err
    assert "time budget of 1 s spent" in err and f"{8 - len(finished)} trial(s) of the budget not started" in err
