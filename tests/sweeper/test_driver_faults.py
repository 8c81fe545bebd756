"""A driver that dies without cleaning up, and drivers that run the same sweep at once.

Real local Ray, real SQLite stores, the CLI in child processes:

* SIGKILL of the driver's whole process group (its own local Ray with it) mid-sweep: ``status``
  shows the stale runs, ``resume`` takes them over and continues them from their checkpoints;
* SIGTERM: handled as Ctrl-C (runs KILLED, parent closed, exit 143);
* three submissions of one file started together, in a fresh folder and on an existing store:
  all exit 0, one FINISHED run per trial, and the epochs trained in all stay near one submission's.
"""
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter

import pytest

from ledger.tracking import Tracker
from tests.conftest import FIGURES
from tests.sweeper.procs import default_sigint, sigkill_when, wait_for
from tests.sweeper.test_sweep_e2e import _running_after_epoch_one, children, parents, sweep_file

pytestmark = pytest.mark.slow

CLI = [sys.executable, "-m", "sweeper"]


def _env(tmp_path):
    """A child's environment: its own HOME (Ray's auth token) and Ray temp dir, no inherited cluster."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    # Ray's socket paths must stay short (AF_UNIX): not under pytest's long tmp_path.
    env.update(HOME=str(home), RAY_TMPDIR=tempfile.mkdtemp(prefix="ray", dir="/tmp"), PYTHONUNBUFFERED="1")
    return env


def _has_checkpoint_file(uri, run_id) -> bool:
    return any(a.path.endswith("checkpoint.npz") for a in Tracker(uri).client.list_artifacts(run_id, "checkpoint"))


def _checkpoint_stored(uri, name):
    """A RUNNING trial whose checkpoint file (not only its tag) has reached the store."""
    return next((r for r in children(uri, name, "RUNNING") if r.data.tags.get("sweep.checkpoint_epoch")
                 and _has_checkpoint_file(uri, r.info.run_id)), None)


def _epochs_trained(uri, name) -> int:
    """Epochs logged across every run of the sweep (each run logs an epoch's train_loss once)."""
    client = Tracker(uri).client
    return sum(len({m.step for m in client.get_metric_history(r.info.run_id, "train_loss") if m.step >= 1})
               for r in children(uri, name))


def _check_exactly_once(uri, name, points):
    runs = children(uri, name)
    finished = Counter((r.data.tags["sweep.point"], r.data.tags["sweep.repeat"]) for r in runs
                       if r.info.status == "FINISHED")
    assert len(finished) == points and set(finished.values()) == {1}, finished
    active = [r.info.run_name for r in runs + parents(uri, name) if r.info.status in ("RUNNING", "SCHEDULED")]
    assert active == []
    client = Tracker(uri).client
    for run in runs:  # metric steps unique within each run
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "train_loss")]
        assert len(steps) == len(set(steps)), (run.info.run_name, steps)
    return runs


