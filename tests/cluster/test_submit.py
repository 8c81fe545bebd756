"""`sweeper run FILE --cluster URL` against a real Ray head (plain processes, tests/cluster/local_head.py):
the job's driver runs inside the cluster, its trials are recorded once each, a second submission trains
nothing, a submission without the cluster's token or with a wrong one is refused, and Ctrl-C without
a terminal stops the job.

The head is the test module's own (own temp dir, ports and HOME; token authentication; its nodes'
MLFLOW_TRACKING_URI a SQLite store of its own); the host side reads that store directly.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.cluster.local_head import local_head
from tests.cluster.records import runs_per_point, sweep_runs, sweep_text
from tests.sweeper.procs import default_sigint, wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.slow]
SUBMIT_TIMEOUT = 600


@pytest.fixture(scope="module")
def head():
    with local_head(cpus=2) as info:
        yield info


def _host_env(token: str | None, token_env: str = "RAY_AUTH_TOKEN") -> dict:
    """The host's environment: no Ray or MLflow settings of the test session, the token if any."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "MLFLOW_"))}
    if token is not None:
        env[token_env] = token
    return env


def _submit(path: Path, head: dict, token: str | None, *extra: str, token_env: str = "RAY_AUTH_TOKEN",
            **popen) -> subprocess.Popen:
    command = [sys.executable, "-m", "sweeper", "run", str(path), "--cluster", head["url"], *extra]
    if token_env != "RAY_AUTH_TOKEN":
        command += ["--token-env", token_env]
    return subprocess.Popen(command, env=_host_env(token, token_env), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, cwd=path.parent, **popen)


def _sweep(tmp_path: Path, name: str, epochs: int = 1, train_size: int = 300) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(sweep_text(name, epochs=epochs, train_size=train_size))
    return path


def test_anonymous_and_wrong_token_submissions_are_refused(head, tmp_path):
    path = _sweep(tmp_path, f"refused-{uuid.uuid4().hex[:6]}")
    for token, words in ((None, "no token"), ("not-the-token", "is not the cluster's")):
        proc = _submit(path, head, token)
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 4, out
        assert "refused the submission" in out and words in out and "Traceback" not in out, out
    # --token-env names another variable
    proc = _submit(path, head, "still-wrong", token_env="MY_CLUSTER_TOKEN")
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 4 and "MY_CLUSTER_TOKEN" in out, out


def test_a_submitted_sweep_finishes_once_and_a_second_trains_nothing(head, tmp_path, record_figure):
    name = f"submitted-{uuid.uuid4().hex[:6]}"
    path = _sweep(tmp_path, name)
    started = time.monotonic()
    proc = _submit(path, head, head["token"])
    out, _ = proc.communicate(timeout=SUBMIT_TIMEOUT)
    took = time.monotonic() - started
    assert proc.returncode == 0 and "sweep complete" in out, out[-4000:]
    assert "submitted" in out and "python -m sweeper run" in out, out[-3000:]  # progress streamed back
    parents, children = sweep_runs(head["tracking_uri"], name)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert sorted(runs_per_point(children).values()) == [1] * 4, runs_per_point(children)
    assert all(r.info.status == "FINISHED" for r in children)
    record_figure(f"submit (local head, 2 CPUs): 4-trial sweep through the Jobs API: {took:.0f}s end to end")
    proc = _submit(path, head, head["token"], "--token-env", "RAY_AUTH_TOKEN")
    out, _ = proc.communicate(timeout=SUBMIT_TIMEOUT)
    assert proc.returncode == 0 and "nothing to train" in out, out[-3000:]
    parents, children = sweep_runs(head["tracking_uri"], name)
    assert len(children) == 4


def test_ctrl_c_without_a_terminal_stops_the_job(head, tmp_path):
    from ray.job_submission import JobSubmissionClient

    name = f"stopped-{uuid.uuid4().hex[:6]}"
    path = _sweep(tmp_path, name, epochs=20, train_size=1800)
    proc = _submit(path, head, head["token"], stdin=subprocess.DEVNULL, preexec_fn=default_sigint)
    jobs = JobSubmissionClient(head["url"], headers={"Authorization": f"Bearer {head['token']}"})

    def running_job():
        for job in jobs.list_jobs():
            if (job.metadata or {}).get("sweep") == name and str(job.status.value) == "RUNNING":
                return job
        return None

    job = wait_for(running_job, 180, "the job to run")
    wait_for(lambda: _trial_running(head, name), 180, "a trial to start")
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=180)
    assert proc.returncode == 130, out[-3000:]
    assert "stopped on the cluster" in out, out[-3000:]
    assert str(jobs.get_job_status(job.submission_id).value) == "STOPPED"
    # The driver got SIGTERM inside the cluster and closed its runs: none left RUNNING.
    wait_for(lambda: not _trial_running(head, name), 60, "the stopped sweep's runs to be closed")


def _trial_running(head: dict, name: str) -> bool:
    try:
        _, children = sweep_runs(head["tracking_uri"], name)
    except AssertionError:  # no experiment yet
        return False
    return any(r.info.status == "RUNNING" for r in children)
