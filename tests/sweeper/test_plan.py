"""Planning: grid expansion, random draws, exclusion, feasibility, seeds, hashes, done/pending, cost."""
import json
from pathlib import Path

import pytest

from sweeper.plan import cost as cost_module
from sweeper.plan.cost import calibrated_efficiency, longest_first
from sweeper.spec.config import load_sweep, parse_sweep
from sweeper.plan.points import (EFFICIENCY, config_hash, make_plan, measure_flops_per_cpu, point_name, trial_flops,
                          trial_seed)

REPO = Path(__file__).resolve().parents[2]
RATE = 1e10  # FLOP/s per CPU, instead of measuring


@pytest.fixture(autouse=True)
def no_calibration(monkeypatch, tmp_path):
    """Estimates here use the default efficiency, whatever `make bench` stored on this machine."""
    monkeypatch.setenv(cost_module.CALIBRATION_ENV, str(tmp_path / "none.json"))
    calibrated_efficiency.cache_clear()
    yield
    calibrated_efficiency.cache_clear()


def sweep(**fields):
    return parse_sweep({"name": "t", **fields})


def plan(config, **kwargs):
    return make_plan(config, flops_per_cpu=RATE, **kwargs)


def example(name):
    return plan(load_sweep(REPO / "sweeps" / f"{name}.yaml"), total_cpus=2)


# --- expansion -------------------------------------------------------------------------------------


def test_lecture_grid_expansion():
    p = example("lecture-grid")
    assert p.space == 108
    assert len(p.points) + len(p.infeasible) + len(p.excluded) == 108
    assert len(p.points) == 81 and len(p.infeasible) == 27 and not p.excluded
    assert len(p.trials) == len(p.pending) == 81
    assert len({pt.hash for pt in p.points}) == 81 and len({pt.name for pt in p.points}) == 81


def test_quickstart_points_in_order():
    p = example("quickstart")
    assert [pt.name for pt in p.points] == ["k3 max", "k3 avg", "k3 l2", "k5 max", "k5 avg", "k5 l2"]
    assert [pt.values for pt in p.points][3] == {"kernel_size": 5, "pooling": "max"}
    assert p.trials[0].run_name == "k3 max #1"


def test_no_grid_is_one_point():
    p = plan(sweep())
    assert p.space == 1 and [pt.name for pt in p.points] == ["base"] and p.points[0].values == {}


def test_deterministic():
    a, b = example("lecture-grid"), example("lecture-grid")
    assert [(pt.hash, pt.name) for pt in a.points] == [(pt.hash, pt.name) for pt in b.points]
    assert [t.seed for t in a.trials] == [t.seed for t in b.trials]


def test_point_config_is_resolved_and_plain_json():
    config = sweep(model={"depth": 4}, grid={"kernel_size": [[5, 3]], "learning_rate": [0.01]})
    (point,) = plan(config).points
    assert list(point.config) == ["seed", "data", "model", "train"]
    assert point.config["model"]["kernel_size"] == [5, 3]  # a list, as JSON has it
    assert point.config["model"]["depth"] == 4 and point.config["train"]["learning_rate"] == 0.01
    assert json.loads(json.dumps(point.config)) == point.config
    assert point.spec.blocks[0].kernel_size == (5, 3)
    assert point.flops > 0 and point.params > 0


def test_point_names():
    assert point_name({"kernel_size": 5, "depth": 16, "stride": 2, "padding": "same", "pooling": "l2"}) \
        == "k5 d16 s2 same l2"
    assert point_name({"kernel_size": (5, 3), "padding": (1, 2), "pooling": "none"}) == "k5x3 p1x2 nopool"
    assert point_name({"padding": 0, "learning_rate": 0.01, "dense": [128, 64]}) \
        == "p0 learning_rate=0.01 dense=128,64"
    assert point_name({"dense": [], "pool_stride": None}) == "dense=none pool_stride=none"
    assert point_name({"weight_decay": 0.0, "pool_stride": (2, 1)}) == "weight_decay=0.0 pool_stride=2x1"


