"""The options of issue 24 in sweep files: schedules, batch norm, dropout; old hashes unchanged."""
from pathlib import Path

import pytest

from sweeper.plan.points import make_plan
from sweeper.trials.trial import schedule
from sweeper.spec.config import GRID_SECTIONS, load_sweep, parse_sweep
from sweeper.spec.yamlsource import SweepFileError

REPO = Path(__file__).resolve().parents[2]


def sweep(**fields):
    return parse_sweep({"name": "t", **fields})


def plan(config):
    return make_plan(config, flops_per_cpu=1e10, total_cpus=2)


def messages(**fields) -> dict[str, str]:
    with pytest.raises(SweepFileError) as info:
        sweep(**fields)
    return {p.path: p.message for p in info.value.problems}


def test_new_fields_are_sweepable_in_their_sections():
    assert GRID_SECTIONS["batch_norm"] == GRID_SECTIONS["dropout"] == "model"
    for name in ("schedule", "warmup_epochs", "step_epochs", "step_gamma", "min_lr_factor"):
        assert GRID_SECTIONS[name] == "train"
    config = sweep(model={"dropout": 0.25}, train={"epochs": 8, "schedule": "cosine", "warmup_epochs": 2},
                   grid={"batch_norm": [False, True], "schedule": ["step", "cosine"]})
    points = plan(config).points
    assert [p.name for p in points] == ["batch_norm=False schedule=step", "batch_norm=False schedule=cosine",
                                        "batch_norm=True schedule=step", "batch_norm=True schedule=cosine"]
    assert [p.spec.batch_norm for p in points] == [False, False, True, True]
    assert {p.spec.dropout for p in points} == {0.25}
    assert points[1].config["train"]["warmup_epochs"] == 2


@pytest.mark.parametrize("section,field,value,expected", [
    ("model", "dropout", 1.0, "less than 1"), ("model", "dropout", -0.1, "greater than or equal to 0"),
    ("model", "dropout", "0.2", "valid number"), ("model", "batch_norm", "yes", "valid boolean"),
    ("model", "batch_norm", 1, "valid boolean"),
    ("train", "schedule", "linear", "'constant', 'step' or 'cosine'"),
    ("train", "warmup_epochs", -1, "greater than or equal to 0"),
    ("train", "warmup_epochs", 5000, "at most 1000: passes over the training images"),
    ("train", "step_epochs", 0, "greater than or equal to 1"),
    ("train", "step_gamma", 0.0, "greater than 0"), ("train", "step_gamma", 1.5, "less than or equal to 1"),
    ("train", "min_lr_factor", 1.5, "less than or equal to 1"),
    ("train", "min_lr_factor", float("nan"), "finite number"),
])
def test_bad_option_values_are_named(section, field, value, expected):
    found = messages(**{section: {field: value}})
    assert list(found) == [f"{section}.{field}"] and expected in found[f"{section}.{field}"], found


def test_a_typo_in_a_new_field_is_caught():
    found = messages(train={"warmup_epoch": 2})
    assert "warmup_epochs" in found["train.warmup_epoch"]


#: Point hashes of sweeps/lecture-grid.yaml and quickstart.yaml before these options existed (main
#: at dce8b7b): runs logged then must still be found by a resumed sweep.
PINNED = {"lecture-grid": ["99aaf62fcbfd", "160bf4b0dbf0", "9eda5e5464dd"],
          "quickstart": ["77b1c96c3e04", "9e812dc03758"]}


@pytest.mark.parametrize("name", sorted(PINNED))
def test_existing_sweep_files_keep_their_point_hashes(name):
    config = load_sweep(REPO / "sweeps" / f"{name}.yaml")
    hashes = [p.hash for p in plan(config).points]
    assert hashes[:len(PINNED[name])] == PINNED[name]
    # The new settings written out at their defaults change nothing; any other value does.
    explicit = config.model_copy(update={
        "model": config.model.model_copy(update={"batch_norm": False, "dropout": 0.0}),
        "train": config.train.model_copy(update={"schedule": "constant", "warmup_epochs": 0, "step_epochs": 5,
                                                 "step_gamma": 0.1, "min_lr_factor": 0.0})})
    assert [p.hash for p in plan(explicit).points] == hashes
    for section, change in (("model", {"dropout": 0.1}), ("model", {"batch_norm": True}),
                            ("train", {"schedule": "cosine"}), ("train", {"warmup_epochs": 1})):
        changed = config.model_copy(update={section: getattr(config, section).model_copy(update=change)})
        assert plan(changed).points[0].hash != hashes[0], change


def test_settings_of_an_unused_schedule_merge_points():
    config = sweep(train={"schedule": "cosine"}, grid={"step_gamma": [0.1, 0.5], "min_lr_factor": [0.0, 0.1]})
    p = plan(config)
    assert len(p.points) == 2 and len(p.merged) == 2
    assert "cannot change the training when the schedule is cosine" in p.merged[0].reason


def test_trial_schedule_from_train_settings():
    train = {"learning_rate": 0.1, "epochs": 4, "schedule": "step", "warmup_epochs": 1, "step_epochs": 1,
             "step_gamma": 0.5, "min_lr_factor": 0.0}
    assert schedule(train).rates() == pytest.approx([0.05, 0.1, 0.05, 0.025])
    # A config recorded before schedules existed trains at a constant rate.
    assert schedule({"learning_rate": 0.01, "epochs": 3}).rates() == [0.01] * 3
