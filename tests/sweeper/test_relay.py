"""The relay (sweeper/relay.py): a trial's records travel as messages and the driver writes them.

Run in-process against a real SQLite store: the worker side (execute + RelayRecorder) and the
driver side (TrialStream) are plain Python; Ray only carries the messages between them.
"""
import dataclasses
import subprocess
import sys

import yaml

from sweeper.spec.config import load_sweep
from sweeper.plan.points import make_plan
from sweeper.run.relay import RelayRecorder, TrialStream
from ledger.tracking import Tracker
from sweeper.run.trial import TrialTask, execute, spec_dict


def _trial_and_run(tmp_path, uri, name, epochs=3):
    data = {"name": name, "seed": 0, "data": {"source": "bundled", "train_size": 300, "test_size": 100},
            "model": {"blocks": 1, "depth": 2, "dense": [8]}, "train": {"epochs": epochs, "batch_size": 50},
            "grid": {"kernel_size": [3]}, "mlflow": {"tracking_uri": uri}}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    trial = make_plan(load_sweep(path), {}).trials[0]
    tracker = Tracker(uri)
    exp = tracker.experiment_id(name)
    parent = tracker.start_parent(exp, name, "run", path.read_text(), "", [])
    run_id = tracker.create_trial_run(exp, parent, name, trial, trial.point.values)
    task = TrialTask(trial.key, trial.seed, trial.point.config, trial.run_name, 1, run_id, uri,
                     spec=spec_dict(trial.point.config))
    return trial, task, tracker


def _worker(task):
    """What the Ray task yields: every message, the outcome last."""
    messages = []
    outcome = execute(task, None, RelayRecorder(task, lambda *m: messages.append(m)))
    return messages + [("outcome", outcome)]


def test_the_driver_records_what_the_worker_sends(tmp_path, mlflow_uri):
    trial, task, tracker = _trial_and_run(tmp_path, mlflow_uri, "relay-basic")
    messages = _worker(task)
    assert [m[0] for m in messages] == ["start", "describe", "log_epoch", "checkpoint", "log_epoch", "checkpoint",
                                        "log_epoch", "finish", "outcome"]
    stream = TrialStream(trial, task, retries=1)
    outcomes = [stream.handle(m) for m in messages]
    assert outcomes[:-1] == [None] * (len(messages) - 1)
    outcome = outcomes[-1]
    assert outcome.status == "FINISHED" and outcome.attempt == 1
    run = tracker.client.get_run(task.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["sweep.attempt"] == "1" and run.data.tags["sweep.checkpoint_epoch"] == "2"
    assert int(run.data.params["n_params"]) > 0
    steps = [m.step for m in tracker.client.get_metric_history(task.run_id, "train_loss")]
    assert steps == [1, 2, 3]
    files = {f.path for f in tracker.client.list_artifacts(task.run_id)}
    assert {"config.json", "model.npz", "kernels.png", "checkpoint"} <= files
    # The last checkpoint stays with the driver: a retry after a worker death starts from it.
    assert stream.task.checkpoint is not None and stream.task.checkpoint_run == task.run_id


def test_a_retry_continues_from_the_checkpoint_the_driver_kept(tmp_path, mlflow_uri):
    trial, task, tracker = _trial_and_run(tmp_path, mlflow_uri, "relay-retry")
    stream = TrialStream(trial, task, retries=1)
    first = _worker(task)
    # The worker dies after its first checkpoint reached the driver: nothing later arrives.
    cut = [m[0] for m in first].index("checkpoint") + 1
    for message in first[:cut]:
        assert stream.handle(message) is None
    retry = _worker(stream.task)
    assert retry[0][0] == "start" and ("resumed", task.run_id, 1) in retry
    assert [m[1] for m in retry if m[0] == "log_epoch"] == [2, 3]
    outcome = [stream.handle(m) for m in retry][-1]
    assert outcome.status == "FINISHED" and outcome.attempt == 2
    run = tracker.client.get_run(task.run_id)
    assert run.data.tags["sweep.attempt"] == "2" and run.data.tags["sweep.resumed_at_epoch"] == "1"
    steps = sorted(m.step for m in tracker.client.get_metric_history(task.run_id, "train_loss"))
    assert steps == [1, 2, 3]  # every epoch once


def test_a_point_finished_elsewhere_is_not_submitted(tmp_path, mlflow_uri):
    trial, task, tracker = _trial_and_run(tmp_path, mlflow_uri, "relay-duplicate")
    done = TrialStream(trial, task, retries=0)
    for message in _worker(task):
        done.handle(message)
    # A second submission of the same point: its run is created, then found redundant.
    exp = tracker.experiment_id("relay-duplicate")
    other = dataclasses.replace(task, run_id=tracker.create_trial_run(exp, task.run_id, "relay-duplicate", trial, {}))
    assert TrialStream(trial, other, retries=0).duplicate_of() == task.run_id
    run = tracker.client.get_run(other.run_id)
    assert run.info.status == "KILLED" and "duplicate" in run.data.tags["sweep.status_reason"]


def test_a_worker_imports_neither_mlflow_nor_the_config_models():
    # The sweep's speed rests on this: importing MLflow took 2-7 s in every new worker process.
    code = ("import sys, sweeper.run.relay; "
            "print(sorted(m for m in ('mlflow', 'pydantic', 'sqlalchemy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