# --- random ----------------------------------------------------------------------------------------


def test_random_reproducible_and_within_space():
    config = load_sweep(REPO / "sweeps" / "random-asha.yaml")
    a, b = plan(config), plan(config)
    assert [pt.hash for pt in a.points] == [pt.hash for pt in b.points]
    assert len(a.points) == config.samples == 12
    assert len({pt.hash for pt in a.points}) == 12  # without replacement
    axes = dict(config.grid.axes())
    for pt in a.points:
        assert all(value in axes[key] for key, value in pt.values.items())
        assert (pt.values["kernel_size"], pt.values["stride"]) != (7, 2)  # excluded
    # Drawn from the feasible points, kept in grid order.
    feasible = [pt.hash for pt in plan(config.model_copy(update={"method": "grid", "samples": None})).points]
    assert [feasible.index(pt.hash) for pt in a.points] == sorted(feasible.index(pt.hash) for pt in a.points)


def test_random_depends_on_seed():
    grid = {"kernel_size": [3, 5], "depth": [2, 4, 8, 16], "pooling": ["max", "avg", "l2"]}
    draws = {tuple(pt.values.values() for pt in plan(sweep(method="random", samples=5, seed=s, grid=grid)).points)
             for s in range(4)}
    assert len(draws) > 1


def test_random_takes_all_when_few_feasible():
    config = sweep(method="random", samples=3, grid={"kernel_size": [3, 5, 7]}, model={"depth": 2},
                   exclude=[{"kernel_size": 5}, {"kernel_size": 7}])
    p = plan(config)
    assert len(p.points) == 1 and p.candidates == 1
    assert "fewer feasible points than samples" in p.summary()


# --- exclusion and feasibility ---------------------------------------------------------------------------


def test_exclusion():
    config = load_sweep(REPO / "sweeps" / "random-asha.yaml")
    p = plan(config)
    assert len(p.excluded) == 3 * 2 * 3 == 18
    assert all(e.values["kernel_size"] == 7 and e.values["stride"] == 2 and e.rule == 0 for e in p.excluded)
    assert p.candidates == 108 - 18 - len(p.infeasible)


def test_exclusion_first_matching_entry():
    config = sweep(grid={"kernel_size": [3, 5], "stride": [1, 2]},
                   exclude=[{"kernel_size": 5, "stride": 2}, {"stride": 2}])
    p = plan(config)
    assert [(e.name, e.rule) for e in p.excluded] == [("k3 s2", 1), ("k5 s2", 0)]
    assert [pt.name for pt in p.points] == ["k3 s1", "k5 s1"]


def test_infeasible_shape_reported_with_formula():
    # Kernel 7 with stride 2, no pooling: 28 -> 11 -> 3, and the third block has a 3x3 map.
    config = sweep(model={"blocks": 3, "kernel_size": 7, "stride": 2, "pooling": "none"},
                   grid={"depth": [4, 8]})
    p = plan(config)
    assert not p.points and len(p.infeasible) == 2
    reason = p.infeasible[0].reason
    assert reason.startswith("block3.conv (conv): input 4x3x3 collapses below 1x1")
    assert "(H + 2P - K) // S + 1 = (3 + 0 - 7) // 2 + 1 = -1" in reason
    assert p.infeasible[0].point.flops is None
    assert "Nothing to train" in p.summary()


def test_unseen_inputs_rule():
    # Stride 2 without padding: (28 - 3) % 2 = 1 row and column never seen by block 1.
    grid = {"stride": [1, 2], "padding": [0, "same"]}
    skip = plan(sweep(model={"blocks": 1}, grid=grid))
    assert [pt.name for pt in skip.points] == ["s1 p0", "s1 same", "s2 same"]
    (bad,) = skip.infeasible
    assert bad.point.name == "s2 p0"
    assert bad.reason == "block1.conv: stride (2, 2) leaves 1 row(s) and 1 column(s) of its 28x28 input unseen"
    allow = plan(sweep(model={"blocks": 1}, grid=grid, feasibility={"unseen_inputs": "allow"}))
    assert len(allow.points) == 4 and not allow.infeasible
    assert allow.points[2].unseen == (bad.reason,)


