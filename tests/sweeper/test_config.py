"""The sweep schema: defaults, types shared by the grid, cross-checks, line numbers, to_spec."""
from pathlib import Path

import pytest
from pydantic import ValidationError

from cnn.spec import ModelSpec
from sweeper.spec.config import (GRID_ORDER, GRID_SECTIONS, GridConfig, ModelConfig, SweepConfig, TrainConfig,
                            load_sweep, parse_sweep)
from sweeper.spec.yamlsource import LineMap, Problem, SweepFileError, format_loc, parse_yaml

REPO = Path(__file__).resolve().parents[2]


def sweep(**fields) -> SweepConfig:
    return parse_sweep({"name": "t", **fields})


def problems(**fields) -> list[Problem]:
    with pytest.raises(SweepFileError) as info:
        sweep(**fields)
    return info.value.problems


def paths(**fields) -> list[str]:
    return [p.path for p in problems(**fields)]


# --- defaults and examples ---------------------------------------------------------------------


def test_defaults():
    config = sweep()
    assert config.method == "grid" and config.repeats == 1 and config.samples is None
    assert config.data.source == "bundled" and config.data.val_fraction == 0.1
    assert config.model.kernel_size == 3 and config.model.dense == [64]
    assert config.train.optimizer == "adam" and config.train.dtype == "float32"
    assert config.grid.axes() == [] and config.exclude == []
    assert config.early_stopping is None
    assert config.experiment_name == "t"
    assert sweep(mlflow={"experiment": "lecture"}).experiment_name == "lecture"


@pytest.mark.parametrize("name", ["quickstart", "lecture-grid", "random-asha", "accurate-and-fast"])
def test_examples_load(name):
    config = load_sweep(REPO / "sweeps" / f"{name}.yaml")
    assert config.name == name


def test_lecture_grid_axes():
    config = load_sweep(REPO / "sweeps" / "lecture-grid.yaml")
    assert [name for name, _ in config.grid.axes()] == ["kernel_size", "depth", "stride", "padding", "pooling"]
    assert config.grid.size() == 108
    assert config.model.depth_rule == "double" and config.data.source == "mnist"


def test_config_is_frozen():
    with pytest.raises(ValidationError):
        sweep().seed = 3


# --- field types ---------------------------------------------------------------------------------


def test_window_arguments_accept_int_pair_and_same():
    model = sweep(model={"kernel_size": [5, 3], "stride": [2, 2], "padding": "same"}).model
    assert model.kernel_size == (5, 3)
    assert model.stride == 2  # a square pair is the int
    assert model.padding == "same"
    assert sweep(model={"padding": [0, 1]}).model.padding == (0, 1)


@pytest.mark.parametrize("field, value", [
    ("kernel_size", 0), ("kernel_size", [3]), ("kernel_size", [3, 0]), ("kernel_size", "3"),
    ("kernel_size", True), ("stride", 1.5), ("padding", -1), ("padding", "valid"), ("pooling", "mean"),
    ("activation", "tanh"), ("dense", [0]), ("classes", 1), ("blocks", 0), ("depth_rule", "triple"),
])
def test_bad_model_values(field, value):
    assert paths(model={field: value})[0].startswith(f"model.{field}")


@pytest.mark.parametrize("field, value", [
    ("epochs", 0), ("epochs", 2.0), ("learning_rate", 0), ("learning_rate", "0.1"), ("momentum", 1.0),
    ("weight_decay", -0.1), ("optimizer", "rmsprop"), ("dtype", "float16"),
])
def test_bad_train_values(field, value):
    assert paths(train={field: value}) == [f"train.{field}"]


def test_ints_are_accepted_for_floats():
    assert sweep(train={"learning_rate": 1}).train.learning_rate == 1.0


@pytest.mark.parametrize("section, fields", [
    ("data", {"val_fraction": 1.5}), ("data", {"val_fraction": -0.1}), ("data", {"source": "cifar"}),
    ("resources", {"cpus_per_trial": 0}), ("resources", {"max_concurrent": 0}),
    ("failures", {"max_retries": -1}), ("failures", {"stop_after_same_error": 0}),
    ("feasibility", {"unseen_inputs": "maybe"}), ("early_stopping", {"reduction_factor": 1}),
    ("early_stopping", {"metric": "accuracy"}), ("early_stopping", {"grace_epochs": 0}),
])
def test_bad_section_values(section, fields):
    assert paths(**{section: fields})[0].startswith(f"{section}.")


def test_name_pattern_and_required():
    assert paths(name="a b") == ["name"]
    with pytest.raises(SweepFileError) as info:
        parse_sweep({"seed": 1})
    assert [(p.path, p.message) for p in info.value.problems] == [("name", "Field required")]


