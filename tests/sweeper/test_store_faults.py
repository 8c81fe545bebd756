"""A tracking store that fails under a running sweep, and a store whose artifacts are gone.

Real local Ray, real SQLite stores, the CLI in child processes:

* the SQLite file (and its folder) turned read-only mid-sweep (``chattr +i``: root writes through
  a plain chmod), and its disk filled (a small tmpfs): the driver stops with one line, exit 4,
  its trials' tasks cancelled; once the store works again ``sweeper resume`` finishes the sweep
  with one FINISHED run per trial, no metric step lost and no run left RUNNING or SCHEDULED;
* the artifact folder deleted: ``resume NAME`` says to give the file (exit 2, one line);
  ``resume FILE`` trains the trials whose checkpoints are gone from epoch 1, with a note.

What these cannot simulate: an NFS store that hangs (a call blocks, it does not fail). A disk
that fills under the artifact folder, and a server that stops answering: test_store_stalls.py.
"""
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ledger.tracking import Tracker
from tests.faults import add_row, cost
from tests.sweeper.procs import wait_for
from tests.sweeper.test_sweep_e2e import _running_after_epoch_one, sweep_file

pytestmark = pytest.mark.slow

CLI = [sys.executable, "-m", "sweeper"]
EPOCHS = 10
HEAVY = dict(grid={"kernel_size": [3, 5], "pooling": ["max", "avg"]}, data={"train_size": 3000},
             model={"depth": 8}, train={"epochs": EPOCHS},
             failures={"checkpoint_seconds": 0})  # every epoch checkpointed: faults land between writes
LOAD = f"4 trials x {EPOCHS} epochs, 2 at a time (local Ray, 2 CPUs)"


def _env(tmp_path) -> dict:
    """The test's environment (its Ray's token under the same HOME), without an inherited cluster."""
    return {**{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}, "PYTHONUNBUFFERED": "1"}


def _chattr(flag: str, *paths: Path) -> bool:
    return subprocess.run(["chattr", flag, *map(str, paths)], capture_output=True).returncode == 0


@pytest.fixture
def immutable(tmp_path):
    """``set(paths)`` makes files read-only even for root (chattr +i); undone after the test."""
    probe = tmp_path / "probe"
    probe.write_text("x")
    if not _chattr("+i", probe):
        pytest.skip("chattr +i does not work here (needs root and a file system with the immutable flag)")
    _chattr("-i", probe)
    made: list[Path] = []

    def set_(*paths: Path) -> None:
        made.extend(paths)
        assert _chattr("+i", *paths)

    yield set_
    if made:
        _chattr("-i", *made)


@pytest.fixture
def small_disk(tmp_path):
    """A 32 MB tmpfs: the store's folder, whose disk a test fills."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def _start(path: Path, address: str, tmp_path: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([*CLI, *args, str(path), "--address", address, "-q"], cwd=tmp_path, env=_env(tmp_path),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _trial_processes(names: set[str]) -> list[str]:
    """Ray workers running one of these trials now (titled ``ray::<run name>``)."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                title = (proc / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
            except OSError:
                continue
            if title.startswith("ray::") and title[5:] in names:
                found.append(title)
    return found


def _stops_with_one_line(proc: subprocess.Popen, name: str) -> str:
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 4, f"exit {proc.returncode}\n{err[-3000:]}"
    assert "Traceback" not in err and "Error:" not in err.replace("OperationalError:", ""), err[-3000:]
    lines = [line for line in err.splitlines() if "could not be used" in line]
    assert len(lines) == 1 and f"sweeper resume {name}" in lines[0], err
    # What else is on stderr: the sweep's opening line, MLflow's and Ray's notices; no error dump.
    assert len(err.splitlines()) <= 8, err
    return lines[0]


