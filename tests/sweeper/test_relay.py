"""The relay (sweeper/trials/relay.py, stream.py): a trial's records travel as typed messages and the
driver writes them.

Run in-process against a real SQLite store: the worker side (execute + RelayRecorder) and the
driver side (TrialStream) are plain Python; Ray only carries the messages between them.
"""
import subprocess
import sys

import yaml

from ledger.claims import Claims
from ledger.submission import Submission
from ledger.tracking import Tracker
from sweeper.plan.points import make_plan
from sweeper.trials import messages as m
from sweeper.trials.relay import RelayRecorder
from sweeper.trials.stream import TrialStream
from sweeper.trials.trial import TrialTask, execute
from sweeper.spec.config import load_sweep


def _trial_and_run(tmp_path, uri, name, epochs=3):
    data = {"name": name, "seed": 0, "data": {"source": "bundled", "train_size": 300, "test_size": 100},
            "model": {"blocks": 1, "depth": 2, "dense": [8]}, "train": {"epochs": epochs, "batch_size": 50},
            "grid": {"kernel_size": [3]}, "mlflow": {"tracking_uri": uri}}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    trial = make_plan(load_sweep(path), {}).trials[0]
    tracker = Tracker(uri)
    exp = tracker.open_experiment(name, name)
    run_id = Submission.start(tracker, exp, name, sweep_text=path.read_text()).create_trial_run(trial)
    task = TrialTask(trial, run_id)
    return trial, task, tracker, exp


def _data(task):
    from sweeper.plan.data import prepare_data

    config = task.config
    return prepare_data(config["data"], config["seed"], config["model"]["classes"])


def _worker(task):
    """What the Ray task yields: every record, the outcome last."""
    records = []
    outcome = execute(task, _data(task), None, RelayRecorder(task, records.append))
    return records + [m.Ended(outcome)]


def _kinds(records):
    return [type(r).__name__ for r in records]