def test_unknown_keys_everywhere():
    for fields, path in [({"metod": "grid"}, "metod"), ({"model": {"kernel": 3}}, "model.kernel"),
                         ({"train": {"lr": 0.1}}, "train.lr"), ({"mlflow": {"uri": "x"}}, "mlflow.uri"),
                         ({"grid": {"lr": [0.1]}}, "grid.lr")]:
        (problem,) = problems(**fields)
        assert problem.path == path and problem.message.startswith("unknown key")


def test_unknown_key_suggests_and_lists():
    (problem,) = problems(model={"kernal_size": 5})
    assert "did you mean 'kernel_size'?" in problem.message
    assert "valid keys: blocks, depth, depth_rule, kernel_size" in problem.message


# --- grid ------------------------------------------------------------------------------------------


def test_grid_fields_are_model_and_train_fields():
    assert set(GridConfig.model_fields) == set(ModelConfig.model_fields) | set(TrainConfig.model_fields)
    assert set(GRID_ORDER) == set(GRID_SECTIONS)
    assert not set(ModelConfig.model_fields) & set(TrainConfig.model_fields)


def test_grid_values_validated_like_the_field():
    assert paths(grid={"stride": [1, 2, -1]}) == ["grid.stride[2]"]
    assert paths(grid={"learning_rate": [0.1, -1.0]}) == ["grid.learning_rate[1]"]
    assert paths(grid={"dense": [[64], [128, 0]]}) == ["grid.dense[1][1]"]
    assert paths(grid={"pooling": ["max", "maximum"]}) == ["grid.pooling[1]"]
    assert paths(grid={"padding": [0, "valid"]}) == ["grid.padding[1]"]
    assert paths(grid={"epochs": 3}) == ["grid.epochs"]  # not a list


def test_grid_lists_non_empty_and_distinct():
    assert paths(grid={"pooling": []}) == ["grid.pooling"]
    assert paths(grid={"kernel_size": [3, 5, 3, 5]}) == ["grid.kernel_size[2]", "grid.kernel_size[3]"]
    assert paths(grid={"kernel_size": [3, [3, 3]]}) == ["grid.kernel_size[1]"]  # the same size
    assert paths(grid={"dense": [[64], [64]]}) == ["grid.dense[1]"]


def test_grid_values_normalised():
    grid = sweep(grid={"kernel_size": [[3, 3], [5, 3]], "dense": [[], [64]], "pool_stride": [None, 1]}).grid
    assert dict(grid.axes()) == {"kernel_size": [3, (5, 3)], "pool_stride": [None, 1], "dense": [[], [64]]}


def test_grid_axes_in_fixed_order_whatever_the_file_order():
    a = sweep(grid={"pooling": ["max"], "learning_rate": [0.1], "kernel_size": [3]}).grid.axes()
    b = sweep(grid={"kernel_size": [3], "pooling": ["max"], "learning_rate": [0.1]}).grid.axes()
    assert a == b and [name for name, _ in a] == ["kernel_size", "pooling", "learning_rate"]


def test_grid_size_limit():
    big = {"depth": list(range(1, 101)), "dense": [[n] for n in range(1, 101)], "epochs": list(range(1, 12))}
    assert paths(grid=big) == ["grid"]


# --- exclude ----------------------------------------------------------------------------------------


GRID = {"kernel_size": [3, 5, 7], "stride": [1, 2]}


def test_exclude_entries_validated_against_the_grid():
    config = sweep(grid=GRID, exclude=[{"kernel_size": [7, 7], "stride": 2}])
    assert config.exclude == [{"kernel_size": 7, "stride": 2}]
    assert paths(grid=GRID, exclude=[{"pooling": "max"}]) == ["exclude[0].pooling"]
    assert paths(grid=GRID, exclude=[{"kernel_size": 9}]) == ["exclude[0].kernel_size"]
    assert paths(grid=GRID, exclude=[{"stride": -2}]) == ["exclude[0].stride"]
    assert paths(grid=GRID, exclude=[{}]) == ["exclude[0]"]
    assert paths(grid=GRID, exclude=[{"kernel_size": 3}, {"kernel_size": 4, "blocks": 2}]) == [
        "exclude[1].kernel_size", "exclude[1].blocks"]


def test_exclude_message_lists_grid_keys():
    (problem,) = problems(grid=GRID, exclude=[{"padding": 0}])
    assert problem.message == "not a grid key (grid keys: kernel_size, stride)"


# --- cross checks -----------------------------------------------------------------------------------


def test_random_needs_samples_within_the_grid():
    assert paths(method="random", grid=GRID) == ["method"]
    assert paths(method="random", samples=7, grid=GRID) == ["samples"]
    assert sweep(method="random", samples=6, grid=GRID).samples == 6
    assert paths(samples=3, grid=GRID) == ["samples"]  # grid trains every point


def test_data_cross_checks():
    assert paths(data={"source": "bundled", "path": "/x"}) == ["data.path"]
    assert sweep(data={"source": "mnist", "path": "/x"}).data.path == "/x"
    assert paths(data={"train_size": 6001}) == ["data.train_size"]
    assert paths(data={"test_size": 1001}) == ["data.test_size"]
    assert sweep(data={"source": "mnist", "train_size": 6001}).data.train_size == 6001