def test_sigkilled_driver_is_seen_stale_and_resume_takes_over(tmp_path, mlflow_uri):
    name = "crash-sigkill"
    path = sweep_file(tmp_path, name, mlflow_uri, grid={"kernel_size": [3, 5]},
                      data={"train_size": 3000}, model={"depth": 8}, train={"epochs": 8},
                      failures={"checkpoint_seconds": 0})
    # No --address: the driver starts its own local Ray, which dies with its process group.
    log = open(tmp_path / "driver.log", "w")
    proc = subprocess.Popen([*CLI, "run", str(path), "-q"], env=_env(tmp_path), start_new_session=True,
                            stdout=log, stderr=subprocess.STDOUT, text=True)
    sigkill_when(proc, lambda: _checkpoint_stored(mlflow_uri, name), 240, "a trial's first checkpoint file in the store",
                 tmp_path / "driver.log")
    interrupted = [r for r in children(mlflow_uri, name) if r.info.status in ("RUNNING", "SCHEDULED")]
    assert interrupted, "the kill left no run behind: nothing to test"

    # A long timeout: the driver ran on this host and its pid is gone, so no waiting is needed.
    status = subprocess.run([*CLI, "status", name, "--tracking-uri", mlflow_uri, "--stale-after", "3600"],
                            capture_output=True, text=True, env=_env(tmp_path), timeout=120)
    assert status.returncode == 0, status.stderr
    assert "STALE" in status.stdout and "driver lost" in status.stdout, status.stdout
    for run in interrupted:
        assert run.info.run_id in status.stdout

    resume = subprocess.run([*CLI, "resume", name, "--tracking-uri", mlflow_uri, "-q"], capture_output=True,
                            text=True, env=_env(tmp_path), timeout=600)
    assert resume.returncode == 0, resume.stderr
    runs = _check_exactly_once(mlflow_uri, name, points=2)
    by_id = {r.info.run_id: r for r in runs}
    for old in interrupted:
        taken = by_id[old.info.run_id]
        assert taken.info.status == "KILLED" and "driver lost" in taken.data.tags["sweep.status_reason"]
    # The checkpoint tag travels with the epoch's metrics, its file after them: a kill between the
    # two leaves a tag without a file, and that trial starts again at epoch 1 (README: Faults).
    with_checkpoint = [r for r in interrupted if _has_checkpoint_file(mlflow_uri, r.info.run_id)]
    continued = [r for r in runs if r.data.tags.get("sweep.resumed_from") in {o.info.run_id for o in with_checkpoint}]
    assert len(continued) == len(with_checkpoint) >= 1
    client = Tracker(mlflow_uri).client
    for run in continued:
        assert run.info.status == "FINISHED"
        assert int(run.data.tags["sweep.attempt"]) >= 2 and int(run.data.tags["sweep.resumed_at_epoch"]) >= 1
        # One curve per trial: the run that continued holds every epoch once; the attempt it
        # continued is kept, nested under it (out of the default view).
        steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, "train_loss"))
        assert steps == list(range(1, 9)), steps
        assert by_id[run.data.tags["sweep.resumed_from"]].data.tags["mlflow.parentRunId"] == run.info.run_id
    # One parent; the lost submission's record ended as lost, with why; the resume's as exit 0.
    (parent,) = parents(mlflow_uri, name)
    records = sorted((json.loads(v) for k, v in parent.data.tags.items() if k.startswith("sweep.sub.")),
                     key=lambda r: r["started_ms"])
    assert [r["command"] for r in records] == ["run", "resume"] and parent.info.status == "FINISHED"
    assert records[0]["status"] == "lost" and "driver lost" in records[0]["message"]
    assert records[1]["exit"] == 0


def test_sigterm_stops_like_ctrl_c(tmp_path, ray_local, mlflow_uri):
    name = "crash-sigterm"
    path = sweep_file(tmp_path, name, mlflow_uri, grid={"kernel_size": [3, 5]},
                      data={"train_size": 3000}, model={"depth": 8}, train={"epochs": 10},
                      failures={"checkpoint_seconds": 0})
    proc = subprocess.Popen([*CLI, "run", str(path), "--address", ray_local, "-q"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=default_sigint)
    try:
        wait_for(lambda: _running_after_epoch_one(mlflow_uri, name), 120, "a trial past epoch 1")
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 143, err
    assert "Traceback" not in err and f"sweeper resume {name}" in err
    killed = children(mlflow_uri, name, "KILLED")
    assert killed and all("SIGTERM" in r.data.tags["sweep.status_reason"] for r in killed)
    assert parents(mlflow_uri, name)[0].info.status == "KILLED"
    assert not [r for r in children(mlflow_uri, name) if r.info.status in ("RUNNING", "SCHEDULED")]


@pytest.mark.parametrize("store", ["fresh", "existing"])
def test_three_submissions_at_once_train_each_trial_once(tmp_path, ray_local, mlflow_uri, store):
    name = f"concurrent-{store}"
    uri = f"sqlite:///{tmp_path / 'new' / 'mlflow.db'}" if store == "fresh" else mlflow_uri
    epochs, points = 3, 4
    path = sweep_file(tmp_path, name, uri, data={"train_size": 1500}, train={"epochs": epochs})
    procs = []
    for _ in range(3):
        procs.append(subprocess.Popen([*CLI, "run", str(path), "--address", ray_local, "-q"],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        time.sleep(0.3)  # all three within one second
    results = [p.communicate(timeout=900) for p in procs]
    for proc, (out, err) in zip(procs, results):
        assert proc.returncode == 0, err
        assert "Traceback" not in err
    _check_exactly_once(uri, name, points)
    # One tree, and the three submissions really ran at the same time: each began before any ended.
    (parent,) = parents(uri, name)
    records = [json.loads(v) for k, v in parent.data.tags.items() if k.startswith("sweep.sub.")]
    began = [r["started_ms"] for r in records]
    ended = [r.get("ended_ms") for r in records]
    assert len(records) >= 2 and None not in ended, records  # a submission may find nothing left to train
    assert max(began) < min(ended), f"the submissions did not overlap: {records}"
    trained = _epochs_trained(uri, name)
    ratio = trained / (points * epochs)
    FIGURES.append(f"3 concurrent submissions ({store} store): {trained} epochs trained for "
                   f"{points * epochs} needed = {ratio:.2f}x one submission")
    assert ratio <= 1.1, ratio
