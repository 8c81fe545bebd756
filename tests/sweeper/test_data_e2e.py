"""Sweeps on the user's own data, end to end on a real local Ray and a real MLflow store.

A generated RGB folder data set whose classes differ in colour and shape; a generated
Fashion-MNIST-format IDX folder swept with the example file; and the memory each worker needs for
a CIFAR-10-sized data set that reaches it once, through Ray's object store.
"""
import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
import yaml

import cnn
from ledger.tracking import Tracker
from sweeper.app.cli import main
from sweeper import api
from tests.cnn.datagen import write_cifar_folder, write_idx_folder, write_shapes_folder

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def runs(uri, name, kind="child"):
    tracker = Tracker(uri)
    exp = tracker.find_experiment(name)
    query = "tags.`sweep.kind` = 'parent'" if kind == "parent" else None
    return tracker.search(exp, query) if kind == "parent" else tracker.trials(exp)


def write_sweep(tmp_path, name, uri, **sections) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"name": name, "seed": 0, **sections, "mlflow": {"tracking_uri": uri}},
                                   sort_keys=False))
    return path


def test_rgb_folder_sweep_reaches_95_percent(tmp_path, ray_local, mlflow_uri, record_figure):
    names = write_shapes_folder(tmp_path / "shapes", per_class=100, size=16, split=True, test_per_class=30)
    path = write_sweep(tmp_path, "e2e-shapes", mlflow_uri,
                       data={"source": "folder", "path": str(tmp_path / "shapes"), "val_fraction": 0.1},
                       model={"blocks": 2, "depth": 8, "padding": "same", "dense": [32], "classes": len(names)},
                       train={"epochs": 1, "batch_size": 32, "learning_rate": 0.003},
                       grid={"kernel_size": [3, 5], "hflip": [False, True]})
    assert main(["run", str(path), "-q", "--set", "train.epochs=4"]) == 0
    children = runs(mlflow_uri, "e2e-shapes")
    assert len(children) == 4 and {r.info.status for r in children} == {"FINISHED"}
    accuracies = sorted(r.data.metrics["test_accuracy"] for r in children)
    record_figure(f"RGB folder sweep (4 shapes x colours, 16x16, 360 train / 120 test): test accuracy "
                  f"{', '.join(f'{a:.3f}' for a in accuracies)}")
    assert accuracies[-1] >= 0.95
    assert all(r.data.params["epochs"] == "4" for r in children)
    (parent,) = runs(mlflow_uri, "e2e-shapes", "parent")  # the run's; resume adds its own below
    assert json.loads(parent.data.tags["sweep.set"]) == ["train.epochs=4"]
    # resume by name reads the file back and applies the recorded --set again: nothing to train
    assert main(["resume", "e2e-shapes", "-q", "--tracking-uri", mlflow_uri]) == 0
    assert len(runs(mlflow_uri, "e2e-shapes")) == 4
    plan_txt = Tracker(mlflow_uri).client.download_artifacts(parent.info.run_id, "plan.txt", str(tmp_path))
    assert "folder, 3x16x16 inputs, 360 train / 40 validation / 120 test images" in Path(plan_txt).read_text()
    # the saved model carries its normalisation: load_model + predict on raw test images
    best = max(children, key=lambda r: r.data.metrics["test_accuracy"])
    with tempfile.TemporaryDirectory() as tmp:
        model = cnn.load_model(Tracker(mlflow_uri).client.download_artifacts(best.info.run_id, "model.npz", tmp))
    _, test = cnn.load_folder(tmp_path / "shapes")
    assert model.normalizer is not None and len(model.normalizer.mean) == 3
    assert np.mean(model.predict(test.x) == test.y) == pytest.approx(best.data.metrics["test_accuracy"])


