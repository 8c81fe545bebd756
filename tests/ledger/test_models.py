"""The chosen point as a registered MLflow model (``models:/<sweep>@champion``), after a real sweep
on a local Ray with a real SQLite store: it predicts as ``cnn.load_model`` on the trial's
``model.npz``, with exactly the test accuracy the sweep recorded; registering again (a resume)
makes no new version; another chosen point makes one and moves the alias; ``mlflow models serve``
answers ``/invocations``.
"""
import contextlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

import cnn
from ledger.models import register_champion
from ledger.reports import fetch_artifact
from ledger.selection import Selection
from ledger.sweeps import find_parent
from ledger.tracking import Tracker
from sweeper.app.cli import main
from sweeper.plan.data import min_classes, prepare_data
from sweeper.spec.config import load_sweep
from tests.sweeper.procs import wait_for
from tests.sweeper.test_sweep_e2e import sweep_file

pytestmark = pytest.mark.slow

NAME = "champ-e2e"


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, ray_local, mlflow_uri):
    """A finished two-point sweep: ``(sweep file, console text, the sweep's raw test images and labels)``."""
    folder = tmp_path_factory.mktemp("champion")
    path = sweep_file(folder, NAME, mlflow_uri, grid={"kernel_size": [3, 5]})
    err = io.StringIO()
    started = time.perf_counter()
    with contextlib.redirect_stderr(err):
        assert main(["run", str(path), "-q"]) == 0
    config = load_sweep(path)
    data = prepare_data(config.data.model_dump(), config.seed, min_classes(config))
    return {"path": path, "console": err.getvalue(), "test": data.test, "seconds": time.perf_counter() - started}


@pytest.fixture
def fluent_uri(mlflow_uri, monkeypatch):
    """MLflow's module-level API (``mlflow.pyfunc.load_model``) on the test store."""
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_uri)
    before = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(mlflow_uri)
    yield mlflow_uri
    mlflow.set_tracking_uri(before)


def versions(uri):
    return sorted(Tracker(uri).client.search_model_versions(f"name = '{NAME}'"), key=lambda v: int(v.version))


def test_the_champion_predicts_as_its_model_file_with_the_recorded_test_accuracy(sweep, fluent_uri, tmp_path,
                                                                                record_figure):
    import mlflow

    client = Tracker(fluent_uri).client
    assert "champion " in sweep["console"], sweep["console"]
    champion = client.get_model_version_by_alias(NAME, "champion")
    line = next(ln for ln in sweep["console"].splitlines() if ln.startswith("champion "))
    assert f"models:/{NAME}@champion version {champion.version} registered" in line
    assert f"#/models/{NAME}/versions/{champion.version}" in line
    assert "INFO" not in sweep["console"] and "Warning" not in sweep["console"]  # MLflow kept quiet
    run = client.get_run(champion.run_id)
    assert "validation accuracy" in champion.description and "test accuracy" in champion.description
    parent = find_parent(Tracker(fluent_uri), run.info.experiment_id)
    assert f"/runs/{parent.info.run_id}" in champion.description

    test = sweep["test"]
    assert test.x.dtype == np.uint8 and test.normalized is None  # raw pixels, as the files hold them
    own = cnn.load_model(fetch_artifact(fluent_uri, champion.run_id, "model.npz", tmp_path))
    started = time.perf_counter()
    model = mlflow.pyfunc.load_model(f"models:/{NAME}@champion")
    loaded = time.perf_counter() - started
    out = model.predict(test.x)
    assert list(out.columns[:2]) == ["label", "prob_0"] and len(out) == len(test)
    np.testing.assert_array_equal(out["label"].to_numpy(), own.predict(test.x))
    np.testing.assert_allclose(out.filter(like="prob_").sum(axis=1), 1.0, rtol=1e-9)
    assert np.mean(out["label"].to_numpy() == test.y) == run.data.metrics["test_accuracy"]  # exactly
    assert model.metadata.signature.outputs.input_names()[:2] == ["label", "prob_0"]
    labels = out["label"].to_numpy()
    for layout in (test.x[:, 0], test.x.transpose(0, 2, 3, 1), test.x.astype(np.float32),
                   test.x.reshape(len(test), -1)):  # raw images as a user may hold them
        np.testing.assert_array_equal(model.predict(layout)["label"].to_numpy(), labels)
    with pytest.raises(Exception, match=r"\(N, 1, 28, 28\)"):
        model.predict(test.x[:, :, :27])  # a wrong shape: refused, naming the shapes it takes
    record_figure(f"champion: sweep with registration {sweep['seconds']:.1f}s; models:/ load {loaded:.2f}s; "
                  f"predict {len(test)} images, labels = cnn.load_model's, test accuracy = recorded "
                  f"{run.data.metrics['test_accuracy']:.4f}")


