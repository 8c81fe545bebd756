"""``sweeper train``: one point in this process, without Ray or MLflow."""
import numpy as np
import yaml

import cnn
from sweeper.app.cli import main

SWEEP = {"name": "train-one", "seed": 0, "data": {"source": "bundled", "train_size": 300, "test_size": 100},
         "model": {"blocks": 1, "depth": 2, "dense": [8]}, "train": {"epochs": 1, "batch_size": 50},
         "grid": {"kernel_size": [3, 5]}}


def _file(tmp_path):
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(SWEEP))
    return path


def test_train_one_point_and_save_its_weights(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = main(["train", str(_file(tmp_path)), "--set", "kernel_size=5", "--set", "pooling=l2",
                 "--save", "w.npz"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "k5" in out and "epoch 1:" in out and "final:" in out
    model = cnn.load_model(tmp_path / "w.npz")
    first = next(layer for layer in model.layers if "W" in layer.params)
    assert first.params["W"].shape[-2:] == (5, 5)
    assert np.isfinite(first.params["W"]).all()
    assert not (tmp_path / "mlflow.db").exists()  # no MLflow store written


def test_train_refuses_an_unknown_field_and_a_value_out_of_range(tmp_path, capsys):
    assert main(["train", str(_file(tmp_path)), "--set", "kernel_sise=5"]) == 2
    assert "kernel_sise" in capsys.readouterr().err
    assert main(["train", str(_file(tmp_path)), "--set", "stride=0"]) == 2
    assert "stride" in capsys.readouterr().err
