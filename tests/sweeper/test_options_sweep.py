"""A sweep over a schedule, batch norm and dropout on a real Ray and MLflow store: the learning
rate of every epoch is in MLflow, and the models come back with their running statistics."""
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

import cnn
from ledger.tracking import Tracker
from sweeper.app.cli import main

pytestmark = pytest.mark.slow


def test_sweep_records_each_epochs_learning_rate_and_saves_batch_norm(tmp_path, ray_local, mlflow_uri):
    name = "options-e2e"
    spec = {"name": name, "seed": 0, "data": {"source": "bundled", "train_size": 600, "test_size": 200},
            "model": {"blocks": 1, "depth": 4, "padding": "same", "dense": [16], "dropout": 0.2},
            "train": {"epochs": 3, "batch_size": 64, "learning_rate": 0.01, "warmup_epochs": 1},
            "grid": {"schedule": ["constant", "cosine"], "batch_norm": [False, True]},
            "mlflow": {"tracking_uri": mlflow_uri}}
    path = tmp_path / "options.yaml"
    path.write_text(yaml.safe_dump(spec))
    assert main(["run", str(path), "-q"]) == 0
    tracker = Tracker(mlflow_uri)
    runs = tracker.trials(tracker.find_experiment(name))
    assert len(runs) == 4 and {r.info.status for r in runs} == {"FINISHED"}
    for run in runs:
        params = run.data.params
        history = tracker.client.get_metric_history(run.info.run_id, "learning_rate")
        rates = [m.value for m in sorted(history, key=lambda m: m.step)]
        want = cnn.Schedule(0.01, 3, params["schedule"], warmup_epochs=1).rates()
        assert [m.step for m in sorted(history, key=lambda m: m.step)] == [1, 2, 3]
        np.testing.assert_allclose(rates, want, rtol=1e-12)
        local = Path(tracker.client.download_artifacts(run.info.run_id, "model.npz", str(tmp_path / run.info.run_id)))
        model = cnn.load_model(local)
        assert model.spec.dropout == 0.2 and model.spec.batch_norm == (params["batch_norm"] == "True")
        if model.spec.batch_norm:  # trained running statistics, not the initial ones
            assert not np.allclose(model.state_dict()["block1.bn.running_var"], 1.0)
        config = json.loads(Path(tracker.client.download_artifacts(run.info.run_id, "config.json",
                                                                   str(tmp_path / run.info.run_id))).read_text())
        assert config["train"]["warmup_epochs"] == 1
    # The ledger's frames: the setting under its name, the per-epoch rates as a history.
    from ledger import load_history, load_runs

    frame = load_runs(mlflow_uri, name)
    assert list(frame["learning_rate"]) == [0.01] * 4 and "learning_rate" not in frame.attrs["metrics"]
    curves = load_history(mlflow_uri, name, metrics=["learning_rate"], runs=frame)
    assert len(curves) == 12 and curves["value"].max() == pytest.approx(0.01)
    # The chosen point trained again (benchmarks.retrain): repeat 0 has the sweep's own seed, so it
    # reproduces the sweep's trial of that point exactly.
    from benchmarks import retrain

    res = retrain.run(str(path), store=mlflow_uri, seeds=1, parallel=1, log=lambda *_: None)
    chosen = [r for r in runs if r.data.tags["sweep.point"] in res["runs"][0]["seed_line"]]
    assert len(chosen) == 1
    assert res["runs"][0]["test_accuracy"] == pytest.approx(chosen[0].data.metrics["test_accuracy"], abs=1e-4)
