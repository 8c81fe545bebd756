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


PATIENCE = 20
SLACK = 15  # a loaded 2-core machine: the driver's own exit (Ray tasks cancelled, cleanup's single tries)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


@pytest.fixture
def mlflow_server(tmp_path):
    """A real ``mlflow server`` (SQLite behind it, artifacts served), in its own process group:
    yields ``(url, group id)``; continued (if stopped) and ended after the test."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(tmp_path / "server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
                             "--workers", "1", "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
                             "--artifacts-destination", str(tmp_path / "server-artifacts")],
                            cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                            env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})
    try:
        wait_for(lambda: _answers(url) or proc.poll() is not None, 180, "mlflow server to answer")
        assert proc.poll() is None, (tmp_path / "server.log").read_text()[-3000:]
        yield url, proc.pid
    finally:
        for sig in (signal.SIGCONT, signal.SIGTERM):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                pass
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
        log.close()


def _server_env(tmp_path) -> dict:
    """The child's own bounds: no HTTP settings inherited from this process's MLflow client."""
    env = {k: v for k, v in _env(tmp_path).items() if not k.startswith("MLFLOW_HTTP_REQUEST_")}
    return {**env, "SWEEPER_STORE_PATIENCE": str(PATIENCE)}


def test_server_that_stops_answering_mid_run(tmp_path, ray_local, mlflow_server):
    """The server SIGSTOPped mid-sweep: connections are accepted (the kernel's backlog) and never
    answered. The driver gives up within the patience, exit 4, one line; continued, the server
    serves ``resume``, which finishes the sweep."""
    url, group = mlflow_server
    name = "server-stopped"
    path = sweep_file(tmp_path, name, url, **HEAVY)
    env = _server_env(tmp_path)
    proc = subprocess.Popen([*CLI, "run", str(path), "--address", ray_local, "-q"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stopped_server = False
    try:
        wait_for(lambda: _past_epoch(url, name, 2) or proc.poll() is not None, 300, "a trial past epoch 2")
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        os.killpg(group, signal.SIGSTOP)
        stopped_server, began = True, time.monotonic()
        with socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), timeout=5):
            pass  # it still accepts: the fault is silence, not a refusal
        line = _stops_with_one_line(proc, name, timeout=PATIENCE + 240)
        stopped = time.monotonic() - began
    finally:
        if proc.poll() is None:
            proc.kill()
        if stopped_server:
            os.killpg(group, signal.SIGCONT)
    assert "no answer for" in line, line
    assert stopped < PATIENCE + SLACK, f"the driver took {stopped:.0f}s to stop (patience {PATIENCE}s)"
    wait_for(lambda: _answers(url), 60, "the continued server to answer")
    wait_for(lambda: not _trial_processes(NAMES), 60, "the trials' Ray tasks to end")
    before = _steps_per_run(url, name)
    _no_duplicate_steps(before)
    resumed, said = _resume(name, url, ray_local, tmp_path, {**env, "SWEEPER_STORE_PATIENCE": "120"})
    counted, finished = _finished_once(url, name)
    print(f"server SIGSTOPped: exit 4 {stopped:.1f} s after the stop (patience {PATIENCE} s): {line}\n"
          f"steps per run then {before}; resume {resumed:.0f} s; {finished} FINISHED runs, each steps 1..{EPOCHS} once")
    add_row(f"MLflow server stopped (SIGSTOP: accepts, never answers) mid-sweep, patience {PATIENCE} s",
            LOAD, f"1/1 (exit 4 after {stopped:.0f} s, one line; `resume` finished: {finished} FINISHED, "
            f"{EPOCHS} steps each)", counted.steps_lost, len(counted.zombies))
