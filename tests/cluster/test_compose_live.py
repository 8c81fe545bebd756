"""docker-compose.yml running for real: tests against its containers (``pytest -m compose``).

Run by ``.ci/compose.sh``, which builds the images, brings up postgres, mlflow, ray-head and two
ray-worker containers, and describes them in the environment (COMPOSE_CI=1, COMPOSE_PROJECT,
COMPOSE_ENV_FILE, COMPOSE_FILE_PATH, COMPOSE_ARTIFACTS, DOCKER_HOST). Every action on the cluster
goes through the compose CLI (``docker-compose``: run, exec, kill, restart, port); the tests read
the record through the MLflow server on the host's 127.0.0.1, logged in with the .env credentials.

Which worker container ran a trial: the trial records its host name (tag ``sweep.host``), and a
container's host name is what ``hostname`` prints inside it.
"""
from __future__ import annotations

import os
import re
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from tests.cluster.compose_cluster import (CHROMIUM, chromium, compose, finish, killed_on_exit, login_proxy, settings,
                                           start_submission, start_sweeper, sweep_folder, wait_for_checkpoint, wait_for_workers,
                                           worker_hosts)
from tests.cluster.mlflow_login import assert_login_required, http_status
from tests.cluster.records import client, runs_per_point, steps_lost, sweep_outcome, sweep_runs

pytestmark = [
    pytest.mark.compose,
    pytest.mark.skipif(os.environ.get("COMPOSE_CI") != "1",
                       reason="needs the compose cluster that .ci/compose.sh brings up (COMPOSE_CI=1)"),
]


# -- the cluster, as .env describes it, and its login -------------------------------------------------

@pytest.fixture(scope="module")
def cluster() -> dict:
    values = settings()
    port = values.get("MLFLOW_HOST_PORT", "5000")
    info = {"uri": f"http://127.0.0.1:{port}", "port": int(port), "user": values["MLFLOW_TRACKING_USERNAME"],
            "password": values["MLFLOW_TRACKING_PASSWORD"], "workers": int(values.get("RAY_WORKERS", "1")),
            "token": values["RAY_AUTH_TOKEN"],
            "dashboard": f"http://127.0.0.1:{values.get('RAY_DASHBOARD_HOST_PORT', '8265')}"}
    # MLflow's client in this process logs in with these, as `sweeper report` on the host would.
    saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")}
    os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"] = info["user"], info["password"]
    yield info
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


# -- the tests -----------------------------------------------------------------------------------------

def test_the_cluster_is_up_with_two_worker_containers(cluster, record_figure):
    states = compose("ps").stdout
    for service in ("postgres_1", "mlflow_1", "ray-head_1"):
        assert re.search(rf"{service}\s.*Up.*\(healthy\)", states), states
    hosts = worker_hosts()
    assert len(hosts) == cluster["workers"] == 2, (hosts, states)
    nodes = wait_for_workers(2)
    assert len(nodes) == 3 and sorted(n["cpus"] for n in nodes) == [0, 1, 1], nodes  # head: 0 CPUs
    record_figure(f"compose: `up -d` to all healthy (both worker nodes alive in Ray): "
                  f"{os.environ.get('COMPOSE_UP_SECONDS', '?')}s")


def test_mlflow_answers_on_the_hosts_loopback_only_and_wants_a_login(cluster):
    published = compose("port", "mlflow", "5000").stdout.strip()
    assert published == f"127.0.0.1:{cluster['port']}", published
    assert http_status(f"{cluster['uri']}/health") == 200
    # Not on the machine's other addresses.
    addresses = {a for a in subprocess.run(["hostname", "-I"], capture_output=True, text=True).stdout.split()
                 if ":" not in a and not a.startswith("127.")}
    assert addresses, "no non-loopback address to check"
    for address in addresses:
        with socket.socket() as s:
            s.settimeout(3)
            assert s.connect_ex((address, cluster["port"])) != 0, f"MLflow answers on {address}:{cluster['port']}"
    assert_login_required(cluster["uri"], cluster["user"], cluster["password"])


