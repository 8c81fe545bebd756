"""The data section, --set overrides, shapes from the data, and equal networks merged in the plan."""
import json
from pathlib import Path

import numpy as np
import pytest

from cnn.dataset import DataError
from sweeper.app.cli import main
from sweeper.plan.data import data_facts, prepare_data
from sweeper.plan.points import make_plan, network_key
from sweeper.spec.config import load_sweep, parse_sweep
from sweeper.spec.yamlsource import SweepFileError
from tests.cnn.datagen import write_cifar_folder, write_idx_folder, write_shapes_folder

REPO = Path(__file__).resolve().parents[2]
RATE = 1e9


def sweep(**fields):
    return parse_sweep({"name": "t", **fields})


def problems(**fields) -> list[str]:
    with pytest.raises(SweepFileError) as info:
        sweep(**fields)
    return [f"{p.path}: {p.message}" for p in info.value.problems]


# --- the data section ---------------------------------------------------------------------------------


def test_data_section_names_what_each_source_needs():
    assert problems(data={"source": "idx"}) == ["data.path: source idx needs a path: the folder with the four IDX files"]
    assert problems(data={"source": "npz", "path": "a.npz", "label_offset": 1}) == [
        "data.label_offset: only used by source idx (subtracted from every label)"]
    assert problems(data={"source": "idx", "path": "d", "resize": [8, 8]}) == [
        "data.resize: only used by source folder ([H, W] every image is resized to)"]
    assert "data.test_fraction" in problems(data={"source": "cifar10", "path": "d", "test_fraction": 0.1})[0]
    assert "data.source" in problems(data={"source": "cifar100", "path": "d"})[0]
    assert problems(data={"source": "cifar10", "path": "d", "train_size": 50001}) == [
        "data.train_size: 50001 exceeds the 50000 images of source cifar10"]
    assert "at most 4096: pixels per side" in problems(data={"source": "folder", "path": "f", "resize": [5000, 8]})[0]
    assert "at most 4: channels" in problems(data={"source": "npz", "path": "f", "input_shape": [5, 8, 8]})[0]
    ok = sweep(data={"source": "folder", "path": "imgs", "resize": [16, 12], "test_fraction": 0.25},
               train={"crop_padding": 2, "hflip": True}, grid={"hflip": [False, True]})
    assert ok.data.resize == (16, 12) and ok.train.crop_padding == 2


def test_augmentation_is_a_sweepable_train_field():
    p = make_plan(sweep(grid={"crop_padding": [0, 4], "hflip": [False, True]}), flops_per_cpu=RATE)
    assert len(p.points) == 4 and {pt.name for pt in p.points} >= {"crop_padding=4 hflip=True"}
    assert "hflip" in problems(grid={"hflip": [1]})[0]


# --- --set ----------------------------------------------------------------------------------------------


