"""A store laid out as ``sweeper run`` lays out the quickstart with two repeats, written by hand.

a :class:`ledger.submission.Submission` makes the parent run (with the quickstart's sweep file) and one child per
(point, repeat) of the quickstart plan; on top of it: a failed trial, a duplicate and a run
interrupted after epoch 1 then resumed from its checkpoint. Truth (:func:`accuracy`): kernel 5
adds 0.02, max pooling 0.03 and l2 0.01 over avg, repeat k adds 0.004 k; val = test - 0.01.
"""
from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

REPO = Path(__file__).resolve().parents[2]


def accuracy(kernel: int, pooling: str, repeat: int) -> float:
    return 0.90 + {3: 0.0, 5: 0.02}[kernel] + {"max": 0.03, "avg": 0.0, "l2": 0.01}[pooling] + 0.004 * repeat


def expected_points() -> dict[tuple[int, str], float]:
    """Mean test accuracy per (kernel, pooling) over the finished repeats (k5 l2's second failed)."""
    return {(k, p): (accuracy(k, p, 0) if (k, p) == (5, "l2") else (accuracy(k, p, 0) + accuracy(k, p, 1)) / 2)
            for k in (3, 5) for p in ("max", "avg", "l2")}


def write_quickstart_store(uri: str) -> SimpleNamespace:
    from mlflow.entities import Metric, Param

    from ledger.submission import Submission
    from ledger.tracking import Tracker
    from sweeper.plan.points import make_plan
    from sweeper.spec.config import load_sweep

    tracker = Tracker(uri)
    client = tracker.client
    text = (REPO / "sweeps" / "quickstart.yaml").read_text()
    config = load_sweep(REPO / "sweeps" / "quickstart.yaml").model_copy(update={"repeats": 2})
    plan = make_plan(config, flops_per_cpu=1e9)
    exp = tracker.open_experiment("quickstart", "quickstart")
    submission = Submission.start(tracker, exp, "quickstart", sweep_text=text.replace("repeats: 1 ", "repeats: 2 "),
                                  plan_text=plan.summary())
    parent = submission.parent_id

    def trial_run(trial, acc, status="FINISHED", epochs=(1, 2), reason=None, tags=None):
        run_id = submission.create_trial_run(trial, tags)
        point = trial.point
        client.log_batch(run_id, params=[Param("n_params", str(point.params)),
                                         Param("forward_flops", str(point.flops))])
        client.update_run(run_id, status="RUNNING")
        now = int(time.time() * 1000)
        client.log_batch(run_id, metrics=[Metric(name, value - 0.05 * (2 - e), now, e) for e in epochs
                                          for name, value in (("val_accuracy", acc - 0.01), ("train_loss", 1 - acc))])
        if status == "FINISHED":
            final = {"test_accuracy": acc, "test_loss": 1 - acc, "val_accuracy": acc - 0.01,
                     "train_seconds": 2.0 * point.values["kernel_size"], "epochs_run": 2}
            client.log_batch(run_id, metrics=[Metric(k, v, now, 0) for k, v in final.items()])
        tracker.terminate(run_id, status, reason)
        return run_id

    kept = {}
    for trial in plan.trials:
        k, pooling = trial.point.values["kernel_size"], trial.point.values["pooling"]
        if (k, pooling, trial.repeat) == (5, "l2", 1):
            trial_run(trial, 0.0, "FAILED", epochs=(1,), reason="FloatingPointError: loss is nan at epoch 1")
        elif (k, pooling, trial.repeat) == (5, "max", 0):  # interrupted after epoch 1, resumed
            first = trial_run(trial, accuracy(k, pooling, 0), "KILLED", epochs=(1,), reason="interrupted",
                              tags={"sweep.checkpoint_epoch": "1"})
            kept[trial.key] = resumed = trial_run(trial, accuracy(k, pooling, 0), epochs=(2,),
                                                  tags={"sweep.resumed_from": first, "sweep.resumed_at_epoch": "1"})
        else:
            kept[trial.key] = trial_run(trial, accuracy(k, pooling, trial.repeat))
    first_trial = plan.trials[0]
    duplicate = trial_run(first_trial, 0.11)
    tracker.terminate(duplicate, "KILLED", f"duplicate of run {kept[first_trial.key]}", only_if_active=False)
    submission.end({"planned": 12, "finished": 11, "failed": 1}, "FINISHED")
    return SimpleNamespace(uri=uri, parent=parent, plan=plan, kept=kept, duplicate=duplicate, resumed=resumed,
                           client=client)