def test_pooling_leftovers_do_not_count_as_unseen():
    # 28 -> conv 3 -> 26 -> pool -> 13 -> conv 3 -> 11 -> pool drops the 11th row: the usual floor.
    p = plan(sweep(model={"blocks": 2, "kernel_size": 3, "padding": 0}))
    assert len(p.points) == 1 and not p.infeasible


# --- seeds, hashes ------------------------------------------------------------------------------------


def test_repeat_k_shares_its_seed_across_points():
    # Paired comparisons: repeat k of every point has the same seed (data order, initial weights),
    # the repeats of one point have distinct seeds.
    config = sweep(seed=3, repeats=3, grid={"kernel_size": [3, 5]})
    p = plan(config)
    assert len(p.trials) == 6
    assert [t.run_name for t in p.trials[:3]] == ["k3 #1", "k3 #2", "k3 #3"]
    seeds = [t.seed for t in p.trials]
    assert len(set(seeds)) == 3 and all(0 <= s < 2 ** 31 for s in seeds)
    assert seeds[:3] == seeds[3:]
    assert seeds == [trial_seed(3, t.repeat) for t in p.trials]
    assert seeds == [t.seed for t in plan(config).trials]
    assert seeds != [t.seed for t in plan(sweep(seed=4, repeats=3, grid={"kernel_size": [3, 5]})).trials]


def test_hash_is_pinned():
    # Changing the canonical form (or a default) changes every hash and orphans logged runs:
    # if this fails on purpose, say so in the changelog.
    (point, _) = plan(sweep(seed=42, grid={"kernel_size": [3, 5]})).points
    assert point.hash == "ec69108c57e2"
    assert point.hash == config_hash(point.config)
    assert plan(sweep(seed=42, grid={"kernel_size": [3, 5]})).trials[0].seed == 1357100747


def test_hash_ignores_yaml_key_order_and_spelling(tmp_path):
    a = tmp_path / "a.yaml"
    a.write_text("name: a\nseed: 1\nmodel:\n  depth: 4\n  stride: 1\ngrid:\n  kernel_size: [3, 5]\n"
                 "  pooling: [max, avg]\n")
    b = tmp_path / "b.yaml"
    b.write_text("grid:\n  pooling: [max, avg]\n  kernel_size: [[3, 3], 5]\nmodel:\n  stride: [1, 1]\n"
                 "  depth: 4\nseed: 1\nname: b\n")
    pa, pb = plan(load_sweep(a)), plan(load_sweep(b))
    assert [(pt.name, pt.hash) for pt in pa.points] == [(pt.name, pt.hash) for pt in pb.points]


def test_hash_ignores_data_path_only():
    base = {"source": "mnist", "path": "/a"}
    h = plan(sweep(data=base)).points[0].hash
    assert plan(sweep(data={**base, "path": "/b"})).points[0].hash == h
    assert plan(sweep(data={**base, "val_fraction": 0.2})).points[0].hash != h
    assert plan(sweep(data=base, seed=1)).points[0].hash != h


# --- done and pending --------------------------------------------------------------------------------------


def test_done_and_pending():
    config = sweep(repeats=2, grid={"kernel_size": [3, 5]})
    first = plan(config)
    finished = {first.trials[0].key: "run-a", first.trials[3].key: "run-b", ("0123456789ab", 0): "stale"}
    p = plan(config, finished=finished)
    assert [(d.trial.run_name, d.run_id) for d in p.done] == [("k3 #1", "run-a"), ("k5 #2", "run-b")]
    assert [t.run_name for t in p.pending] == ["k3 #2", "k5 #1"]
    assert p.unmatched == (("0123456789ab", 0),)
    text = p.summary()
    assert "4 trials: 2 done, 2 pending" in text and "run-a" in text and "match no trial" in text


# --- cost ----------------------------------------------------------------------------------------------


