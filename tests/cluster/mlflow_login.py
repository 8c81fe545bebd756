"""The MLflow server's login, checked from outside (tests/cluster/test_cluster.py and tests/cluster/test_compose_live.py).

Both cluster paths start MLflow through ``docker/mlflow-server.sh`` with its basic-auth app. These
checks use plain HTTP for the anonymous side (what anyone on the network can send) and MLflow's
own client for the logged-in side: it reads MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD.
"""
from __future__ import annotations

import base64
import json
import os
import tempfile
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from unittest import mock


def http_status(url: str, method: str = "GET", body: bytes | None = None, auth: tuple[str, str] | None = None,
                content_type: str = "application/json") -> int:
    request = urllib.request.Request(url, data=body, method=method, headers={"Content-Type": content_type})
    if auth is not None:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def anonymous_statuses(uri: str, wrong_password_for: str) -> dict[str, int]:
    """HTTP status of reads and writes sent without a login, and with a wrong password."""
    name = f"anonymous-{uuid.uuid4().hex[:8]}"
    create = json.dumps({"name": name}).encode()
    return {
        "search experiments": http_status(f"{uri}/api/2.0/mlflow/experiments/search", "POST",
                                          json.dumps({"max_results": 10}).encode()),
        "create experiment": http_status(f"{uri}/api/2.0/mlflow/experiments/create", "POST", create),
        "upload artifact": http_status(f"{uri}/api/2.0/mlflow-artifacts/artifacts/{name}/sweep.yaml", "PUT",
                                       b"name: x\n", content_type="application/octet-stream"),
        "UI's ajax search": http_status(f"{uri}/ajax-api/2.0/mlflow/runs/search", "POST", b"{}"),
        "wrong password": http_status(f"{uri}/api/2.0/mlflow/experiments/create", "POST", create,
                                      auth=(wrong_password_for, "not-the-password-0000")),
    }


def logged_in_round_trip(uri: str, user: str, password: str) -> dict:
    """Write an experiment, a run with a metric and an artifact through MLflow's client with the
    credentials in its environment, and read them back."""
    from mlflow import MlflowClient

    with mock.patch.dict(os.environ, {"MLFLOW_TRACKING_USERNAME": user, "MLFLOW_TRACKING_PASSWORD": password}):
        client = MlflowClient(uri)
        experiment_id = client.create_experiment(f"login-check-{uuid.uuid4().hex[:8]}")
        run = client.create_run(experiment_id)
        client.log_metric(run.info.run_id, "m", 0.5, step=1)
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "note.txt").write_text("written with a login")
            client.log_artifact(run.info.run_id, str(Path(tmp) / "note.txt"))
            client.download_artifacts(run.info.run_id, "note.txt", tmp + "/back")
            text = (Path(tmp) / "back" / "note.txt").read_text()
        client.set_terminated(run.info.run_id)
        history = [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "m")]
        status = client.get_run(run.info.run_id).info.status
        client.delete_experiment(experiment_id)
    return {"metric": history, "artifact": text, "status": status}


def assert_login_required(uri: str, user: str, password: str) -> None:
    statuses = anonymous_statuses(uri, user)
    assert set(statuses.values()) == {401}, statuses
    assert http_status(f"{uri}/health") == 200
    back = logged_in_round_trip(uri, user, password)
    assert back == {"metric": [(1, 0.5)], "artifact": "written with a login", "status": "FINISHED"}, back
