"""End-to-end sweeps on a real local Ray and a real MLflow store, driven through the CLI in-process.

Every test uses its own sweep name in one shared SQLite store (see conftest), and tiny trials
(600 bundled images, depth 4) so the whole module takes a couple of minutes on two cores.
"""
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

from sweeper.app.cli import main
from ledger.tracking import Tracker
from tests.sweeper.procs import default_sigint, wait_for

pytestmark = pytest.mark.slow

BASE = {
    "seed": 0,
    "data": {"source": "bundled", "train_size": 600, "test_size": 200},
    "model": {"blocks": 2, "depth": 4, "padding": "same", "dense": [16]},
    "train": {"epochs": 2, "batch_size": 64},
    "grid": {"kernel_size": [3, 5], "pooling": ["max", "l2"]},
}


def sweep_file(tmp_path, name, uri, **changes) -> Path:
    data = yaml.safe_load(yaml.safe_dump(BASE))
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict) and key != "grid":
            data[key].update(value)
        else:
            data[key] = value
    data.update(name=name, mlflow={"tracking_uri": uri})
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def children(uri, name, status=None):
    tracker = Tracker(uri)
    exp = tracker.find_experiment(name)
    return tracker.trials(exp, status) if exp else []


def parents(uri, name):
    tracker = Tracker(uri)
    exp = tracker.find_experiment(name)
    return tracker.search(exp, "tags.`sweep.kind` = 'parent'", order_by=["attributes.start_time ASC"])


def no_active_runs(uri, name):
    runs = children(uri, name) + parents(uri, name)
    return [r.info.run_name for r in runs if r.info.status in ("RUNNING", "SCHEDULED")] == []


def test_sweep_logs_every_trial_and_a_second_run_trains_nothing(tmp_path, ray_local, mlflow_uri, capsys):
    path = sweep_file(tmp_path, "e2e-basic", mlflow_uri)
    assert main(["run", str(path), "-q"]) == 0
    runs = children(mlflow_uri, "e2e-basic")
    assert len(runs) == 4 and {r.info.status for r in runs} == {"FINISHED"}
    (parent,) = parents(mlflow_uri, "e2e-basic")
    client = Tracker(mlflow_uri).client
    assert {r.info.run_name for r in runs} == {"k3 max #1", "k3 l2 #1", "k5 max #1", "k5 l2 #1"}
    for run in runs:
        tags, params, metrics = run.data.tags, run.data.params, run.data.metrics
        assert tags["mlflow.parentRunId"] == parent.info.run_id
        assert tags["sweep.attempt"] == "1" and tags["sweep.repeat"] == "0" and len(tags["sweep.point"]) == 12
        assert tags["sweep.threads"] == "1"
        # Each knob once, under its name in the sweep file; nothing as "None".
        assert params["kernel_size"] in ("3", "5") and params["pooling"] in ("max", "l2")
        assert params["epochs"] == "2" and "trial_seed" in params and int(params["n_params"]) > 0
        assert not [k for k in params if k.startswith(("model.", "train."))] and "None" not in params.values()
        assert tags["point"] == run.info.run_name.rsplit(" #", 1)[0]  # what the UI's Group by averages over
        assert [d.dataset.name for d in client.get_run(run.info.run_id).inputs.dataset_inputs] == ["mnist-subset"]
        assert {"test_accuracy", "test_loss", "train_seconds"} <= set(metrics)
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_accuracy")]
        assert steps == [1, 2]
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"config.json", "model.npz", "kernels.png"} <= artifacts
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["sweep.selection.metric"] == "val_accuracy" and parent.data.tags["sweep.method"] == "grid"
    assert {a.path for a in client.list_artifacts(parent.info.run_id)} >= {"sweep.yaml", "plan.txt", "submissions"}
    assert parent.data.metrics["trials_finished"] == 4 and parent.data.metrics["trials_planned"] == 4
    assert parent.info.run_name == "e2e-basic" and parent.data.params["grid.pooling"] == '["max", "l2"]'
    assert parent.data.params["epochs"] == "2" and "kernel_size" not in parent.data.params  # fixed ones only
    assert [d.dataset.name for d in client.get_run(parent.info.run_id).inputs.dataset_inputs] == ["mnist-subset"]
    (record,) = [v for k, v in parent.data.tags.items() if k.startswith("sweep.sub.")]
    assert '"exit": 0' in record and '"trials": 4' in record

    capsys.readouterr()
    assert main(["run", str(path), "-q"]) == 0  # the same file again: everything is done, nothing written
    assert len(children(mlflow_uri, "e2e-basic")) == 4
    (again,) = parents(mlflow_uri, "e2e-basic")
    assert again.data.tags == parent.data.tags and again.info.end_time == parent.info.end_time
    err = capsys.readouterr().err
    assert "nothing to train" in err and len(err.strip().splitlines()) == 1

    assert main(["status", "e2e-basic", "--tracking-uri", mlflow_uri]) == 0
    out = capsys.readouterr().out
    assert "FINISHED 4" in out and "by mean val_accuracy (higher is better)" in out
    assert out.count("test accuracy") == 1  # the chosen point's only