def test_fashion_mnist_example_on_a_generated_idx_folder(tmp_path, ray_local, mlflow_uri, capsys):
    write_idx_folder(tmp_path / "fashion", train=(300, 28, 28), test=(100, 28, 28))
    sets = ["--set", f"data.path={tmp_path / 'fashion'}", "--set", "name=e2e-fashion",
            "--set", f"mlflow.tracking_uri={mlflow_uri}", "--set", "train.epochs=1",
            "--set", "model.depth=4", "--set", "grid={pooling: [max, none], pool_size: [2, 3]}"]
    example = REPO / "sweeps" / "fashion-mnist.yaml"
    assert main(["validate", str(example), *sets]) == 0
    out = capsys.readouterr().out
    assert "1x28x28 inputs, 270 train / 30 validation / 100 test images" in out and "1 merged" in out
    assert main(["plan", str(example), *sets]) == 0
    assert "pool_size cannot change the network when pooling is none" in capsys.readouterr().out
    assert main(["run", str(example), "-q", *sets]) == 0
    children = runs(mlflow_uri, "e2e-fashion")
    assert len(children) == 3 and {r.info.status for r in children} == {"FINISHED"}  # 4 points, 1 merged
    assert all(r.data.params["test_images"] == "100" for r in children)


def test_worker_memory_at_cifar10_scale(tmp_path, record_figure):
    """A 2-CPU sweep of 4 trials on 50000 x 3 x 32 x 32 uint8 images (+ 10000 test), as a user runs
    it: ``sweeper run`` in its own process with a fresh local Ray, so each of the two workers trains
    two trials, side by side.

    Each trial's recorded ``peak_rss_mib`` (the worker's peak RSS during that trial) must stay under
    1.5 x (data + model buffers), although a worker holds about 130 MB before it touches any data
    (Python, NumPy, Ray's core worker): workers read the shared object store's images batch by
    batch and hand the pages back (sweeper/trials/pages.py), so neither the data set's pages nor any
    copy of it stay resident.
    """
    import os
    import subprocess
    import sys

    write_cifar_folder(tmp_path / "cifar", n_train=(10000,) * 5, n_test=10000)
    batch, uri = 256, f"sqlite:///{tmp_path}/mlflow.db"
    path = write_sweep(tmp_path, "e2e-memory", uri,
                       data={"source": "cifar10", "path": str(tmp_path / "cifar"), "val_fraction": 0.1},
                       model={"blocks": 1, "depth": 4, "stride": 2, "padding": "same", "pooling": "max", "pool_size": 4,
                              "dense": []},
                       train={"epochs": 1, "batch_size": batch}, grid={"kernel_size": [3, 5], "depth": [4, 6]},
                       resources={"cpus_per_trial": 1})
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(HOME=str(home), RAY_TMPDIR=tempfile.mkdtemp(prefix="ray", dir="/tmp"), PYTHONPATH=str(REPO))
    run = subprocess.run([sys.executable, "-m", "sweeper", "run", str(path), "-q"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    specs = {p.name: p.spec for p in api.plan(path)[0].points}
    data_bytes = 60000 * (3 * 32 * 32 + 8)  # uint8 images and int64 labels
    trials = runs(uri, "e2e-memory")
    assert len(trials) == 4 and len({r.data.tags["sweep.pid"] for r in trials}) == 2  # two workers, two trials each
    for r in sorted(trials, key=lambda r: r.info.run_name):
        need = data_bytes + model_buffers(specs[r.info.run_name.rsplit(" #", 1)[0]], batch)
        peak = r.data.metrics["peak_rss_mib"] * 2**20
        record_figure(f"worker pid {r.data.tags['sweep.pid']} ({r.info.run_name}): peak RSS {peak / 2**20:.0f} MiB = "
                      f"{peak / need:.2f} x (data {data_bytes / 2**20:.0f} MiB + model buffers "
                      f"{(need - data_bytes) / 2**20:.1f} MiB)")
        assert peak < 1.5 * need


def model_buffers(spec, batch: int) -> int:
    """float32 bytes of a training step: weights, gradients and Adam's two moments, plus each
    layer's output and its gradient for a batch, plus the im2col matrix of each convolution."""
    layers = cnn.infer_shapes(spec)
    params = sum(layer.params for layer in layers)
    activations = sum(int(np.prod(layer.out_shape)) for layer in layers)
    cols = sum(int(np.prod(layer.out_shape[1:])) * layer.in_shape[0] * int(np.prod(layer.config["kernel_size"]))
               for layer in layers if layer.kind == "conv")
    return 4 * (4 * params + batch * (2 * activations + int(np.prod(spec.input_shape)) + cols))
