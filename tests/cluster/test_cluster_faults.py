"""Faults on the cluster path (scripts/cluster.sh: PostgreSQL, an MLflow server with a login, a Ray
head and a Ray worker node), each counted from the store: metric steps lost and runs left RUNNING
or SCHEDULED (target 0 for both), printed as CI's fault table (tests/faults.py).

* the MLflow server down for 30 s mid-sweep: the driver waits it out (ledger/retry.py) and the
  sweep completes in the same command; down past the patience: exit 4 with one line, and
  ``resume`` finishes;
* PostgreSQL restarted mid-sweep (the MLflow server's database);
* the raylet of the worker node killed (its workers go with it, or finish without it);
* the driver SIGKILLed together with the raylet of its machine (the head): ``status`` shows the
  stale runs, and ``resume`` (once the head is back) finishes the sweep from the checkpoints;
* three submissions of one file at once: one FINISHED run per trial, and the epochs trained in all
  stay near one submission's.

The worker node killed whole is tests/cluster/test_cluster.py's. Skipped unless ``SWEEPER_CLUSTER=1``
(see there). Each test restores what it broke, so they run in any order.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from functools import partial
from pathlib import Path

import pytest

from tests.cluster.cluster_nodes import kill_node, ray_processes, raylets
from tests.cluster.records import client
from tests.cluster.test_cluster import (NODE_DEATH_TIMEOUT, REPO, SWEEP_TIMEOUT, alive_nodes,  # noqa: F401
                                        cluster, finish, restart_worker, run_names, start_sweep, stop, write_sweep)
from tests.conftest import FIGURES
from tests.faults import add_row, cost
from tests.sweeper import procs

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.skipif(os.environ.get("SWEEPER_CLUSTER") != "1",
                       reason="needs a running cluster: scripts/cluster.sh up, its env, and SWEEPER_CLUSTER=1"),
]

EPOCHS = 10
TRAIN_SIZE = 1800
LOAD = f"4 trials x {EPOCHS} epochs, 2 at a time (head + worker, 1 CPU each)"
OUTAGE = 30.0  # seconds the MLflow server stays down
wait_for = partial(procs.wait_for, every=0.3)  # the predicates ask the MLflow server


def cluster_sh(*args: str, timeout: float = 240) -> str:
    out = subprocess.run(["bash", str(REPO / "scripts" / "cluster.sh"), *args], capture_output=True, text=True,
                         timeout=timeout, cwd=REPO)
    assert out.returncode == 0, f"scripts/cluster.sh {' '.join(args)} failed:\n{out.stdout}\n{out.stderr[-3000:]}"
    return out.stderr


def healthy(uri: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"{uri}/health", timeout=2) as response:
            return response.status == 200
    except Exception:
        return False


def checkpointed_running(cluster: dict, name: str) -> list:
    """RUNNING child runs of the sweep past their first checkpoint."""
    c = client(cluster["tracking_uri"])
    exp = c.get_experiment_by_name(name)
    if exp is None:
        return []
    runs = c.search_runs([exp.experiment_id], "tags.`sweep.kind` = 'trial' and attributes.status = 'RUNNING'")
    return [r for r in runs if r.data.tags.get("sweep.checkpoint_epoch")]


def counted(cluster: dict, name: str, points: int = 4):
    c = client(cluster["tracking_uri"])
    result = cost(c, c.get_experiment_by_name(name).experiment_id, EPOCHS)
    assert result.trials == points and set(result.finished_per_trial.values()) == {1}, result.finished_per_trial
    assert result.duplicate_steps == [], result.duplicate_steps
    return result


def fault_row(fault: str, outcome: str, result, figure: str = "") -> None:
    """CI's fault table: one row for a fault during a sweep of :data:`LOAD`, counted from the store
    (and ``figure`` among the measured figures); then the targets: 0 steps lost, 0 zombie runs."""
    if figure:
        FIGURES.append(figure)
    add_row(fault, LOAD, outcome, result.steps_lost, len(result.zombies))
    assert result.steps_lost == 0 and result.zombies == [], (fault, result.steps_lost, result.zombies)


def sweep_started_until_checkpoint(cluster: dict, tmp_path: Path, name: str):
    path = write_sweep(tmp_path, name, train_size=TRAIN_SIZE, epochs=EPOCHS)
    proc = start_sweep(path, cluster)
    wait_for(lambda: checkpointed_running(cluster, name) or proc.poll() is not None, SWEEP_TIMEOUT,
             "a trial past its first checkpoint")
    assert proc.poll() is None, proc.log.read_text()[-3000:]
    return path, proc


def survived(cluster, tmp_path, name: str, fault, repair=lambda: None):
    """A sweep past its first checkpoint, ``fault(proc)`` (returns the seconds it lasted), the sweep
    run to its end: ``(output, seconds, counted result)``; ``repair`` runs whatever happened."""
    path, proc = sweep_started_until_checkpoint(cluster, tmp_path, name)
    try:
        seconds = fault(proc)
        out = finish(proc, timeout=SWEEP_TIMEOUT + 120)
    finally:
        stop(proc)
        repair()
    assert "sweep complete" in out, out[-3000:]
    return out, seconds, counted(cluster, name)


def test_mlflow_server_down_30s_mid_sweep(cluster, tmp_path):
    uri = cluster["tracking_uri"]

    def outage(proc) -> float:
        cluster_sh("stop", "mlflow")
        down_at = time.monotonic()
        assert not healthy(uri)
        time.sleep(max(0.0, OUTAGE - (time.monotonic() - down_at)))
        assert proc.poll() is None, f"the driver did not wait for the store:\n{proc.log.read_text()[-3000:]}"
        cluster_sh("up")
        return time.monotonic() - down_at

    out, outage, result = survived(cluster, tmp_path, f"fault-mlflow-{uuid.uuid4().hex[:8]}", outage,
                                   lambda: healthy(uri) or cluster_sh("up"))
    assert "tracking store" in out  # it said it was waiting
    fault_row(f"MLflow server down {outage:.0f} s mid-sweep", "1/1 (driver waited; exit 0)", result,
              f"MLflow server down {outage:.0f}s mid-sweep (stopped, then started again): sweep complete, "
              f"{result.steps_lost} metric steps lost, {len(result.zombies)} zombie runs")


def test_mlflow_server_gone_past_the_patience_stops_the_driver_with_one_line(cluster, tmp_path):
    """Down longer than SWEEPER_STORE_PATIENCE (10 s here): exit 4, one line; `resume` finishes once it is back."""
    name = f"fault-mlflow-gone-{uuid.uuid4().hex[:8]}"
    uri = cluster["tracking_uri"]
    path = write_sweep(tmp_path, name, train_size=TRAIN_SIZE, epochs=EPOCHS)
    log = tmp_path / "driver.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(_cli("run", str(path), "--address", cluster["address"], "--tracking-uri", uri, "-q"),
                                cwd=REPO, stdout=subprocess.DEVNULL, stderr=out,
                                env={**os.environ, "SWEEPER_STORE_PATIENCE": "10"})
    try:
        wait_for(lambda: checkpointed_running(cluster, name) or proc.poll() is not None, SWEEP_TIMEOUT,
                 "a trial past its first checkpoint")
        assert proc.poll() is None, log.read_text()[-3000:]
        cluster_sh("stop", "mlflow")
        began = time.monotonic()
        proc.wait(timeout=180)
        stopped = time.monotonic() - began
    finally:
        if proc.poll() is None:
            proc.kill()
        cluster_sh("up")
    err = log.read_text()
    assert proc.returncode == 4, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    final = [line for line in err.splitlines() if "could not be used" in line]
    assert len(final) == 1 and f"sweeper resume {name}" in final[0], err[-3000:]
    resume = subprocess.run(_cli("resume", name, "--address", cluster["address"], "--tracking-uri", uri, "-q"),
                            capture_output=True, text=True, timeout=SWEEP_TIMEOUT + 120, cwd=REPO)
    assert resume.returncode == 0, resume.stderr[-3000:]
    result = counted(cluster, name)
    fault_row("MLflow server gone past the patience (10 s here)",
              f"1/1 (exit 4 after {stopped:.0f} s, one line; `resume` finished)", result,
              f"MLflow server gone past a 10 s patience: the driver stopped {stopped:.0f}s after the server, "
              f"exit 4, {len(err.splitlines())} line(s) on stderr")


def test_postgres_restarted_mid_sweep(cluster, tmp_path):
    def restart(proc) -> float:
        began = time.monotonic()
        cluster_sh("stop", "postgres")
        cluster_sh("up")
        return time.monotonic() - began

    _, restart, result = survived(cluster, tmp_path, f"fault-postgres-{uuid.uuid4().hex[:8]}", restart)
    fault_row(f"PostgreSQL restarted mid-sweep ({restart:.0f} s down)", "1/1 (driver waited; exit 0)", result,
              f"PostgreSQL restarted mid-sweep ({restart:.0f}s down): {result.steps_lost} metric steps lost, "
              f"{len(result.zombies)} zombie runs")


def test_raylet_of_the_worker_node_killed(cluster, tmp_path):
    name = f"fault-raylet-{uuid.uuid4().hex[:8]}"
    path = write_sweep(tmp_path, name, train_size=TRAIN_SIZE, epochs=EPOCHS)
    names = run_names(path)
    (worker_pid, worker), = [(pid, r) for pid, r in raylets(cluster["port"]).items() if not r["head"]]
    proc = start_sweep(path, cluster)
    try:
        def on_worker():
            running = {n for _, n, node in ray_processes(cluster["port"], names) if node == worker["node_id"]}
            return running & {r.info.run_name for r in checkpointed_running(cluster, name)}

        on = wait_for(lambda: on_worker() or proc.poll() is not None, SWEEP_TIMEOUT, "a trial on the worker node")
        assert proc.poll() is None and on, proc.log.read_text()[-3000:]
        os.kill(worker_pid, signal.SIGKILL)  # the raylet alone: its workers notice, or finish on their own
        out = finish(proc, timeout=SWEEP_TIMEOUT + 60)
    finally:
        stop(proc)
        # A new worker node only once Ray has declared the old one dead (~12-15 s).
        wait_for(lambda: all(n["id"] != worker["node_id"] for n in alive_nodes()), NODE_DEATH_TIMEOUT,
                 "Ray to declare the node of the killed raylet dead")
        restart_worker()
    assert "sweep complete" in out, out[-3000:]
    result = counted(cluster, name)
    retried = sorted(r.info.run_name for r in result.runs if int(r.data.tags.get("sweep.attempt") or 0) >= 2)
    fault_row("raylet of the worker node killed (SIGKILL)", f"1/1 ({len(retried)} trial(s) tried again; exit 0)",
              result)
    assert len(alive_nodes()) == 2


def test_three_submissions_at_once_on_the_cluster(cluster, tmp_path):
    name = f"fault-concurrent-{uuid.uuid4().hex[:8]}"
    epochs, points = 3, 4
    path = write_sweep(tmp_path, name, train_size=600, epochs=epochs)
    procs = []
    for _ in range(3):
        procs.append(start_sweep(path, cluster))
        time.sleep(0.3)  # all three within one second
    try:
        outs = [finish(p, timeout=SWEEP_TIMEOUT + 60) for p in procs]
    finally:
        for p in procs:
            stop(p)
    assert all("Traceback" not in out for out in outs)
    c = client(cluster["tracking_uri"])
    result = cost(c, c.get_experiment_by_name(name).experiment_id, epochs)
    assert result.trials == points and set(result.finished_per_trial.values()) == {1}, result.finished_per_trial
    assert result.zombies == [] and result.duplicate_steps == []
    trained = sum(len({m.step for m in c.get_metric_history(r.info.run_id, "train_loss")})
                  for r in result.runs if r.data.tags.get("sweep.kind") == "trial")
    ratio = trained / (points * epochs)
    FIGURES.append(f"3 concurrent submissions (cluster path): {trained} epochs trained for {points * epochs} "
                   f"needed = {ratio:.2f}x one submission")
    add_row("3 submissions of one file at once", f"{points} trials x {epochs} epochs, 3 drivers", "3/3 (all exit 0)",
            result.steps_lost, len(result.zombies))
    assert ratio <= 1.1, ratio


def test_driver_killed_with_the_raylet_of_its_machine(cluster, tmp_path):
    """The head machine dies: the driver and the head's raylet (with its workers) SIGKILLed at once."""
    name = f"fault-driver-{uuid.uuid4().hex[:8]}"
    path, proc = sweep_started_until_checkpoint(cluster, tmp_path, name)
    (head_pid, _), = [(pid, r) for pid, r in raylets(cluster["port"]).items() if r["head"]]
    try:
        os.kill(proc.pid, signal.SIGKILL)
        kill_node(head_pid)
        proc.wait(30)
    finally:
        stop(proc)
    c = client(cluster["tracking_uri"])
    exp = c.get_experiment_by_name(name)
    interrupted = [r for r in c.search_runs([exp.experiment_id], "tags.`sweep.kind` = 'trial'")
                   if r.info.status in ("RUNNING", "SCHEDULED")]
    assert interrupted, "the kill left no run behind: nothing to test"
    env = {**os.environ}
    status = subprocess.run(_cli("status", name, "--tracking-uri", cluster["tracking_uri"], "--stale-after", "3600"),
                            capture_output=True, text=True, env=env, timeout=120, cwd=REPO)
    assert status.returncode == 0, status.stderr
    assert "STALE" in status.stdout and "driver lost" in status.stdout, status.stdout
    assert all(r.info.run_id in status.stdout for r in interrupted), status.stdout

    # The head machine comes back: Ray is started again (PostgreSQL and MLflow kept running).
    cluster_sh("stop", "ray")
    cluster_sh("up")
    resume = subprocess.run(_cli("resume", name, "--address", cluster["address"], "--tracking-uri",
                                 cluster["tracking_uri"], "-q"), capture_output=True, text=True, env=env,
                            timeout=SWEEP_TIMEOUT + 120, cwd=REPO)
    assert resume.returncode == 0, resume.stderr[-3000:]
    result = counted(cluster, name)
    assert result.zombies == [] and result.steps_lost == 0
    runs = {r.info.run_id: r for r in result.runs}
    for old in interrupted:
        assert runs[old.info.run_id].info.status == "KILLED"
        assert "driver lost" in runs[old.info.run_id].data.tags["sweep.status_reason"]
    continued = [r for r in result.runs if r.data.tags.get("sweep.resumed_from") in {o.info.run_id for o in interrupted}]
    assert continued, "no interrupted trial continued from its checkpoint"
    for run in continued:
        assert run.info.status == "FINISHED"
        assert int(run.data.tags["sweep.attempt"]) >= 2 and int(run.data.tags["sweep.resumed_at_epoch"]) >= 1
    fault_row("driver SIGKILLed with the head's raylet",
              f"1/1 (`status` showed {len(interrupted)} stale; `resume` finished)", result)
    assert len(alive_nodes()) == 2


def _cli(*args: str) -> list[str]:
    script = Path(sys.executable).with_name("sweeper")
    return ([str(script)] if script.exists() else [sys.executable, "-m", "sweeper"]) + list(args)