def test_widened_grid_trains_only_new_points_and_skips_infeasible(tmp_path, ray_local, mlflow_uri, capsys):
    path = sweep_file(tmp_path, "e2e-widen", mlflow_uri, grid={"kernel_size": [3]})
    assert main(["run", str(path), "-q"]) == 0
    first = {r.info.run_id for r in children(mlflow_uri, "e2e-widen")}
    assert len(first) == 1
    # kernel 29 on a 28x28 input without padding collapses: listed with its reason, not trained.
    path = sweep_file(tmp_path, "e2e-widen", mlflow_uri, grid={"kernel_size": [3, 5, 29]},
                      model={"padding": 0})
    capsys.readouterr()
    assert main(["plan", str(path)]) == 0
    plan_text = capsys.readouterr().out
    assert "collapses below 1x1" in plan_text and "k29" in plan_text
    path = sweep_file(tmp_path, "e2e-widen", mlflow_uri, grid={"kernel_size": [3, 5, 29]})
    assert main(["run", str(path), "-q"]) == 0
    runs = children(mlflow_uri, "e2e-widen")
    assert len(runs) == 3 and first < {r.info.run_id for r in runs}  # only k5 and k29 ("same" fits) are new
    assert all(r.info.status == "FINISHED" for r in runs)


def test_a_sweep_in_an_experiment_of_another_name_is_found_by_its_name(tmp_path, ray_local, mlflow_uri, capsys):
    path = sweep_file(tmp_path, "e2e-renamed", mlflow_uri, grid={"kernel_size": [3]})
    data = yaml.safe_load(path.read_text())
    data["mlflow"]["experiment"] = "e2e renamed experiment"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    assert main(["run", str(path), "-q"]) == 0
    client = Tracker(mlflow_uri).client
    assert client.get_experiment_by_name("e2e-renamed") is None
    capsys.readouterr()
    assert main(["status", "e2e-renamed", "--tracking-uri", mlflow_uri]) == 0
    assert "FINISHED 1" in capsys.readouterr().out
    assert main(["report", "e2e-renamed", "--tracking-uri", mlflow_uri, "--out", str(tmp_path / "report")]) == 0
    assert any((tmp_path / "report").iterdir())
    assert main(["resume", "e2e-renamed", "--tracking-uri", mlflow_uri, "-q"]) == 0  # nothing left to train
    capsys.readouterr()  # the file it ran names it too, with the store the file gives
    assert main(["status", str(path)]) == 0
    assert "sweep e2e-renamed" in capsys.readouterr().out
    assert main(["report", str(path), "--out", str(tmp_path / "by-file")]) == 0
    assert any((tmp_path / "by-file").iterdir())


def test_diverging_trial_fails_with_reason_and_the_rest_finish(tmp_path, ray_local, mlflow_uri):
    path = sweep_file(tmp_path, "e2e-diverge", mlflow_uri, grid={"learning_rate": [0.001, 1.0e38]},
                      train={"optimizer": "sgd"})
    assert main(["run", str(path), "-q"]) == 1  # some trials failed: non-zero, nothing lost
    failed = children(mlflow_uri, "e2e-diverge", "FAILED")
    finished = children(mlflow_uri, "e2e-diverge", "FINISHED")
    assert len(failed) == 1 and len(finished) == 1
    reason = failed[0].data.tags["sweep.status_reason"]
    assert "DivergenceError" in reason and "epoch 1" in reason
    assert no_active_runs(mlflow_uri, "e2e-diverge")
    # Running again does not silently retrain a deterministic failure, but says so; --retry-failed does.
    assert main(["run", str(path), "-q"]) == 0
    assert len(children(mlflow_uri, "e2e-diverge")) == 2
    assert main(["run", str(path), "-q", "--retry-failed"]) == 1
    assert len(children(mlflow_uri, "e2e-diverge", "FAILED")) == 2


def test_the_same_error_on_many_points_stops_the_sweep(tmp_path, ray_local, mlflow_uri, capsys):
    path = sweep_file(tmp_path, "e2e-stop", mlflow_uri, grid={"kernel_size": [2, 3, 4, 5, 6, 7]},
                      train={"optimizer": "sgd", "learning_rate": 1.0e38},
                      failures={"stop_after_same_error": 2}, resources={"max_concurrent": 1})
    assert main(["run", str(path), "-q"]) == 3
    err = capsys.readouterr().err
    assert "sweep stopped: the same error on 2 points: DivergenceError" in err
    assert len(children(mlflow_uri, "e2e-stop", "FAILED")) == 2
    assert no_active_runs(mlflow_uri, "e2e-stop")
    (parent,) = parents(mlflow_uri, "e2e-stop")
    assert parent.info.status == "FAILED" and parent.data.metrics["trials_failed"] == 2
    (record,) = [v for k, v in parent.data.tags.items() if k.startswith("sweep.sub.")]
    assert '"exit": 3' in record and '"queued": 4' in record