def test_cost_estimate():
    config = sweep(train={"epochs": 3}, resources={"cpus_per_trial": 2, "max_concurrent": 2},
                   grid={"kernel_size": [3, 5, 7]})
    p = plan(config, total_cpus=16)
    train, val, test = 5400, 600, 1000
    point = p.points[0]
    assert trial_flops(point, config) == point.flops * (3 * train * 3 + val * 3 + test)
    cost = p.cost
    seconds = {pt.hash: trial_flops(pt, config) / (RATE * EFFICIENCY * 2) for pt in p.points}
    assert cost.trial_seconds == pytest.approx(seconds)
    assert cost.cpu_seconds == pytest.approx(2 * sum(seconds.values()))
    assert cost.concurrency == 2  # max_concurrent, below the 8 slots of 16 CPUs
    longest = max(seconds.values())
    assert cost.wall_seconds == pytest.approx(max(longest, sum(seconds.values()) - longest))
    assert cost.pending_flops == pytest.approx(sum(trial_flops(pt, config) for pt in p.points))


def test_cost_of_float64_and_done_trials():
    config = sweep(grid={"dtype": ["float32", "float64"]})
    p = plan(config)
    f32, f64 = (p.cost.trial_seconds[pt.hash] for pt in p.points)
    assert f64 == pytest.approx(2 * f32)
    done = plan(config, finished={p.trials[1].key: "r"}, total_cpus=4)
    assert done.cost.cpu_seconds == pytest.approx(f32) and done.cost.concurrency == 1


def test_calibrated_efficiency_scales_the_estimate(monkeypatch, tmp_path):
    config = sweep(grid={"kernel_size": [3, 5]})
    default = plan(config).cost
    assert default.efficiency == EFFICIENCY and "not calibrated" in default.efficiency_source
    path = tmp_path / "calibration.json"
    path.write_text(json.dumps({"efficiency": EFFICIENCY * 4, "cpu": "test"}))
    monkeypatch.setenv(cost_module.CALIBRATION_ENV, str(path))
    calibrated_efficiency.cache_clear()
    measured = plan(config).cost
    assert measured.efficiency == EFFICIENCY * 4 and str(path) in measured.efficiency_source
    for h, seconds in default.trial_seconds.items():
        assert measured.trial_seconds[h] == pytest.approx(seconds / 4)
    assert "efficiency (measured by `make bench`" in plan(config).summary()
    for bad in ("{}", "not json", json.dumps({"efficiency": 0}), json.dumps({"efficiency": 3})):
        path.write_text(bad)
        calibrated_efficiency.cache_clear()
        assert calibrated_efficiency() == (EFFICIENCY, default.efficiency_source)


def test_longest_first_orders_by_estimated_cost():
    config = sweep(grid={"kernel_size": [3, 7, 5], "dtype": ["float32", "float64"]}, repeats=2)
    p = plan(config)
    ordered = longest_first(p.pending, config)
    seconds = [p.cost.trial_seconds[t.point.hash] for t in ordered]
    assert seconds == sorted(seconds, reverse=True) and len(ordered) == len(p.pending) == 12
    assert ordered[0].point.values == {"kernel_size": 7, "dtype": "float64"}
    # equal costs keep the plan's order: repeat 0 before repeat 1
    assert [t.repeat for t in ordered[:2]] == [0, 1]


def test_summary_lists_everything():
    text = example("lecture-grid").summary()
    assert "kernel_size (3) x depth (3) x stride (2) x padding (2) x pooling (3) = 108 points" in text
    assert "excluded 0, infeasible 27, feasible 81" in text
    assert "81 trials: 0 done, 81 pending" in text
    assert "Infeasible points (27):" in text and "k7 d4 s2 p0 max" in text
    assert "collapses below 1x1" in text and "input unseen" in text
    assert "Points to train (81):" in text and "k5 d16 s2 same l2" in text
    assert "Estimated cost of the pending trials" in text and "on 2 CPUs" in text


def test_measured_rate_is_positive():
    assert measure_flops_per_cpu() > 1e6
