"""How many MLflow calls the driver makes per trial: counted on a real sweep, real SQLite store.

Each call on SQLite is a transaction of its own (and on a server a request): the driver's CPU per
trial, which bounds how many short trials a sweep keeps busy, is mostly these calls.
"""
from collections import Counter

import pytest

import sweeper
from tests.sweeper.test_sweep_e2e import sweep_file

pytestmark = pytest.mark.slow

#: The client's calls that write, or read, one run (its id first).
PER_RUN = ("log_batch", "update_run", "set_tag", "set_terminated", "log_artifact", "log_artifacts", "log_text",
           "log_param", "log_metric", "log_inputs", "get_run", "get_metric_history", "download_artifacts",
           "list_artifacts", "delete_tag")


def count_calls(monkeypatch) -> Counter:
    """Every MlflowClient call on a run, as ``(method, run_id) -> count``."""
    from mlflow import MlflowClient

    calls: Counter = Counter()
    for name in PER_RUN:
        real = getattr(MlflowClient, name)

        def counted(self, run_id, *args, _real=real, _name=name, **kwargs):
            calls[(_name, run_id)] += 1
            return _real(self, run_id, *args, **kwargs)

        monkeypatch.setattr(MlflowClient, name, counted)
    return calls


def test_a_trial_costs_few_mlflow_calls(tmp_path, ray_local, mlflow_uri, monkeypatch):
    """Three epochs, two checkpoints, four files: start, the whole record at the end, FINISHED."""
    path = sweep_file(tmp_path, "writes-per-trial", mlflow_uri, grid={"kernel_size": [3, 5]},
                      train={"epochs": 3, "batch_size": 64})
    calls = count_calls(monkeypatch)
    result = sweeper.run(path)
    assert result.exit_code == 0 and result.counts["finished"] == 2
    runs = set(result.trials["run_id"])
    per_trial = Counter()
    for (name, run_id), n in calls.items():
        if run_id in runs:
            per_trial[name] += n
    per_trial = {name: n / len(runs) for name, n in per_trial.items()}
    print("MLflow calls per trial:", per_trial, "total", sum(per_trial.values()))
    # Every epoch is there once, with the final metrics and the files.
    from mlflow import MlflowClient

    client = MlflowClient(mlflow_uri)
    for run_id in runs:
        steps = [m.step for m in client.get_metric_history(run_id, "train_loss")]
        assert steps == [1, 2, 3]
        assert {"config.json", "model.npz"} <= {f.path for f in client.list_artifacts(run_id)}
    writes = sum(n for name, n in per_trial.items() if name not in ("get_run", "get_metric_history",
                                                                    "list_artifacts", "download_artifacts"))
    # create (params, dataset, SCHEDULED), start (tags with params, RUNNING), end (metrics, files, FINISHED)
    assert writes <= 8, per_trial