def _running_after_epoch_one(uri, name):
    runs = [r for r in children(uri, name, "RUNNING") if r.data.tags.get("sweep.checkpoint_epoch")]
    return runs[0] if runs else None


def test_killed_worker_is_retried_from_its_checkpoint(tmp_path, ray_local, mlflow_uri):
    # Heavier trials (0.3-1 s an epoch, 10 epochs) so the kill lands mid-way however fast the kernels get.
    path = sweep_file(tmp_path, "e2e-kill", mlflow_uri, grid={"kernel_size": [5]},
                      data={"train_size": 3000}, model={"depth": 8}, train={"epochs": 10},
                      failures={"checkpoint_seconds": 0})
    result = {}
    thread = threading.Thread(target=lambda: result.setdefault("code", main(["run", str(path), "-q"])))
    thread.start()
    run = wait_for(lambda: _running_after_epoch_one(mlflow_uri, "e2e-kill"), 120, "a trial past epoch 1")
    os.kill(int(run.data.tags["sweep.pid"]), signal.SIGKILL)
    thread.join(300)
    assert result.get("code") == 0
    runs = children(mlflow_uri, "e2e-kill")
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    tags = runs[0].data.tags
    assert tags["sweep.attempt"] == "2" and int(tags["sweep.resumed_at_epoch"]) >= 1
    client = Tracker(mlflow_uri).client
    steps = sorted(m.step for m in client.get_metric_history(runs[0].info.run_id, "val_accuracy"))
    assert steps == list(range(1, 11))  # every epoch once: none lost, none logged twice


def test_ctrl_c_marks_runs_killed_and_resume_completes(tmp_path, ray_local, mlflow_uri):
    # 10 epochs of 0.3-1 s: the SIGINT lands while trials run, however fast the kernels get.
    path = sweep_file(tmp_path, "e2e-interrupt", mlflow_uri, grid={"kernel_size": [3, 5], "pooling": ["max", "avg"]},
                      data={"train_size": 3000}, model={"depth": 8}, train={"epochs": 10},
                      failures={"checkpoint_seconds": 0})
    cmd = [sys.executable, "-m", "sweeper.app.cli", "run", str(path), "--address", ray_local, "-q"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=default_sigint)
    try:
        wait_for(lambda: _running_after_epoch_one(mlflow_uri, "e2e-interrupt"), 120, "a trial past epoch 1")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, (f"{err}\n(this process: SIGINT handler {signal.getsignal(signal.SIGINT)!r}, "
                                    f"blocked {signal.pthread_sigmask(signal.SIG_BLOCK, [])})")
    assert "sweeper resume e2e-interrupt" in err
    killed = children(mlflow_uri, "e2e-interrupt", "KILLED")
    assert killed and all("interrupted" in r.data.tags["sweep.status_reason"] for r in killed)
    assert no_active_runs(mlflow_uri, "e2e-interrupt")
    (parent,) = parents(mlflow_uri, "e2e-interrupt")
    assert parent.info.status == "KILLED"

    assert main(["resume", "e2e-interrupt", "--tracking-uri", mlflow_uri, "-q"]) == 0
    finished = children(mlflow_uri, "e2e-interrupt", "FINISHED")
    keys = [(r.data.tags["sweep.point"], r.data.tags["sweep.repeat"]) for r in finished]
    assert len(keys) == 4 and len(set(keys)) == 4  # every point exactly once
    resumed = [r for r in finished if r.data.tags.get("sweep.resumed_from")]
    assert resumed, "an interrupted trial should continue from its checkpoint"
    assert no_active_runs(mlflow_uri, "e2e-interrupt")
    # One tree: both submissions recorded on the one parent; one curve per trial: the run that
    # continued holds every epoch once, the interrupted one nested under it (out of the default view).
    (parent,) = parents(mlflow_uri, "e2e-interrupt")
    assert parent.info.status == "FINISHED"
    assert sorted(json.loads(v)["command"] for k, v in parent.data.tags.items() if k.startswith("sweep.sub.")) == [
        "resume", "run"]
    client = Tracker(mlflow_uri).client
    for run in resumed:
        steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, "val_accuracy"))
        assert steps == list(range(1, 11))
        earlier = client.get_run(run.data.tags["sweep.resumed_from"])
        assert earlier.data.tags["mlflow.parentRunId"] == run.info.run_id


@pytest.mark.slow
def test_a_fresh_process_starts_its_own_local_ray_quietly(tmp_path):
    """`sweeper run` with no Ray address starts a local Ray in its own process, as `make sweep`
    does: it must come up (token authentication chosen before Ray reads it) and say nothing."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    code = ("from sweeper.trials.session import connect; assert connect(); import ray; "
            "print(int(ray.cluster_resources()['CPU'])); ray.shutdown()")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180, env=env,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert int(done.stdout.strip()) >= 1
    assert "auth" not in done.stderr.lower(), done.stderr