def test_set_overrides_dotted_keys_before_validation(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("name: s\ntrain:\n  epochs: 2\ngrid:\n  kernel_size: [3, 5]\n")
    config = load_sweep(path, ["train.epochs=3", "data.source=npz", "data.path=x.npz", "grid.kernel_size=[7]",
                               "model.dense=[]"])
    assert config.train.epochs == 3 and config.data.source == "npz" and config.grid.kernel_size == [7]
    assert config.model.dense == []
    with pytest.raises(SweepFileError) as info:
        load_sweep(path, ["train.epochs=0", "train.epoch=3", "noequals", "train.epochs.x=1"])
    text = str(info.value)
    assert "--set noequals: expected KEY=VALUE" in text and "--set train.epochs.x=1: train.epochs is a value" in text
    with pytest.raises(SweepFileError) as info:
        load_sweep(path, ["train.epochs=0", "train.epoch=3"])
    text = str(info.value)
    assert "train.epochs: Input should be greater than or equal to 1\n" in text + "\n"  # no line: not from the file
    assert "train.epoch: unknown key" in text


def test_cli_set_on_validate_and_plan(tmp_path, capsys):
    path = tmp_path / "s.yaml"
    path.write_text("name: s\ngrid:\n  kernel_size: [3, 5]\n")
    assert main(["validate", str(path), "--set", "grid.kernel_size=[3, 5, 7]"]) == 0
    assert "OK (3 points" in capsys.readouterr().out
    assert main(["validate", str(path), "--set", "model.blocks=0"]) == 2
    assert "model.blocks: Input should be greater than or equal to 1" in capsys.readouterr().err


# --- shapes come from the data ------------------------------------------------------------------------


def test_input_shape_and_counts_come_from_the_data(tmp_path):
    write_cifar_folder(tmp_path / "c", n_train=(40, 40), n_test=20)
    config = sweep(data={"source": "cifar10", "path": str(tmp_path / "c"), "val_fraction": 0.25},
                   model={"blocks": 3, "pooling": "max"}, grid={"kernel_size": [3, 5]})
    facts, prepared = data_facts(config)
    assert facts.input_shape == (3, 32, 32) and facts.checked and facts.sizes == (60, 20, 20)
    assert prepared.train.x.dtype == np.uint8 and len(prepared.normalizer.mean) == 3
    p = make_plan(config, flops_per_cpu=RATE, data=facts)
    assert {pt.spec.input_shape for pt in p.points} == {(3, 32, 32)}
    assert "3x32x32 inputs, 60 train / 20 validation / 20 test images" in p.summary()
    deep = sweep(data={"source": "idx", "path": str(tmp_path / "i")}, model={"blocks": 3, "kernel_size": 5})
    write_idx_folder(tmp_path / "i", train=(30, 20, 20), test=(10, 20, 20))
    facts, _ = data_facts(deep)
    assert facts.input_shape == (1, 20, 20)
    infeasible = make_plan(deep, flops_per_cpu=RATE, data=facts).infeasible
    # 20 -> conv 16 -> pool 8 -> conv 4 -> pool 2: block 3's 5x5 kernel meets a 2x2 map (4x4 from 28x28)
    assert infeasible and "block3.conv (conv): input 8x2x2 collapses" in infeasible[0].reason


def test_missing_data_is_assumed_for_validate_and_fatal_for_run(tmp_path, capsys):
    config = sweep(data={"source": "cifar10", "path": str(tmp_path / "nowhere")})
    facts, prepared = data_facts(config)
    assert prepared is None and not facts.checked and facts.input_shape == (3, 32, 32)
    with pytest.raises(DataError, match="nowhere: no such folder"):
        prepare_data(config.data.model_dump(), 0, 10)
    with pytest.raises(DataError, match="no data.input_shape"):
        data_facts(sweep(data={"source": "npz", "path": str(tmp_path / "x.npz")}))
    stated = sweep(data={"source": "npz", "path": str(tmp_path / "x.npz"), "input_shape": [3, 8, 8]})
    assert data_facts(stated)[0].input_shape == (3, 8, 8)
    np.savez(tmp_path / "x.npz", x=np.zeros((10, 8, 8), np.uint8), y=np.arange(10) % 2)
    with pytest.raises(DataError, match=r"x.npz: images are 1x8x8 \(C x H x W\) but data.input_shape says 3x8x8"):
        data_facts(stated)


@pytest.mark.parametrize("fault,message", [
    ("labels", "label 12 at index 0 out of range 0..9"),
    ("empty", "empty class folder"),
    ("magic", "bad magic number"),
])
def test_bad_data_exits_2_naming_the_file_and_starts_nothing(tmp_path, capsys, fault, message):
    if fault == "labels":
        np.savez(tmp_path / "d.npz", x=np.zeros((20, 8, 8), np.uint8), y=np.full(20, 12))
        data = {"source": "npz", "path": str(tmp_path / "d.npz")}
    elif fault == "empty":
        write_shapes_folder(tmp_path / "f", per_class=3, size=8, classes=2)
        (tmp_path / "f" / "zzz").mkdir()
        data = {"source": "folder", "path": str(tmp_path / "f")}
    else:
        write_idx_folder(tmp_path / "i", gz=False)
        (tmp_path / "i" / "t10k-images-idx3-ubyte").write_bytes(b"\x08\x08\x08\x03" + b"\x00" * 20)
        data = {"source": "idx", "path": str(tmp_path / "i")}
    path = tmp_path / "s.yaml"
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    path.write_text(json.dumps({"name": "bad", "data": data, "mlflow": {"tracking_uri": uri}}))
    for command in ("validate", "plan", "run"):
        assert main([command, str(path)]) == 2, command
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, err
        assert str(tmp_path) in err
    assert not (tmp_path / "mlflow.db").exists()  # nothing started: no store, no run


# --- equal networks --------------------------------------------------------------------------------------


def test_settings_that_cannot_change_the_network_merge():
    config = sweep(model={"pooling": "none"}, grid={"pool_size": [2, 3], "kernel_size": [3, 5]})
    p = make_plan(config, flops_per_cpu=RATE)
    assert len(p.points) == 2 and len(p.merged) == 2
    assert {m.reason for m in p.merged} == {"pool_size cannot change the network when pooling is none"}
    text = p.summary()
    assert "(and 2 merged: the same network as another point)" in text
    assert "Merged points, trained once as the point they equal (2):" in text
    # a point whose resolved spec equals another's, for another reason: one block doubles nothing
    p = make_plan(sweep(model={"blocks": 1}, grid={"depth_rule": ["constant", "double", "halve"]}), flops_per_cpu=RATE)
    assert len(p.points) == 1 and len(p.merged) == 2 and "depth_rule" in p.merged[0].reason
    # with pooling, pool_size matters
    assert len(make_plan(sweep(grid={"pool_size": [2, 3]}), flops_per_cpu=RATE).points) == 2


@pytest.mark.parametrize("name", sorted(p.stem for p in (REPO / "sweeps").glob("*.yaml")))
def test_example_plans_list_no_two_points_with_the_same_network(name):
    config = load_sweep(REPO / "sweeps" / f"{name}.yaml")
    facts = data_facts(config, read=False)[0]
    p = make_plan(config, flops_per_cpu=RATE, data=facts)
    keys = [network_key(pt) for pt in p.points]
    assert (p.points or p.feed.can_draw()) and len(set(keys)) == len(keys)  # tpe: points drawn as trials end
    assert len({pt.spec for pt in p.points if pt.config["train"] == p.points[0].config["train"]}) == \
        sum(pt.config["train"] == p.points[0].config["train"] for pt in p.points)


@pytest.mark.parametrize("name", ["fashion-mnist", "cifar10"])
def test_example_data_files_validate_before_the_data_is_there(name, capsys):
    assert main(["validate", str(REPO / "sweeps" / f"{name}.yaml")]) == 0
    out = capsys.readouterr().out
    assert "not found: not checked" in out and ("1x28x28" in out if name == "fashion-mnist" else "3x32x32" in out)


def test_a_trial_trains_on_the_data_it_is_handed(tmp_path, monkeypatch):
    """What a worker gets from the object store is all it uses: no file is read in the trial."""
    from sweeper.trials.trial import TrialTask, execute

    write_shapes_folder(tmp_path / "f", per_class=8, size=8, classes=2)
    config = sweep(data={"source": "folder", "path": str(tmp_path / "f"), "test_fraction": 0.25},
                   model={"blocks": 1, "depth": 2, "dense": [], "classes": 2},
                   train={"epochs": 1, "batch_size": 4, "crop_padding": 1, "hflip": True})
    facts, prepared = data_facts(config)
    trial = make_plan(config, flops_per_cpu=RATE, data=facts).trials[0]
    monkeypatch.setattr("cnn.sources.load_source", lambda *a, **k: pytest.fail("the trial read the files"))
    monkeypatch.setattr("cnn.load_source", lambda *a, **k: pytest.fail("the trial read the files"))
    outcome = execute(TrialTask(trial), prepared)
    assert outcome.status == "FINISHED", outcome.reason
    assert outcome.profile["max_rss"] > 0