def _resumes_completely(name: str, uri: str, address: str, tmp_path: Path, fault: str) -> None:
    done = subprocess.run([*CLI, "resume", name, "--tracking-uri", uri, "--address", address, "-q"], cwd=tmp_path,
                          env=_env(tmp_path), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    tracker = Tracker(uri)
    counted = cost(tracker.client, tracker.find_experiment(name), EPOCHS)
    assert counted.trials == 4 and set(counted.finished_per_trial.values()) == {1}, counted.finished_per_trial
    assert counted.zombies == [] and counted.duplicate_steps == [], (counted.zombies, counted.duplicate_steps)
    assert counted.steps_lost == 0
    add_row(fault, LOAD, "1/1 (exit 4, one line; `resume` finished)", counted.steps_lost, len(counted.zombies))


def test_store_turned_read_only_mid_sweep(tmp_path, ray_local, immutable):
    name = "store-readonly"
    store = tmp_path / "store"
    store.mkdir()
    uri = f"sqlite:///{store / 'mlflow.db'}"
    path = sweep_file(tmp_path, name, uri, **HEAVY)
    proc = _start(path, ray_local, tmp_path, "run")
    try:
        wait_for(lambda: _running_after_epoch_one(uri, name) or proc.poll() is not None, 180, "a trial past epoch 1")
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        immutable(store / "mlflow.db", store)
        began = time.monotonic()
        line = _stops_with_one_line(proc, name)
        stopped = time.monotonic() - began
    finally:
        if proc.poll() is None:
            proc.kill()
        _chattr("-i", store / "mlflow.db", store)
    assert "readonly" in line or "unable to open database file" in line, line
    assert stopped < 60, f"the driver took {stopped:.0f}s to stop"
    names = {f"k{k} {p} #1" for k in (3, 5) for p in ("max", "avg")}
    wait_for(lambda: not _trial_processes(names), 30, "the trials' Ray tasks to end")
    _resumes_completely(name, uri, ray_local, tmp_path, "SQLite store read-only mid-sweep")


def test_store_disk_full_mid_sweep(tmp_path, ray_local, small_disk):
    name = "store-disk-full"
    uri = f"sqlite:///{small_disk / 'mlflow.db'}"
    path = sweep_file(tmp_path, name, uri, **HEAVY)
    proc = _start(path, ray_local, tmp_path, "run")
    filler = small_disk / "filler"
    try:
        wait_for(lambda: _running_after_epoch_one(uri, name) or proc.poll() is not None, 180, "a trial past epoch 1")
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        with open(filler, "wb") as out:  # every free block
            try:
                while True:
                    out.write(b"\0" * (1 << 20))
                    out.flush()
            except OSError:
                pass
        line = _stops_with_one_line(proc, name)
    finally:
        if proc.poll() is None:
            proc.kill()
        filler.unlink(missing_ok=True)
    assert "full" in line or "space" in line or "I/O" in line, line
    _resumes_completely(name, uri, ray_local, tmp_path, "SQLite store's disk full mid-sweep")


def test_resume_without_the_artifact_folder(tmp_path, ray_local):
    name = "store-no-artifacts"
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    path = sweep_file(tmp_path, name, uri, **HEAVY)
    proc = _start(path, ray_local, tmp_path, "run")
    try:
        wait_for(lambda: _running_after_epoch_one(uri, name) or proc.poll() is not None, 180, "a trial past epoch 1")
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, err[-3000:]
    tracker = Tracker(uri)
    experiment_id = tracker.find_experiment(name)
    killed = [r for r in tracker.trials(experiment_id, "KILLED") if r.data.tags.get("sweep.checkpoint_epoch")]
    assert killed, "no interrupted trial with a checkpoint: nothing to test"
    shutil.rmtree(tmp_path / "store" / "mlruns")  # every artifact (beside the database): sweep.yaml, checkpoints

    by_name = subprocess.run([*CLI, "resume", name, "--tracking-uri", uri, "--address", ray_local, "-q"],
                             cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True, timeout=120)
    assert by_name.returncode == 2, by_name.stderr[-3000:]
    assert "Traceback" not in by_name.stderr and len(by_name.stderr.strip().splitlines()) == 1, by_name.stderr
    assert "sweep.yaml" in by_name.stderr and "sweeper resume FILE" in by_name.stderr, by_name.stderr

    by_file = subprocess.run([*CLI, "resume", str(path), "--address", ray_local, "-q"], cwd=tmp_path,
                             env=_env(tmp_path), capture_output=True, text=True, timeout=600)
    assert by_file.returncode == 0, by_file.stderr[-3000:]
    for run in killed:
        assert f"the checkpoint of run {run.info.run_id} is missing" in by_file.stdout + by_file.stderr
    assert "starting from epoch 1" in by_file.stdout + by_file.stderr
    counted = cost(tracker.client, experiment_id, EPOCHS)
    assert counted.trials == 4 and set(counted.finished_per_trial.values()) == {1}
    assert counted.zombies == [] and counted.duplicate_steps == [] and counted.steps_lost == 0
    restarted = [r for r in counted.runs if r.info.status == "FINISHED" and r.data.tags.get("sweep.point")
                 in {k.data.tags["sweep.point"] for k in killed}]
    assert all("sweep.resumed_at_epoch" not in r.data.tags for r in restarted)
    add_row("artifact folder deleted, then `resume FILE`", LOAD, "1/1 (trials without checkpoint from epoch 1)",
            counted.steps_lost, len(counted.zombies))


PATIENCE = 20


def _locked_env(tmp_path) -> dict:
    return {**_env(tmp_path), "SWEEPER_STORE_PATIENCE": str(PATIENCE)}


def test_store_locked_at_start(tmp_path, ray_local):
    """Another process holds the SQLite database (BEGIN EXCLUSIVE) before the run: it waits the
    patience, exits 4 in one line; released, ``resume`` finishes the sweep."""
    from tests.ledger.test_store_patience import LockHolder

    name = "store-locked-start"
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    path = sweep_file(tmp_path, name, uri, **HEAVY)
    Tracker(uri).client.search_experiments()  # the store exists, its schema made
    holder = LockHolder(tmp_path / "store" / "mlflow.db")
    try:
        began = time.monotonic()
        proc = subprocess.Popen([*CLI, "run", str(path), "--address", ray_local, "-q"], cwd=tmp_path,
                                env=_locked_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        out, err = proc.communicate(timeout=300)
        stopped = time.monotonic() - began
    finally:
        holder.close()
    assert proc.returncode == 4, err[-3000:]
    lines = [line for line in err.splitlines() if "could not be used" in line]
    assert len(lines) == 1 and "Traceback" not in err and "database is locked" in lines[0], err
    assert stopped < PATIENCE + 40, stopped  # the patience, 2 tries' bound, the start of a process on a loaded machine
    print(f"locked at start, patience {PATIENCE} s: exit 4 after {stopped:.1f} s")
    done = subprocess.run([*CLI, "run", str(path), "--address", ray_local, "-q"], cwd=tmp_path, env=_env(tmp_path),
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    tracker = Tracker(uri)
    counted = cost(tracker.client, tracker.find_experiment(name), EPOCHS)
    assert counted.trials == 4 and set(counted.finished_per_trial.values()) == {1}, counted.finished_per_trial
    add_row("SQLite store locked (BEGIN EXCLUSIVE) at start", LOAD,
            f"1/1 (exit 4 after {stopped:.0f} s, patience {PATIENCE} s; the next `run` finished)", counted.steps_lost,
            len(counted.zombies))


def test_store_locked_mid_sweep(tmp_path, ray_local):
    """Another process holds the SQLite database mid-sweep, longer than the patience: the driver
    gives up within it (exit 4, one line); released, ``resume`` finishes with nothing lost."""
    from tests.ledger.test_store_patience import LockHolder

    name = "store-locked-mid"
    store = tmp_path / "store"
    uri = f"sqlite:///{store / 'mlflow.db'}"
    path = sweep_file(tmp_path, name, uri, **HEAVY)
    proc = subprocess.Popen([*CLI, "run", str(path), "--address", ray_local, "-q"], cwd=tmp_path,
                            env=_locked_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    holder = None
    try:
        wait_for(lambda: _running_after_epoch_one(uri, name) or proc.poll() is not None, 180, "a trial past epoch 1")
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        holder = LockHolder(store / "mlflow.db")
        began = time.monotonic()
        out, err = proc.communicate(timeout=300)
        stopped = time.monotonic() - began
    finally:
        if proc.poll() is None:
            proc.kill()
        if holder is not None:
            holder.close()
    assert proc.returncode == 4, err[-3000:]
    lines = [line for line in err.splitlines() if "could not be used" in line]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert stopped < PATIENCE + 30, stopped
    print(f"locked mid-run, patience {PATIENCE} s: exit 4 after {stopped:.1f} s")
    names = {f"k{k} {p} #1" for k in (3, 5) for p in ("max", "avg")}
    wait_for(lambda: not _trial_processes(names), 60, "the trials' Ray tasks to end")
    _resumes_completely(name, uri, ray_local, tmp_path,
                        f"SQLite store locked (BEGIN EXCLUSIVE) mid-sweep beyond the patience ({PATIENCE} s; "
                        f"exit 4 after {stopped:.0f} s)")
