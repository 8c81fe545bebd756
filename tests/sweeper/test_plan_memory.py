"""The plan's memory estimate per trial: close to a measured peak, and points beyond a worker refused."""
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

import cnn
from sweeper.plan.memory import BASE_BYTES, parse_bytes, trial_memory, worker_memory
from sweeper.plan.points import make_plan
from sweeper.spec.config import load_sweep

REPO = Path(__file__).resolve().parents[2]


def test_estimate_is_close_to_a_measured_step(record_figure):
    plan = make_plan(load_sweep(REPO / "sweeps" / "quickstart.yaml"), flops_per_cpu=1e9)
    ratios = []
    for point in plan.points[::2]:
        train = point.config["train"]
        model, opt = cnn.Model(point.spec, dtype=train["dtype"]), cnn.Adam(1e-3)
        x = np.random.default_rng(0).random((train["batch_size"], *point.spec.input_shape), dtype=np.float32)
        tracemalloc.start()
        try:
            for _ in range(2):
                y = model.forward(x)
                model.backward(np.ones_like(y))
                opt.step(model)
            model.forward(np.zeros((1000, *point.spec.input_shape), np.float32))
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        ratios.append((trial_memory(point, (0, 0, 0)) - BASE_BYTES) / peak)
    # The autotune tries and picks algorithms by timing, so the peak varies from run to run.
    assert all(0.9 <= r <= 2.5 for r in ratios), ratios
    record_figure(f"memory per trial: estimate / traced peak of two steps and an evaluation batch = "
                  f"{min(ratios):.2f}-{max(ratios):.2f} on {len(ratios)} quickstart points")


def test_points_beyond_the_sweep_files_worker_memory_are_infeasible_with_both_numbers(monkeypatch):
    quickstart = REPO / "sweeps" / "quickstart.yaml"
    plan = make_plan(load_sweep(quickstart, ["resources.worker_memory=150M"]), flops_per_cpu=1e9)
    assert plan.infeasible and len(plan.points) + len(plan.infeasible) == 6
    reason = plan.infeasible[0].reason
    assert "GiB of memory per trial" in reason and "more than the 150 MiB a worker has" in reason
    assert len(make_plan(load_sweep(quickstart, ["resources.worker_memory=8G"]), flops_per_cpu=1e9).points) == 6


def test_the_plan_is_the_same_on_every_machine_and_the_run_checks_its_workers(monkeypatch):
    """The machine (or SWEEPER_WORKER_MEMORY) never changes the plan; the run leaves out, by name,
    the trials its own workers cannot hold."""
    from sweeper.app.service import too_big_here

    quickstart = load_sweep(REPO / "sweeps" / "quickstart.yaml")
    monkeypatch.setenv("SWEEPER_WORKER_MEMORY", "150M")
    plan = make_plan(quickstart, flops_per_cpu=1e9)
    assert not plan.infeasible and len(plan.points) == 6
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    too_big = too_big_here(plan, None)
    assert len(too_big) == 6 and all("150 MiB a worker has (SWEEPER_WORKER_MEMORY=150M)" in r for r in too_big.values())
    monkeypatch.setenv("SWEEPER_WORKER_MEMORY", "8G")
    assert worker_memory()[0] == 8 * 2 ** 30 and too_big_here(plan, None) == {}
    monkeypatch.delenv("SWEEPER_WORKER_MEMORY")
    assert too_big_here(plan, "10.0.0.5:6379") == {}  # a cluster's workers: only the file or the variable says


@pytest.mark.parametrize("text, expected", [("8G", 8 * 2 ** 30), ("512MiB", 512 * 2 ** 20), ("1000", 1000),
                                            ("1.5g", int(1.5 * 2 ** 30))])
def test_parse_bytes(text, expected):
    assert parse_bytes(text) == expected


@pytest.mark.parametrize("text", ["", "x", "-1G", "nanG", "infG"])
def test_parse_bytes_refuses(text):
    with pytest.raises(ValueError):
        parse_bytes(text)