def test_quickstart_by_the_sweeper_service(cluster, record_figure, tmp_path):
    import json

    import numpy as np

    hosts = worker_hosts()
    started = time.monotonic()
    proc = start_sweeper()
    rc, out = finish(proc)
    assert rc == 0 and "sweep complete" in out, out[-4000:]
    record_figure(f"compose: quickstart by the sweeper service: {time.monotonic() - started:.0f}s (`run` included)")
    parents, children = sweep_runs(cluster["uri"], "quickstart")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert len(children) == 6 and all(r.info.status == "FINISHED" for r in children), \
        [(r.info.run_name, r.info.status) for r in children]
    per_point = runs_per_point(children)
    assert sorted(per_point.values()) == [1] * 6, per_point
    # Trials ran on both worker containers.
    per_host = {host: sum(r.data.tags.get("sweep.host") == host for r in children) for host in hosts.values()}
    assert sum(per_host.values()) == 6 and all(n >= 1 for n in per_host.values()), (per_host, hosts)
    record_figure(f"compose: quickstart trials per worker container: {sorted(per_host.values())}; "
                  f"FINISHED runs per point: {sorted(set(per_point.values()))}")
    epochs = int(children[0].data.params["epochs"])
    assert steps_lost(cluster["uri"], children, epochs) == 0
    # Artifacts behind the server, downloaded through it.
    c = client(cluster["uri"])
    for run in children:
        assert run.info.artifact_uri.startswith("mlflow-artifacts:"), run.info.artifact_uri
    run = children[0]
    c.download_artifacts(run.info.run_id, "model.npz", str(tmp_path))
    c.download_artifacts(run.info.run_id, "config.json", str(tmp_path))
    with np.load(tmp_path / "model.npz", allow_pickle=False) as weights:
        assert len(weights.files) > 0
    assert json.loads((tmp_path / "config.json").read_text())["train"]["epochs"] == epochs
    # The record is in PostgreSQL (the server's backend store), not in a file of the server's.
    experiment_id = parents[0].info.experiment_id
    sql = f"SELECT status, count(*) FROM runs WHERE experiment_id = {int(experiment_id)} GROUP BY status"
    rows = compose("exec", "-T", "postgres", "psql", "-U", "mlflow", "-d", "mlflow", "-tA", "-c", sql).stdout.split()
    assert rows == ["FINISHED|7"], rows


def test_the_mlflow_ui_shows_the_sweeps_runs(cluster, tmp_path):
    if CHROMIUM is None:
        pytest.skip("Debian's chromium is not installed")
    c = client(cluster["uri"])
    experiment = c.get_experiment_by_name("quickstart")
    (parent,) = c.search_runs([experiment.experiment_id], "tags.`sweep.kind` = 'parent'")
    artifacts = Path(os.environ.get("COMPOSE_ARTIFACTS", tmp_path))
    artifacts.mkdir(parents=True, exist_ok=True)
    # Chromium's fetch() refuses URLs with credentials in them, so a local proxy adds the user's
    # Authorization header: the page is what a logged-in user sees.
    with login_proxy(cluster) as base:
        url = f"{base}/#/experiments/{experiment.experiment_id}/runs"
        shot = artifacts / "mlflow-ui.png"
        chromium(tmp_path, "--screenshot=" + str(shot), url)
        dom = chromium(tmp_path, "--dump-dom", url)
    text = " ".join(re.sub(r"<[^>]+>", " ", dom).split())
    (artifacts / "mlflow-ui.txt").write_text(text)
    assert shot.stat().st_size > 10_000
    assert parent.info.run_name in text, text[-2000:]
    assert re.search(r"\b7 matching runs", text), text[-2000:]  # the parent and its 6 children