def test_registering_again_reuses_the_version_and_another_point_moves_the_alias(sweep, mlflow_uri, capsys):
    tracker = Tracker(mlflow_uri)
    experiment = tracker.find_experiment(NAME)
    parent = find_parent(tracker, experiment).info.run_id
    before = [v.version for v in versions(mlflow_uri)]
    assert main(["resume", NAME, "--tracking-uri", mlflow_uri, "-q"]) == 0  # nothing to train
    assert [v.version for v in versions(mlflow_uri)] == before
    example = sweep["test"].x[:2]
    same = register_champion(mlflow_uri, experiment, NAME, parent, Selection(), example)
    assert not same.created and [v.version for v in versions(mlflow_uri)] == before
    # The other point (lowest validation accuracy): a new version, and the alias moves to it.
    other = register_champion(mlflow_uri, experiment, NAME, parent, Selection("val_accuracy", "min"), example)
    scores = {r.data.metrics["val_accuracy"] for r in tracker.trials(experiment, "FINISHED")}
    if len(scores) == 1:
        pytest.skip("both points reached the same validation accuracy: nothing else to choose")
    assert other.created and other.run_id != same.run_id and len(versions(mlflow_uri)) == len(before) + 1
    assert str(tracker.client.get_model_version_by_alias(NAME, "champion").version) == other.version
    back = register_champion(mlflow_uri, experiment, NAME, parent, Selection(), example)
    assert not back.created and back.version == same.version
    assert str(tracker.client.get_model_version_by_alias(NAME, "champion").version) == same.version

    # A store whose sweep finished before champions were registered: `resume`, with nothing to train,
    # registers it (and says so in one more line).
    tracker.client.delete_registered_model(NAME)
    capsys.readouterr()
    assert main(["resume", NAME, "--tracking-uri", mlflow_uri, "-q"]) == 0
    err = capsys.readouterr().err
    assert "nothing to train" in err and f"models:/{NAME}@champion version 1 registered" in err, err
    assert tracker.client.get_model_version_by_alias(NAME, "champion").run_id == same.run_id


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_mlflow_models_serve_answers_invocations(sweep, mlflow_uri, tmp_path, record_figure):
    port = free_port()
    bin_dir = str(Path(sys.executable).parent)  # the server execs uvicorn from PATH: the venv's
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_uri, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[2]), os.environ.get("PYTHONPATH", "")])}
    log = open(tmp_path / "serve.log", "wb")
    mlflow_cli = Path(bin_dir) / "mlflow"
    started = time.perf_counter()
    server = subprocess.Popen([str(mlflow_cli), "models", "serve", "-m", f"models:/{NAME}@champion",
                               "--env-manager", "local", "-p", str(port), "-h", "127.0.0.1"],
                              stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp_path, start_new_session=True)
    try:
        def ready():
            assert server.poll() is None, (tmp_path / "serve.log").read_text()[-2000:]
            try:
                return urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2).status == 200
            except OSError:
                return False

        wait_for(ready, 180, "mlflow models serve to answer /ping", every=0.5)
        startup = time.perf_counter() - started
        images = sweep["test"].x[:8]
        body = json.dumps({"inputs": images.tolist()}).encode()
        latencies = []
        for _ in range(5):
            t0 = time.perf_counter()
            request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=body,
                                             headers={"Content-Type": "application/json"})
            answer = json.loads(urllib.request.urlopen(request, timeout=30).read())
            latencies.append(time.perf_counter() - t0)
        rows = answer["predictions"]
        client = Tracker(mlflow_uri).client
        champion = client.get_model_version_by_alias(NAME, "champion")
        own = cnn.load_model(fetch_artifact(mlflow_uri, champion.run_id, "model.npz", tmp_path / "npz"))
        assert [row["label"] for row in rows] == own.predict(images).tolist()
        bad = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", headers={"Content-Type": "application/json"},
                                     data=json.dumps({"inputs": images[:, :, :27].tolist()}).encode())
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(bad, timeout=30)
        assert refused.value.code == 400 and "(N, 1, 28, 28)" in refused.value.read().decode()
        record_figure(f"mlflow models serve: /ping after {startup:.1f}s; /invocations of 8 images: median "
                      f"{sorted(latencies)[2] * 1000:.0f} ms over 5 requests")
    finally:
        with contextlib.suppress(ProcessLookupError):  # the server and its workers: the group this test started
            os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()
