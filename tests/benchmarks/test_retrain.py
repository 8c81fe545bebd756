"""benchmarks.retrain: one point of a sweep file trained again with several seeds."""
import pytest
import yaml

from benchmarks import retrain


def _sweep(tmp_path, **extra):
    data = {"name": "retrain-t", "seed": 0, "data": {"source": "bundled", "train_size": 300, "test_size": 100},
            "model": {"blocks": 1, "depth": 2, "padding": "same", "dense": []},
            "train": {"epochs": 1, "batch_size": 50}, "grid": {"kernel_size": [3, 5]},
            "early_stopping": {"grace_epochs": 1}, **extra}
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_point_file_drops_the_grid_and_sets_fields(tmp_path):
    path = retrain.point_file(str(_sweep(tmp_path)), tmp_path, assignments=["kernel_size=5", "dropout=0.25",
                                                                            "schedule=cosine"])
    data = yaml.safe_load(path.read_text())
    assert "grid" not in data and "early_stopping" not in data
    assert data["model"]["kernel_size"] == 5 and data["model"]["dropout"] == 0.25
    assert data["train"]["schedule"] == "cosine" and data["train"]["epochs"] == 1
    with pytest.raises(SystemExit, match="not a model or train field"):
        retrain.point_file(str(_sweep(tmp_path)), tmp_path, assignments=["colour=red"])


def test_retrain_trains_each_seed_and_states_the_spread(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # sweeper train writes nothing, but never into the repository
    res = retrain.run(str(_sweep(tmp_path)), assignments=["kernel_size=3"], seeds=2, parallel=2, log=lambda *_: None)
    assert [r["repeat"] for r in res["runs"]] == [0, 1]
    assert all(0 < r["test_accuracy"] <= 1 and r["epochs"] == 1 for r in res["runs"])
    assert res["runs"][0]["seed_line"] != res["runs"][1]["seed_line"]  # two seeds
    assert res["min"] <= res["mean"] <= res["max"] and res["sd"] >= 0
    assert "test accuracy over 2 seeds" in retrain.summary(res)