def test_sweeper_report_on_the_host_logs_in_from_the_env_file(cluster, tmp_path):
    """`sweeper report` on the host reads the sweep through the server with .env's credentials."""
    import sys

    command = [sys.executable, "-m", "sweeper.app.cli", "report", "quickstart", "--tracking-uri", cluster["uri"]]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_TRACKING_")}
    env["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
    anonymous = subprocess.run(command + ["--out", str(tmp_path / "anonymous")], capture_output=True, text=True,
                               timeout=300, env=env, cwd=tmp_path)
    assert anonymous.returncode != 0 and not (tmp_path / "anonymous" / "report.html").exists(), anonymous.stdout
    assert "Traceback" not in anonymous.stderr, anonymous.stderr[-3000:]
    env.update({"MLFLOW_TRACKING_USERNAME": cluster["user"], "MLFLOW_TRACKING_PASSWORD": cluster["password"]})
    out = subprocess.run(command + ["--out", str(tmp_path / "report")], capture_output=True, text=True, timeout=300,
                         env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    assert (tmp_path / "report" / "report.html").stat().st_size > 1000


def test_the_same_sweep_again_trains_nothing(cluster):
    proc = start_sweeper()
    rc, out = finish(proc)
    assert rc == 0 and "nothing to train" in out, out[-3000:]
    parents, children = sweep_runs(cluster["uri"], "quickstart")
    assert len(parents) == 1 and len(children) == 6  # nothing to train: nothing written


def test_a_worker_container_killed_mid_sweep(cluster, record_figure):
    """A worker container's processes are killed (``docker-compose exec --index N ray-worker`` sends
    SIGKILL to every process but its PID 1, which then exits: the container stops, as a machine that
    dies) while it trains a trial: the sweep finishes, the trial is retried from its checkpoint."""
    name = f"compose-kill-{uuid.uuid4().hex[:8]}"
    epochs = 20  # trials long enough to be mid-training when the kill lands
    path = sweep_folder(name, epochs=epochs, train_size=1800)
    hosts = worker_hosts()
    started = time.monotonic()
    with killed_on_exit(start_sweeper(path)) as proc:
        ready = wait_for_checkpoint(cluster, name, proc, hosts=set(hosts.values()))
        victim_host = ready[0].data.tags["sweep.host"]
        (index,) = [i for i, h in hosts.items() if h == victim_host]
        victims = {r.info.run_name for r in ready if r.data.tags["sweep.host"] == victim_host}
        kill_ms = int(time.time() * 1000)
        kill = compose("exec", "-T", "--index", str(index), "ray-worker", "bash", "-c", "kill -KILL -1", check=False)
        killed_at = time.monotonic() - started
        rc, out = finish(proc)
    _, children, per_point, lost, left = sweep_outcome(cluster["uri"], name, epochs)
    # A trial that ended between its checkpoint and the kill was no victim.
    retried = {r.info.run_name: (r.data.tags.get("sweep.attempt"), r.data.tags.get("sweep.resumed_at_epoch"))
               for r in children if r.info.run_name in victims and (r.info.end_time or 0) > kill_ms}
    record_figure(f"compose: worker container {index} killed at {killed_at:.0f}s (exec rc {kill.returncode}): "
                  f"sweeper exit {rc} after {time.monotonic() - started:.0f}s; FINISHED runs per point "
                  f"{sorted(per_point.values())}; metric steps lost {lost}; runs left RUNNING {len(left)}; "
                  f"retried (attempt, resumed at epoch): {retried}")
    # Bring the worker back for the tests after this one (its restart policy may have done so).
    compose("up", "-d", "--no-build", "ray-worker", timeout=180)
    wait_for_workers(2)
    assert rc == 0 and "sweep complete" in out, out[-4000:]
    assert sorted(per_point.values()) == [1] * 4, per_point
    assert lost == 0 and left == []
    for run_name, (attempt, resumed) in retried.items():
        assert int(attempt) >= 2 and int(resumed or 0) >= 1, (run_name, attempt, resumed)


def test_postgres_restarted_mid_sweep(cluster, record_figure):
    """PostgreSQL restarts (``docker-compose restart postgres``) while trials train: the MLflow server
    loses its store for a few seconds; no metric step may be lost and no run left RUNNING."""
    name = f"compose-pg-{uuid.uuid4().hex[:8]}"
    epochs = 10
    path = sweep_folder(name, epochs=epochs, train_size=1800)
    started = time.monotonic()
    with killed_on_exit(start_sweeper(path)) as proc:
        wait_for_checkpoint(cluster, name, proc)
        restart_started = time.monotonic()
        compose("restart", "-t", "10", "postgres", timeout=120)
        restart_seconds = time.monotonic() - restart_started
        rc, out = finish(proc)
    _, _, per_point, lost, left = sweep_outcome(cluster["uri"], name, epochs)
    record_figure(f"compose: postgres restarted ({restart_seconds:.0f}s) mid-sweep: sweeper exit {rc} after "
                  f"{time.monotonic() - started:.0f}s; FINISHED runs per point {sorted(per_point.values())}; "
                  f"metric steps lost {lost}; runs left RUNNING {len(left)} {left}")
    assert lost == 0 and left == [], out[-3000:]
    assert rc == 0 and sorted(per_point.values()) == [1] * 4, (rc, per_point, out[-3000:])


# -- sweeps submitted from the host (Ray's Job Submission API on the dashboard port) -------------------

def _login(cluster: dict) -> dict:
    return {"MLFLOW_TRACKING_USERNAME": cluster["user"], "MLFLOW_TRACKING_PASSWORD": cluster["password"]}


def _first_trial_seconds(cluster: dict, name: str, proc, started: float, timeout: float = 300) -> float | None:
    """Seconds from the submission until the sweep's first trial run appears on the server."""
    c = client(cluster["uri"])
    while proc.poll() is None and time.monotonic() - started < timeout:
        experiment = c.get_experiment_by_name(name)
        if experiment is not None and c.search_runs([experiment.experiment_id], "tags.`sweep.kind` = 'trial'",
                                                    max_results=1):
            return time.monotonic() - started
        time.sleep(0.5)
    return None


def test_the_dashboard_answers_on_the_hosts_loopback_only_and_wants_the_token(cluster):
    published = compose("port", "ray-head", "8265").stdout.strip()
    assert published == cluster["dashboard"].removeprefix("http://"), published
    port = int(published.rsplit(":", 1)[1])
    addresses = {a for a in subprocess.run(["hostname", "-I"], capture_output=True, text=True).stdout.split()
                 if ":" not in a and not a.startswith("127.")}
    for address in addresses:
        with socket.socket() as s:
            s.settimeout(3)
            assert s.connect_ex((address, port)) != 0, f"the dashboard answers on {address}:{port}"
    assert http_status(f"{cluster['dashboard']}/api/version") == 401


def test_a_submission_without_the_token_or_with_a_wrong_one_is_refused(cluster):
    path = sweep_folder(f"compose-refused-{uuid.uuid4().hex[:6]}", epochs=1, train_size=300)
    for token, words in ((None, "no token"), ("0" * 64, "is not the cluster's")):
        rc, out = finish(start_submission(path, cluster["dashboard"], token, _login(cluster)), timeout=120)
        assert rc == 4 and "refused the submission" in out and words in out, out[-3000:]
        assert "Traceback" not in out, out[-3000:]


def test_a_sweep_submitted_from_the_host(cluster, record_figure):
    """The sweep file travels with the job; its driver runs in the ray-head container; every trial is
    recorded once, on both worker containers; the same submission again trains nothing."""
    name = f"compose-submit-{uuid.uuid4().hex[:6]}"
    path = sweep_folder(name, epochs=2, train_size=600)
    hosts = worker_hosts()
    started = time.monotonic()
    with killed_on_exit(start_submission(path, cluster["dashboard"], cluster["token"], _login(cluster))) as proc:
        first = _first_trial_seconds(cluster, name, proc, started)
        rc, out = finish(proc)
    total = time.monotonic() - started
    assert rc == 0 and "sweep complete" in out, out[-4000:]
    parents, children, per_point, lost, left = sweep_outcome(cluster["uri"], name, 2)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert sorted(per_point.values()) == [1] * 4 and lost == 0 and left == [], (per_point, lost, left)
    per_host = {host: sum(r.data.tags.get("sweep.host") == host for r in children) for host in hosts.values()}
    record_figure(f"compose: host submission (--cluster, 4 trials x 2 epochs): first trial after "
                  f"{first if first is None else round(first)}s, done in {total:.0f}s; trials per worker "
                  f"container {sorted(per_host.values())}")
    assert sum(per_host.values()) == 4 and all(n >= 1 for n in per_host.values()), (per_host, hosts)
    again = time.monotonic()
    rc, out = finish(start_submission(path, cluster["dashboard"], cluster["token"], _login(cluster)))
    record_figure(f"compose: the same submission again: nothing to train, {time.monotonic() - again:.0f}s")
    assert rc == 0 and "nothing to train" in out, out[-3000:]
    assert len(sweep_runs(cluster["uri"], name)[1]) == 4


def test_a_worker_container_killed_mid_submitted_sweep(cluster, record_figure):
    """As test_a_worker_container_killed_mid_sweep, the sweep submitted from the host."""
    name = f"compose-submit-kill-{uuid.uuid4().hex[:6]}"
    epochs = 10
    path = sweep_folder(name, epochs=epochs, train_size=1800)
    wait_for_workers(2)
    hosts = worker_hosts()
    started = time.monotonic()
    with killed_on_exit(start_submission(path, cluster["dashboard"], cluster["token"], _login(cluster))) as proc:
        ready = wait_for_checkpoint(cluster, name, proc, hosts=set(hosts.values()))
        victim_host = ready[0].data.tags["sweep.host"]
        (index,) = [i for i, h in hosts.items() if h == victim_host]
        kill = compose("exec", "-T", "--index", str(index), "ray-worker", "bash", "-c", "kill -KILL -1", check=False)
        killed_at = time.monotonic() - started
        rc, out = finish(proc)
    _, children, per_point, lost, left = sweep_outcome(cluster["uri"], name, epochs)
    record_figure(f"compose: host submission, worker container {index} killed at {killed_at:.0f}s (exec rc "
                  f"{kill.returncode}): exit {rc} after {time.monotonic() - started:.0f}s; FINISHED runs per point "
                  f"{sorted(per_point.values())}; metric steps lost {lost}; runs left RUNNING {len(left)}")
    compose("up", "-d", "--no-build", "ray-worker", timeout=180)
    wait_for_workers(2)
    assert rc == 0 and "sweep complete" in out, out[-4000:]
    assert sorted(per_point.values()) == [1] * 4 and lost == 0 and left == [], (per_point, lost, left)