def test_data_sizes():
    assert sweep().data.sizes() == (5400, 600, 1000)
    assert sweep(data={"source": "mnist"}).data.sizes() == (54000, 6000, 10000)
    assert sweep(data={"source": "mnist", "train_size": 1000, "test_size": 500,
                       "val_fraction": 0.2}).data.sizes() == (800, 200, 500)


def test_early_stopping():
    assert sweep(early_stopping={}).early_stopping.mode == "max"
    assert sweep(early_stopping={"metric": "val_loss"}).early_stopping.mode == "min"
    assert paths(early_stopping={"metric": "val_loss", "mode": "max"}) == ["early_stopping.mode"]
    assert paths(early_stopping={}, data={"val_fraction": 0.0}) == ["early_stopping"]


def test_cross_checks_run_beside_other_problems():
    found = paths(method="random", model={"depth": 0}, grid=GRID, exclude=[{"pooling": "max"}])
    assert found == ["method", "model.depth", "exclude[0].pooling"]


# --- to_spec -------------------------------------------------------------------------------------


@pytest.mark.parametrize("rule, depth, expected", [
    ("constant", 8, [8, 8, 8]), ("double", 4, [4, 8, 16]), ("halve", 8, [8, 4, 2]), ("halve", 2, [2, 1, 1]),
])
def test_to_spec_depth_rules(rule, depth, expected):
    spec = ModelConfig(blocks=3, depth=depth, depth_rule=rule).to_spec()
    assert [block.depth for block in spec.blocks] == expected


def test_to_spec_fields():
    spec = ModelConfig(kernel_size=(5, 3), stride=2, padding="same", pooling="none", activation="sigmoid",
                       pool_size=3, dense=[128, 64], dense_activation="sigmoid", classes=5).to_spec()
    assert isinstance(spec, ModelSpec)
    assert spec.input_shape == (1, 28, 28) and spec.dense == (128, 64) and spec.classes == 5
    assert spec.dense_activation == "sigmoid"
    block = spec.blocks[0]
    assert (block.kernel_size, block.stride, block.padding) == ((5, 3), 2, "same")
    # without pooling the pool settings cannot matter: they take the defaults, so equal networks have equal specs
    assert block.pooling is None and block.activation == "sigmoid" and block.pool_size == 2
    assert ModelConfig(pooling="l2").to_spec().blocks[1].pooling == "l2"
    assert ModelConfig(pool_size=3, pool_stride=3).to_spec() == ModelConfig(pool_size=3).to_spec()
    assert ModelConfig().to_spec((3, 32, 32)).input_shape == (3, 32, 32)


# --- YAML source and problem formatting ------------------------------------------------------------


def test_line_map_points_at_keys_and_items():
    text = "name: x\ngrid:\n  stride:\n    - 1\n    - 2\n  pooling: [max, avg]\n"
    data, lines = parse_yaml(text)
    assert data["grid"]["stride"] == [1, 2]
    assert lines.line_of(("grid", "stride", 1)) == 5
    assert lines.line_of(("grid", "pooling", 1)) == 6
    assert lines.line_of(("grid",)) == 2
    assert lines.line_of(("grid", "kernel_size")) == 2  # missing: the enclosing key
    assert lines.line_of(("samples",)) is None


def test_duplicate_keys_all_reported():
    with pytest.raises(SweepFileError) as info:
        parse_yaml("name: a\nseed: 1\nmodel:\n  depth: 2\n  depth: 3\nseed: 2\n", "f.yaml")
    assert [(p.path, p.line) for p in info.value.problems] == [("model.depth", 5), ("seed", 6)]
    assert "first given on line 2" in info.value.problems[1].message


def test_problem_format():
    error = SweepFileError("s.yaml", [Problem("grid.stride[2]", "bad", 14), Problem("", "empty")])
    assert str(error) == "s.yaml: grid.stride[2]: bad (line 14)\ns.yaml: empty"
    assert format_loc(("grid", "dense", 1, 0)) == "grid.dense[1][0]"
    assert LineMap().line_of(("a",)) is None


def test_load_sweep_lines(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("name: s\ngrid:\n  stride: [1, 0]\n  kernel_size:\n    - 3\n    - 3\n")
    with pytest.raises(SweepFileError) as info:
        load_sweep(path)
    assert str(info.value).splitlines() == [
        f"{path}: grid.stride[1]: Input should be greater than or equal to 1 (line 3)",
        f"{path}: grid.kernel_size[1]: duplicate value 3 (also item 0) (line 6)",
    ]


def test_yaml_tags_are_not_executed(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("name: !!python/object/apply:os.getcwd []\n")
    with pytest.raises(SweepFileError) as info:
        load_sweep(path)
    assert info.value.problems[0].message.startswith("YAML error: could not determine a constructor")