def test_the_driver_records_what_the_worker_sends(tmp_path, mlflow_uri):
    trial, task, tracker, exp = _trial_and_run(tmp_path, mlflow_uri, "relay-basic")
    messages = _worker(task)
    assert _kinds(messages) == ["Started", "Described", "EpochDone", "Checkpoint", "EpochDone", "Checkpoint",
                                "EpochDone", "Finished", "Ended"]
    stream = TrialStream(trial, task, 1, tracker, exp)
    outcomes = [stream.handle(m) for m in messages]
    assert outcomes[:-1] == [None] * (len(messages) - 1)
    outcome = outcomes[-1]
    assert outcome.status == "FINISHED" and outcome.attempt == 1
    run = tracker.client.get_run(task.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["sweep.attempt"] == "1"
    assert int(run.data.params["n_params"]) > 0
    steps = [m.step for m in tracker.client.get_metric_history(task.run_id, "train_loss")]
    assert steps == [1, 2, 3]
    files = {f.path for f in tracker.client.list_artifacts(task.run_id)}
    assert {"config.json", "model.npz", "kernels.png"} <= files
    # Epochs this short are written at the end, with the results: no checkpoint file was needed.
    assert "sweep.checkpoint_epoch" not in run.data.tags and "checkpoint" not in files
    # The last checkpoint stays with the driver: a retry after a worker death starts from it.
    assert stream.task.checkpoint is not None and stream.task.checkpoint_run == task.run_id


def test_epochs_are_written_with_their_checkpoint_once_enough_time_passed(tmp_path, mlflow_uri):
    trial, task, tracker, exp = _trial_and_run(tmp_path, mlflow_uri, "relay-persist")
    messages = _worker(task)
    stream = TrialStream(trial, task, 1, tracker, exp, persist_seconds=0)
    cut = _kinds(messages).index("Checkpoint") + 1
    for message in messages[:cut]:
        stream.handle(message)
    # Epoch 1 and its checkpoint are in the store: a driver lost now loses nothing before epoch 2.
    run = tracker.client.get_run(task.run_id)
    assert run.info.status == "RUNNING" and run.data.tags["sweep.checkpoint_epoch"] == "1"
    assert [m.step for m in tracker.client.get_metric_history(task.run_id, "train_loss")] == [1]
    for message in messages[cut:]:
        stream.handle(message)
    run = tracker.client.get_run(task.run_id)
    assert run.info.status == "FINISHED" and run.data.tags["sweep.checkpoint_epoch"] == "2"
    assert [m.step for m in tracker.client.get_metric_history(task.run_id, "train_loss")] == [1, 2, 3]
    assert "checkpoint" in {f.path for f in tracker.client.list_artifacts(task.run_id)}


def test_a_driver_lost_while_epochs_are_held_leaves_no_half_written_epoch(tmp_path, mlflow_uri):
    """Epochs held (their checkpoint not due yet) are in the store neither as metrics nor as a
    checkpoint tag: a resume after the driver's loss trains them again and records them once."""
    trial, task, tracker, exp = _trial_and_run(tmp_path, mlflow_uri, "relay-held")
    messages = _worker(task)
    stream = TrialStream(trial, task, 1, tracker, exp, persist_seconds=3600)
    cut = _kinds(messages).index("Checkpoint") + 2  # epoch 1, its checkpoint, epoch 2
    for message in messages[:cut]:
        stream.handle(message)
    run = tracker.client.get_run(task.run_id)  # the driver is lost here: nothing more is written
    assert run.info.status == "RUNNING" and run.data.tags["sweep.attempt"] == "1"
    assert "sweep.checkpoint_epoch" not in run.data.tags and run.data.metrics == {}
    assert int(run.data.params["n_params"]) > 0  # the start, with the params, is written at once


def test_a_retry_continues_from_the_checkpoint_the_driver_kept(tmp_path, mlflow_uri):
    trial, task, tracker, exp = _trial_and_run(tmp_path, mlflow_uri, "relay-retry")
    stream = TrialStream(trial, task, 1, tracker, exp)
    first = _worker(task)
    # The worker dies after its first checkpoint reached the driver: nothing later arrives.
    cut = _kinds(first).index("Checkpoint") + 1
    for message in first[:cut]:
        assert stream.handle(message) is None
    retry = _worker(stream.task)
    assert isinstance(retry[0], m.Started) and m.Resumed(task.run_id, 1) in retry
    assert [r.epoch for r in retry if isinstance(r, m.EpochDone)] == [2, 3]
    outcome = [stream.handle(m) for m in retry][-1]
    assert outcome.status == "FINISHED" and outcome.attempt == 2
    run = tracker.client.get_run(task.run_id)
    assert run.data.tags["sweep.attempt"] == "2" and run.data.tags["sweep.resumed_at_epoch"] == "1"
    steps = sorted(m.step for m in tracker.client.get_metric_history(task.run_id, "train_loss"))
    assert steps == [1, 2, 3]  # every epoch once


def test_an_epoch_whose_write_a_signal_cut_short_is_stored_once(tmp_path, mlflow_uri):
    """SIGTERM raises in the driver wherever it is; if that is between an epoch's metrics and its
    checkpoint file, the cleanup's flush writes the epoch again, and the run must still hold one
    row per step (the rows are identical, timestamp included, and MLflow stores them once)."""
    trial, task, tracker, exp = _trial_and_run(tmp_path, mlflow_uri, "relay-cut", epochs=2)
    messages = _worker(task)
    stream = TrialStream(trial, task, 1, tracker, exp, persist_seconds=0)  # each checkpoint written at once
    client = stream.recorder.client
    real = client.log_artifact

    def interrupted(*args, **kwargs):
        client.log_artifact = real
        raise KeyboardInterrupt  # what the SIGTERM handler raises (Terminated)

    client.log_artifact = interrupted
    for record in messages[:4]:  # Started, Described, EpochDone 1, Checkpoint 1 (cut short)
        try:
            stream.handle(record)
        except KeyboardInterrupt:
            break
    stream.flush()  # what the executor's cleanup does for every trial in flight
    steps = [x.step for x in tracker.client.get_metric_history(task.run_id, "train_loss")]
    assert steps == [1]


def test_a_trial_finished_elsewhere_is_not_claimed(tmp_path, mlflow_uri):
    trial, task, tracker, exp = _trial_and_run(tmp_path, mlflow_uri, "relay-duplicate")
    done = TrialStream(trial, task, 0, tracker, exp)
    for message in _worker(task):
        done.handle(message)
    # A second submission of the same trial: its claim (run) is created, then contested.
    other = Submission.start(tracker, exp, "relay-duplicate").create_trial_run(trial)
    verdict = Claims(tracker, exp, 60).contest(trial.key, other)
    assert not verdict.won and verdict.done_in == task.run_id


def test_the_earliest_live_claim_wins_and_a_dead_drivers_claim_does_not_count(tmp_path, mlflow_uri):
    trial, first, tracker, exp = _trial_and_run(tmp_path, mlflow_uri, "relay-claims")
    second = Submission.start(tracker, exp, "relay-claims").create_trial_run(trial)
    claims = Claims(tracker, exp, 60)
    assert claims.contest(trial.key, first.run_id).won
    verdict = claims.contest(trial.key, second)
    assert not verdict.won and verdict.held_by == first.run_id
    # The first claim's driver is lost (its submission ended while the claim is open): the second wins.
    run = tracker.client.get_run(first.run_id)
    Submission(tracker, exp, run.data.tags["mlflow.parentRunId"], "relay-claims",
               run.data.tags["sweep.submission"]).end({}, "KILLED")
    assert Claims(tracker, exp, 60).contest(trial.key, second).won


def test_a_worker_imports_neither_mlflow_nor_the_config_models():
    # The sweep's speed rests on this: importing MLflow took 2-7 s in every new worker process.
    code = ("import sys, sweeper.trials.relay; "
            "print(sorted(m for m in ('mlflow', 'pydantic', 'sqlalchemy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
