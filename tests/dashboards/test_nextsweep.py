"""``next.yaml`` (:mod:`dashboards.nextsweep`): the sweep as it ran, moved as advised, valid as it is."""
import pytest
import yaml

from dashboards.advice import Advice, Knob
from dashboards.nextsweep import NextSweepError, SweepFile, changes, next_sweep
from sweeper.app.cli import main
from sweeper.spec.config import load_sweep

SWEEP = """# a comment that rewriting drops
name: moved
seed: 3
method: grid
repeats: 1
data: {source: bundled, train_size: 600, test_size: 200}
model: {blocks: 2, depth: 4, padding: same, dense: [16]}
train: {epochs: 2, batch_size: 64}
grid:
  kernel_size: [3, 5]     # widened below
  pooling: [max, avg, l2]
  depth: [4, 8]
exclude:
  - {kernel_size: 3, pooling: l2}
  - {kernel_size: 5, depth: 8}
"""


def knob(field, action, values):
    return Knob(field=field, action=action, best="", tied=(), values=values, effect="", strength=1.0, p=0.01,
                tested="", why="the tables say so", act=action)


def advice(*knobs, verdict="widen", repeats=None):
    return Advice(verdict, tuple(knobs), repeats, repeats is None)


def write(tmp_path, text):
    path = tmp_path / "next.yaml"
    path.write_text(text)
    return path


def test_the_grid_moves_as_advised_and_the_file_validates(tmp_path, capsys):
    text = next_sweep(SweepFile(SWEEP), advice(knob("kernel_size", "widen", (3, 5, 7)), knob("pooling", "narrow",
                                                                                           ("max", "avg")),
                                               knob("depth", "tie", (4,)), repeats=3), "moved", "r/report.html")
    path = write(tmp_path, text)
    assert main(["validate", str(path)]) == 0, capsys.readouterr().err
    config = load_sweep(path)
    assert config.grid.kernel_size == [3, 5, 7] and config.grid.pooling == ["max", "avg"] and config.grid.depth == [4]
    assert config.repeats == 3 and config.name == "moved" and config.seed == 3 and config.train.epochs == 2
    # The l2 exclusion names a value no longer swept, the depth 8 one too: both dropped, and said so.
    assert config.exclude == []
    assert changes(text) == ['grid.kernel_size: [3, 5] -> [3, 5, 7] (widen)',
                             'grid.pooling: ["max", "avg", "l2"] -> ["max", "avg"] (narrow)',
                             'grid.depth: [4, 8] -> [4] (tie)', 'repeats: 1 -> 3 (intervals and ties need repeats)',
                             'exclude: dropped {"kernel_size": 3, "pooling": "l2"} (it names a value no longer in '
                             'the grid)',
                             'exclude: dropped {"kernel_size": 5, "depth": 8} (it names a value no longer in the grid)']
    assert "kernel_size: [3, 5, 7]" in text  # lists in flow style, as sweep files are written


def test_the_overrides_of_the_run_are_kept(tmp_path):
    ran = SweepFile(SWEEP, ("train.epochs=1", "mlflow.experiment=elsewhere", "grid.depth=[4, 8, 16]"))
    text = next_sweep(ran, advice(knob("depth", "widen", (8, 16, 32))), "moved", "r")
    config = load_sweep(write(tmp_path, text))
    assert config.train.epochs == 1 and config.mlflow.experiment == "elsewhere"
    assert config.grid.depth == [8, 16, 32] and "grid.depth: [4, 8, 16] -> [8, 16, 32] (widen)" in changes(text)


def test_a_random_search_draws_no_more_points_than_its_grid_has(tmp_path):
    text = SWEEP.replace("method: grid", "method: random\nsamples: 6")
    out = next_sweep(SweepFile(text), advice(knob("pooling", "narrow", ("max",)), knob("depth", "tie", (4,))),
                     "moved", "r")
    config = load_sweep(write(tmp_path, out))
    assert config.samples == 2 and config.grid.size() == 2


def test_nothing_to_write_when_the_advice_is_to_stop_or_changes_nothing():
    stop = advice(knob("kernel_size", "widen", (3, 5, 7)), verdict="stop")
    assert next_sweep(SweepFile(SWEEP), stop, "m", "r") is None
    assert next_sweep(SweepFile(SWEEP), advice(knob("kernel_size", "widen", (3, 5))), "m", "r") is None


@pytest.mark.parametrize("text, why", [
    ("name: a\ngrid: &g {kernel_size: [3]}\nmodel: *g\n", "aliases"),
    ("name: a\nmodel: {depth: 4}\n", "no grid"),
    ("name: [unclosed\n", "does not parse"),
    ("name: a\ngrid: {kernel_size: [3, 5]}\n" + "#" * 1_000_001, "over"),
])
def test_files_it_cannot_rewrite_say_why(text, why):
    with pytest.raises(NextSweepError, match=why):
        next_sweep(SweepFile(text), advice(knob("kernel_size", "widen", (3, 5, 7))), "a", "r")


def test_a_grid_entry_that_is_not_a_list_is_left_alone():
    text = next_sweep(SweepFile("name: a\ngrid: {kernel_size: [3, 5], depth: {low: 4, high: 16}}\n"),
                      advice(knob("kernel_size", "widen", (3, 5, 7)), knob("depth", "tie", (4,))), "a", "r")
    assert yaml.safe_load(text)["grid"] == {"kernel_size": [3, 5, 7], "depth": {"low": 4, "high": 16}}
