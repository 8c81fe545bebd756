"""The trial writer (:mod:`ledger.recorder`) on a real SQLite store: every epoch is a step of its run
exactly once, whatever is trained again."""
from ledger.recorder import RunRecorder
from ledger.tracking import Tracker


def _steps(client, run_id, name="val_accuracy"):
    return sorted(m.step for m in client.get_metric_history(run_id, name))


def _epoch(e):
    return (e, {"train_loss": 1.0 / e, "val_accuracy": 0.5 + e / 100, "seconds": 0.1}, None)


def test_epochs_trained_again_are_not_written_twice(mlflow_uri):
    tracker = Tracker(mlflow_uri)
    client = tracker.client
    experiment = client.create_experiment("recorder-steps")
    run_id = client.create_run(experiment).info.run_id
    first = RunRecorder(tracker, run_id, ("p", 0), experiment, tags={})
    assert first.start({"pid": 1}) == 1
    first.log_epochs([_epoch(1), _epoch(2), _epoch(3)])  # held epochs written at a lost worker, say
    first.start({"pid": 2})  # the same recorder retries from a checkpoint after epoch 1
    first.log_epochs([_epoch(2), _epoch(3), _epoch(4)])
    assert _steps(client, run_id) == [1, 2, 3, 4]
    # A driver that did not see the first attempts (the run read back) skips what the run holds.
    later = RunRecorder(tracker, run_id, ("p", 0), experiment)
    assert later.start({"pid": 3}) == 3
    later.finish_with({}, {"test_accuracy": 0.9}, False, epochs=[_epoch(4), _epoch(5)])
    assert _steps(client, run_id) == [1, 2, 3, 4, 5] and _steps(client, run_id, "epoch_seconds") == [1, 2, 3, 4, 5]
