"""Sweeps on a real cluster: a Ray head and a Ray worker node, an MLflow server on PostgreSQL.

Skipped unless ``SWEEPER_CLUSTER=1``; then the cluster must be up and described by the environment:

    scripts/cluster.sh up && eval "$(scripts/cluster.sh env)"
    SWEEPER_CLUSTER=1 .venv/bin/python -m pytest -q -m cluster tests/cluster/test_cluster.py

(``.ci/cluster.sh`` does exactly this and stops the cluster afterwards.) Each test uses a sweep name
of its own, so the tests do not depend on what the cluster's database already holds.

Which node ran a trial is read from the process table while the sweep runs: a Ray worker process
is titled ``ray::<task name>`` (the trial's run name) and is a child of its node's raylet, whose
command line carries ``--node_id``. This works because the whole cluster runs on this machine.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from tests.cluster.cluster_nodes import kill_node, ray_processes, raylets
from tests.cluster.mlflow_login import assert_login_required
from tests.cluster.records import client, sweep_runs, sweep_text
from tests.faults import add_row, cost
from tests.sweeper.procs import default_sigint

REPO = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.skipif(os.environ.get("SWEEPER_CLUSTER") != "1",
                       reason="needs a running cluster: scripts/cluster.sh up, its env, and SWEEPER_CLUSTER=1"),
]

SWEEP_TIMEOUT = 180  # seconds for one `sweeper run`
NODE_DEATH_TIMEOUT = 60  # seconds; the GCS declares a dead raylet's node dead after ~12-15 s


def _env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        pytest.fail(f"SWEEPER_CLUSTER=1 but {name} is not set: run `eval \"$(scripts/cluster.sh env)\"` first")
    return value


@pytest.fixture(scope="module")
def cluster() -> dict:
    info = {"tracking_uri": _env("MLFLOW_TRACKING_URI"), "address": _env("RAY_ADDRESS")}
    info["port"] = int(info["address"].rsplit(":", 1)[1])
    nodes = alive_nodes()
    if len(nodes) < 2:  # a previous run may have left the worker node dead
        restart_worker()
        nodes = alive_nodes()
    assert len(nodes) >= 2, f"expected a head and a worker node alive, got {nodes}"
    return info


# -- the cluster, seen from a driver and from the process table ---------------------------------------

def alive_nodes() -> list[dict]:
    """``ray.nodes()`` from a fresh driver (a subprocess: this test process stays out of Ray)."""
    code = textwrap.dedent("""
        import json, ray
        ray.init(include_dashboard=False, logging_level="ERROR", log_to_driver=False)
        print("NODES=" + json.dumps([{"id": n["NodeID"], "alive": n["Alive"], "cpus": n["Resources"].get("CPU", 0)}
                                     for n in ray.nodes()]))
        ray.shutdown()
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=90,
                         env={**os.environ, "RAY_ADDRESS": _env("RAY_ADDRESS")})
    assert out.returncode == 0, f"ray.init({_env('RAY_ADDRESS')}) failed:\n{out.stderr[-3000:]}"
    line = next(line for line in out.stdout.splitlines() if line.startswith("NODES="))
    return [n for n in json.loads(line[len("NODES="):]) if n["alive"]]


def restart_worker() -> None:
    out = subprocess.run(["bash", str(REPO / "scripts" / "cluster.sh"), "worker"], capture_output=True, text=True,
                         timeout=180, cwd=REPO)
    assert out.returncode == 0, f"scripts/cluster.sh worker failed:\n{out.stdout}\n{out.stderr}"


# -- sweeps ------------------------------------------------------------------------------------

def write_sweep(tmp_path: Path, name: str, train_size: int = 600, epochs: int = 2) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(sweep_text(name, epochs, train_size))
    return path


def run_names(path: Path) -> set[str]:
    from sweeper.spec.config import load_sweep
    from sweeper.plan.points import make_plan

    return {t.run_name for t in make_plan(load_sweep(path)).trials}


