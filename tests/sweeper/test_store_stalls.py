"""Two store faults end to end (real local Ray, real SQLite, the CLI in child processes):

* the *artifact* folder's disk fills mid-trial (a small tmpfs mounted under the store's
  ``mlruns/``, the database on the ordinary disk): the driver stops with one line, exit 4; each
  trial's run holds every epoch it logged exactly once; once space is freed ``sweeper resume``
  finishes the sweep with one FINISHED run per trial, every epoch a step once;
* a real ``mlflow server`` that is SIGSTOPped mid-run (it accepts connections, the kernel queues
  them, and nothing answers): the driver stops within ``SWEEPER_STORE_PATIENCE`` (plus a stated
  slack) with one line, exit 4; after SIGCONT ``resume`` finishes the sweep.

Mounts and stopped servers are undone in ``finally`` blocks.
"""
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ledger.tracking import Tracker
from tests.faults import add_row, cost
from tests.sweeper.procs import wait_for
from tests.sweeper.test_store_faults import CLI, EPOCHS, HEAVY, LOAD, _env, _trial_processes
from tests.sweeper.test_sweep_e2e import sweep_file

pytestmark = pytest.mark.slow

NAMES = {f"k{k} {p} #1" for k in (3, 5) for p in ("max", "avg")}


def _steps_per_run(uri: str, name: str) -> dict:
    """Run name (status) -> the train_loss steps its run holds, in order."""
    tracker = Tracker(uri)
    exp = tracker.find_experiment(name)
    return {f"{r.info.run_name} ({r.info.status})": sorted(m.step for m in tracker.client.get_metric_history(
        r.info.run_id, "train_loss")) for r in tracker.trials(exp)}


def _stops_with_one_line(proc: subprocess.Popen, name: str, timeout: float = 300) -> str:
    """The driver's exit 4 and its one line (which names the store's own error, e.g. ``OSError: ...``)."""
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 4, f"exit {proc.returncode}\n{err[-3000:]}"
    assert "Traceback" not in err, err[-3000:]
    lines = [line for line in err.splitlines() if "could not be used" in line]
    assert len(lines) == 1 and f"sweeper resume {name}" in lines[0], err
    others = [line for line in err.splitlines() if line.strip() and line not in lines
              and not line.startswith(("sweep ", "tracking store: "))]
    assert len(others) <= 4, err  # MLflow's and Ray's notices at most; no error dump
    return lines[0]


def _no_duplicate_steps(steps: dict) -> None:
    for run, logged in steps.items():
        assert len(logged) == len(set(logged)) and all(1 <= s <= EPOCHS for s in logged), (run, logged)


def _past_epoch(uri: str, name: str, epoch: int):
    """A RUNNING trial whose checkpoint of ``epoch`` or later is in the store."""
    tracker = Tracker(uri)
    exp = tracker.find_experiment(name)
    runs = tracker.trials(exp, "RUNNING") if exp else []
    return next((r for r in runs if int(r.data.tags.get("sweep.checkpoint_epoch", "0")) >= epoch), None)


def _resume(name: str, uri: str, address: str, tmp_path: Path, env: dict) -> tuple[float, str]:
    """``sweeper resume NAME`` to its end: (seconds, what it printed)."""
    began = time.monotonic()
    done = subprocess.run([*CLI, "resume", name, "--tracking-uri", uri, "--address", address], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return time.monotonic() - began, done.stdout + done.stderr


def _finished_once(uri: str, name: str):
    tracker = Tracker(uri)
    counted = cost(tracker.client, tracker.find_experiment(name), EPOCHS)
    assert counted.trials == 4 and set(counted.finished_per_trial.values()) == {1}, counted.finished_per_trial
    assert counted.zombies == [] and counted.duplicate_steps == [], (counted.zombies, counted.duplicate_steps)
    assert counted.steps_lost == 0
    finished = [r for r in counted.runs if r.data.tags.get("sweep.kind") == "trial" and r.info.status == "FINISHED"]
    for run in finished:  # the finished run's curve: every epoch once (a resumed run copies the earlier steps)
        steps = sorted(m.step for m in tracker.client.get_metric_history(run.info.run_id, "train_loss"))
        assert steps == list(range(1, EPOCHS + 1)), (run.info.run_name, steps)
    return counted, len(finished)


@pytest.fixture
def artifact_disk(tmp_path):
    """A 16 MB tmpfs mounted where the store keeps its artifacts (``store/mlruns``); unmounted after."""
    mount = tmp_path / "store" / "mlruns"
    mount.mkdir(parents=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def _fill(path: Path) -> None:
    with open(path, "wb") as out:  # every free block
        try:
            while True:
                out.write(b"\0" * (1 << 16))
                out.flush()
        except OSError:
            pass


def test_artifact_disk_full_mid_trial(tmp_path, ray_local, artifact_disk):
    name = "artifacts-full"
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    path = sweep_file(tmp_path, name, uri, **HEAVY)
    proc = subprocess.Popen([*CLI, "run", str(path), "--address", ray_local, "-q"], cwd=tmp_path, env=_env(tmp_path),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    filler = artifact_disk / "filler"
    began = time.monotonic()
    try:
        # Mid-trial: a checkpoint file is there to be overwritten by a cut-short one.
        wait_for(lambda: _past_epoch(uri, name, 3) or proc.poll() is not None, 300, "a trial past epoch 3")
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        _fill(filler)
        full_at = time.monotonic()
        line = _stops_with_one_line(proc, name)
        stopped = time.monotonic() - full_at
    finally:
        if proc.poll() is None:
            proc.kill()
        filler.unlink(missing_ok=True)
    assert "No space left" in line or "full" in line, line
    before = _steps_per_run(uri, name)
    _no_duplicate_steps(before)
    wait_for(lambda: not _trial_processes(NAMES), 60, "the trials' Ray tasks to end")
    resumed, said = _resume(name, uri, ray_local, tmp_path, _env(tmp_path))
    counted, finished = _finished_once(uri, name)
    print(f"artifact disk full: exit 4 {stopped:.1f} s after the disk filled; steps per run then {before}; "
          f"resume {resumed:.0f} s; {finished} FINISHED runs, each steps 1..{EPOCHS} once; "
          f"run {time.monotonic() - began:.0f} s\nresume said:\n{said}")
    for run in counted.runs:
        print(run.info.run_name, run.info.status, {k: v[:60] for k, v in run.data.tags.items()
                                                  if k.startswith("sweep.") and "epoch" in k or k == "sweep.reason"})
    add_row("artifact folder's disk full mid-trial (16 MB tmpfs under `mlruns/`)", LOAD,
            f"1/1 (exit 4 after {stopped:.0f} s, one line; `resume` finished: {finished} FINISHED, "
            f"{EPOCHS} steps each)", counted.steps_lost, len(counted.zombies))