def sweeper_command(path: Path, cluster: dict) -> list[str]:
    script = Path(sys.executable).with_name("sweeper")
    base = [str(script)] if script.exists() else [sys.executable, "-m", "sweeper.app.cli"]
    return base + ["run", str(path), "--address", cluster["address"], "--tracking-uri", cluster["tracking_uri"], "-q"]


def start_sweep(path: Path, cluster: dict) -> subprocess.Popen:
    """``sweeper run`` in the background, its output in a file (a pipe nobody reads would fill up:
    the driver prints a dead raylet's last logs)."""
    log = path.with_suffix(f".{time.monotonic_ns()}.log")
    with open(log, "w") as out:
        # stop() may send SIGINT: the child must hear it (tests/procs.py).
        proc = subprocess.Popen(sweeper_command(path, cluster), cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                                preexec_fn=default_sigint)
    proc.log = log
    return proc


def stop(proc: subprocess.Popen) -> None:
    """Ctrl-C (the sweeper marks its runs KILLED), then SIGKILL if it does not end."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def finish(proc: subprocess.Popen, timeout: float = SWEEP_TIMEOUT) -> str:
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop(proc)
        pytest.fail(f"sweeper run did not finish in {timeout}s:\n{proc.log.read_text()[-4000:]}")
    out = proc.log.read_text()
    assert proc.returncode == 0, f"sweeper run exited {proc.returncode}:\n{out[-4000:]}"
    return out


COORDINATOR = "LocalCoordinator"  # the sweep's ASHA actor (sweeper.trials.asha), titled ray::LocalCoordinator


def watch(proc: subprocess.Popen, cluster: dict, names: set[str], until=None) -> set[tuple[int, str, str]]:
    """Poll the process table while the sweep runs: (pid, run name, node id) of every trial seen
    running, and of the coordinator actor.

    ``until(seen)`` may end the watch early (the sweep keeps running) by returning True.
    """
    seen: set[tuple[int, str, str]] = set()
    deadline = time.monotonic() + SWEEP_TIMEOUT
    while proc.poll() is None and time.monotonic() < deadline:
        seen |= ray_processes(cluster["port"], names | {COORDINATOR})
        if until is not None and until(seen):
            break
        time.sleep(0.1)
    return seen


def finished_once(children: list) -> dict:
    """(point, repeat) -> its FINISHED runs; asserts each key has exactly one."""
    by_key: dict = {}
    for run in children:
        if run.info.status == "FINISHED":
            by_key.setdefault((run.data.tags["sweep.point"], run.data.tags["sweep.repeat"]), []).append(run)
    assert all(len(runs) == 1 for runs in by_key.values()), \
        {k: [r.info.run_id for r in v] for k, v in by_key.items() if len(v) > 1}
    return by_key


# -- the tests ---------------------------------------------------------------------------------

def test_mlflow_requires_a_login(cluster):
    """Anonymous reads and writes get 401; the credentials of `scripts/cluster.sh env` read and write."""
    assert_login_required(cluster["tracking_uri"], _env("MLFLOW_TRACKING_USERNAME"), _env("MLFLOW_TRACKING_PASSWORD"))


def test_both_nodes_alive(cluster):
    nodes = alive_nodes()
    assert len(nodes) == 2 and all(n["cpus"] >= 1 for n in nodes), nodes
    processes = raylets(cluster["port"])
    assert sorted(r["head"] for r in processes.values()) == [False, True], processes
    assert {r["node_id"] for r in processes.values()} == {n["id"] for n in nodes}


def test_sweep_runs_on_both_nodes_and_records_everything_on_the_server(cluster, tmp_path):
    import numpy as np

    name = f"cluster-{uuid.uuid4().hex[:8]}"
    path = write_sweep(tmp_path, name)
    names = run_names(path)
    assert len(names) == 4
    started = time.monotonic()
    proc = start_sweep(path, cluster)
    seen = watch(proc, cluster, names)
    out = finish(proc)
    print(f"sweep of 4 trials on the cluster: {time.monotonic() - started:.1f}s")
    assert "sweep complete" in out, out

    parents, children = sweep_runs(cluster["tracking_uri"], name)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    parent_id = parents[0].info.run_id
    assert len(children) == 4, [(r.info.run_name, r.info.status) for r in children]
    assert {r.info.run_name for r in children} == names
    c = client(cluster["tracking_uri"])
    for run in children:
        tags, params, metrics = run.data.tags, run.data.params, run.data.metrics
        assert run.info.status == "FINISHED", (run.info.run_name, tags.get("sweep.status_reason"))
        assert tags["mlflow.parentRunId"] == parent_id
        assert params["data.train_size"] == "600" and params["epochs"] == "2"
        assert params["depth"] == "4" and "trial_seed" in params
        assert 0.0 <= metrics["test_accuracy"] <= 1.0 and "val_accuracy" in metrics
        assert [m.step for m in c.get_metric_history(run.info.run_id, "train_loss")] == [1, 2]
        # Artifacts live behind the server (mlflow-artifacts:), not in a folder the workers share.
        assert run.info.artifact_uri.startswith("mlflow-artifacts:"), run.info.artifact_uri
        listed = {a.path for a in c.list_artifacts(run.info.run_id)}
        assert {"model.npz", "kernels.png", "config.json"} <= listed, listed
        with tempfile.TemporaryDirectory() as tmp:
            for artifact in ("model.npz", "kernels.png", "config.json"):
                c.download_artifacts(run.info.run_id, artifact, tmp)
            assert (Path(tmp) / "kernels.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            assert json.loads((Path(tmp) / "config.json").read_text())["data"]["train_size"] == 600
            with np.load(Path(tmp) / "model.npz", allow_pickle=False) as weights:
                assert len(weights.files) > 0

    # Trials ran side by side in distinct processes, on both nodes.
    pids = {int(r.data.tags["sweep.pid"]) for r in children}
    assert len(pids) >= 2, pids
    by_name = {r.info.run_name: int(r.data.tags["sweep.pid"]) for r in children}
    placed = {name_: {node for pid, n, node in seen if n == name_ and pid == pid_} for name_, pid_ in by_name.items()}
    assert all(len(nodes) == 1 for nodes in placed.values()), (placed, seen)
    used = set().union(*placed.values())
    assert len(used) == 2, f"all trials ran on one node: {placed}"
    if all("sweep.node_id" in r.data.tags for r in children):  # recorded by the trial itself, where it does
        assert {r.data.tags["sweep.node_id"] for r in children} == used

    # The same file again: everything is done, nothing is trained, nothing written.
    proc = start_sweep(path, cluster)
    again = watch(proc, cluster, names)
    out = finish(proc, timeout=120)
    assert "nothing to train" in out, out
    assert not {n for _, n, _ in again} & names
    parents, children_after = sweep_runs(cluster["tracking_uri"], name)
    assert len(parents) == 1 and len(children_after) == 4


def test_sweep_survives_the_death_of_the_worker_node(cluster, tmp_path):
    """The worker node dies (its raylet and every process under it) while it trains a trial: Ray
    declares the node dead (~12 s), and the trial runs again on the head, in the same MLflow run."""
    name = f"cluster-kill-{uuid.uuid4().hex[:8]}"
    # 10 epochs: a trial is still on the worker node when its first checkpoint shows, however fast
    # the kernels get (they made 3 epochs of 1800 images a second's work).
    path = write_sweep(tmp_path, name, train_size=1800, epochs=10)
    names = run_names(path)
    nodes = raylets(cluster["port"])
    (worker_pid, worker), = [(pid, r) for pid, r in nodes.items() if not r["head"]]
    started = time.monotonic()
    proc = start_sweep(path, cluster)
    killed: dict = {}
    try:
        c = client(cluster["tracking_uri"])

        def checkpointed(run_name: str) -> bool:
            exp = c.get_experiment_by_name(name)
            runs = c.search_runs([exp.experiment_id], f"attributes.run_name = '{run_name}'") if exp else []
            return any(r.data.tags.get("sweep.checkpoint_epoch") for r in runs)

        def on_worker(seen) -> bool:
            """Once a trial on the worker node has saved an epoch checkpoint, kill the node."""
            now = time.monotonic()
            if now < killed.get("next_check", 0):
                return False
            killed["next_check"] = now + 0.5
            running = {n for _, n, node in ray_processes(cluster["port"], names) if node == worker["node_id"]}
            if not any(checkpointed(n) for n in running):
                return False
            killed["trials"] = sorted(n for n in running if checkpointed(n))
            killed["coordinator"] = {node for _, n, node in seen if n == COORDINATOR}
            if worker["node_id"] in killed["coordinator"]:
                return True  # fails below, with the reason
            kill_node(worker_pid)
            killed["at"] = time.monotonic() - started
            return True

        watch(proc, cluster, names, until=on_worker)
        assert "trials" in killed, "no trial ran on the worker node before the sweep ended"
        # The trials report every epoch to one coordinator actor; on the dead node it would take
        # every trial down with it ("ActorUnavailableError ... the same error on 3 points").
        assert worker["node_id"] not in killed["coordinator"], (
            "the sweep's coordinator actor ran on the worker node that was killed: the driver must pin it "
            "to its own node (sweeper/trials/executor.py, Runner._coordinator: NodeAffinitySchedulingStrategy)")
        out = finish(proc)
        print(f"sweep with the worker node killed at {killed['at']:.1f}s: {time.monotonic() - started:.1f}s")
        assert "sweep complete" in out, out

        parents, children = sweep_runs(cluster["tracking_uri"], name)
        assert len(parents) == 1 and parents[0].info.status == "FINISHED"
        by_key = finished_once(children)
        assert len(by_key) == 4, [(r.info.run_name, r.info.status) for r in children]
        assert all(r.info.status == "FINISHED" for r in children), \
            [(r.info.run_name, r.info.status, r.data.tags.get("sweep.status_reason")) for r in children]
        c = client(cluster["tracking_uri"])
        counted = cost(c, c.get_experiment_by_name(name).experiment_id, 10)
        add_row("worker node killed (its raylet and every process under it)",
                "4 trials x 10 epochs, 2 at a time (head + worker, 1 CPU each)",
                f"1/1 ({len(killed['trials'])} trial(s) tried again on the head; exit 0)", counted.steps_lost,
                len(counted.zombies))
        assert counted.steps_lost == 0 and counted.zombies == [] and counted.duplicate_steps == []
        # The trial on the dead node ran again elsewhere, in the same run, as attempt 2, from its checkpoint.
        runs = {r.info.run_name: r for r in children}
        for trial in killed["trials"]:
            tags = runs[trial].data.tags
            assert int(tags["sweep.attempt"]) >= 2, (trial, tags)
            assert int(tags.get("sweep.resumed_at_epoch", 0)) >= 1, (trial, tags)
        # Ray declares the node dead (the retry may have started before: the driver sees its worker go).
        deadline = time.monotonic() + NODE_DEATH_TIMEOUT
        while any(n["id"] == worker["node_id"] for n in alive_nodes()):
            assert time.monotonic() < deadline, f"the killed node is reported alive {NODE_DEATH_TIMEOUT}s after the sweep"
            time.sleep(2)
        print(f"the killed node was declared dead by {time.monotonic() - started - killed['at']:.1f}s after the kill")
    finally:
        stop(proc)
        restart_worker()
    assert len(alive_nodes()) == 2
