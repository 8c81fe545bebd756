"""The cost model's efficiency, measured on this machine, and how far ``plan``'s ETA is from a real run.

    python -m benchmarks.calibrate [--quick] [--no-write] [--eta]

Efficiency (what :mod:`sweeper.plan.cost` multiplies the matmul rate by): train a few points of
the lecture's grid one at a time, in-process, one thread, no MLflow (``sweeper.trials.trial.execute``,
the code a worker runs), and divide each trial's FLOPs (``cost.trial_flops``) by its seconds times
the single-thread matmul rate as ``sweeper plan`` measures it (``cost.measure_flops_per_cpu``).
The median over the points is written to ``~/.cache/cnn-sweeper/calibration.json`` (or
``$CNN_SWEEPER_CALIBRATION``), which ``sweeper plan`` and the executor's estimates read.

ETA (``--eta``): ``sweeper plan``'s wall-time estimate of a grid against the execution phase of
the same grid run by the service (``sweeper.api.run`` on a local Ray, fresh SQLite store), before and
after calibration: error = estimate / measured - 1.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import yaml

from .machine import cpu_model

# Points of the lecture grid (kernel, depth, stride, padding, pooling): small and large layers.
POINTS = [(3, 8, 1, "same", "max"), (5, 16, 1, "same", "avg"), (7, 8, 1, 0, "l2"), (3, 16, 2, "same", "max"),
          (5, 8, 1, 0, "l2"), (7, 16, 1, "same", "avg")]
FULL = dict(points=POINTS, train_size=1200, epochs=1, eta_points=6, eta_epochs=2, eta_train=3000)
QUICK = dict(points=POINTS[:2], train_size=300, epochs=1, eta_points=4, eta_epochs=1, eta_train=600)


def grid_dict(name: str, points, train_size: int, epochs: int, uri: str | None = None) -> dict:
    """A sweep whose grid is exactly ``points`` (the lecture knobs), via ``exclude``-free listing."""
    ks = sorted({p[0] for p in points})
    return {"name": name, "seed": 0, "method": "grid",
            "data": {"source": "bundled", "train_size": train_size, "test_size": 500},
            "model": {"blocks": 2, "depth": 8, "depth_rule": "double", "dense": [64]},
            "train": {"epochs": epochs, "batch_size": 64},
            "grid": {"kernel_size": ks, "depth": [8, 16], "pooling": ["max", "avg", "l2"]},
            "resources": {"cpus_per_trial": 1}, **({"mlflow": {"tracking_uri": uri}} if uri else {})}


def _point_config(base, point):
    from sweeper.plan.points import resolve_point

    k, depth, stride, padding, pooling = point
    return resolve_point(base, {"kernel_size": k, "depth": depth, "stride": stride, "padding": padding,
                                "pooling": pooling})


def measure_efficiency(size: dict, log=print) -> dict:
    """Each point's FLOPs / (seconds x matmul rate), one trial at a time on one thread."""
    from sweeper.plan.cost import measure_flops_per_cpu, trial_flops
    from sweeper.plan.points import Trial
    from benchmarks.sweep import task_data
    from sweeper.trials.trial import TrialTask, execute
    from sweeper.spec.config import parse_sweep

    config = parse_sweep(grid_dict("calibrate", size["points"], size["train_size"], size["epochs"]) | {"grid": {}})
    rate = measure_flops_per_cpu()
    rows = []
    for point in size["points"]:
        p = _point_config(config, point)
        trial = Trial(p, 0, 0)
        task = TrialTask(trial)
        data = task_data(task)
        execute(task, data)  # the data and the buffers, before the clock
        seconds = statistics.median(execute(task, data).seconds for _ in range(2))
        flops = trial_flops(p, config)
        rows.append({"point": p.name, "flops": flops, "seconds": seconds, "efficiency": flops / seconds / rate})
        log(f"calibrate: {p.name:24s} {seconds:6.2f}s  efficiency {rows[-1]['efficiency']:.3f}")
    eff = statistics.median(r["efficiency"] for r in rows)
    log(f"calibrate: matmul {rate / 1e9:.1f} GFLOP/s per CPU; efficiency median {eff:.3f} "
        f"(range {min(r['efficiency'] for r in rows):.3f}-{max(r['efficiency'] for r in rows):.3f})")
    return {"efficiency": eff, "flops_per_cpu": rate, "points": rows}


def write_calibration(res: dict, path: str | None = None) -> Path:
    from sweeper.plan.cost import calibrated_efficiency, calibration_path

    path = Path(path or calibration_path())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"efficiency": res["efficiency"], "flops_per_cpu": res["flops_per_cpu"],
                                "cpu": cpu_model(), "date": datetime.datetime.now(datetime.timezone.utc)
                                .isoformat(timespec="seconds"), "points": res["points"]}, indent=2) + "\n")
    calibrated_efficiency.cache_clear()
    return path


def eta_check(size: dict, efficiency: float, log=print) -> dict:
    """``plan``'s ETA (default and calibrated efficiency) against the service's measured wall time."""
    import ray

    from sweeper import api
    from sweeper.plan import cost
    from sweeper.plan.points import make_plan
    from sweeper.spec.config import load_sweep

    with tempfile.TemporaryDirectory(prefix="eta") as tmp:
        uri = f"sqlite:///{tmp}/mlflow.db"
        d = grid_dict("eta-check", [], size["eta_train"], size["eta_epochs"], uri)
        d["grid"] = {"kernel_size": [3, 5, 7], "pooling": ["max", "l2"]} if size["eta_points"] >= 6 else \
            {"kernel_size": [3, 5], "pooling": ["max", "l2"]}
        path = Path(tmp) / "eta.yaml"
        path.write_text(yaml.safe_dump(d, sort_keys=False))
        cpus = len(os.sched_getaffinity(0))
        plan = make_plan(load_sweep(path), {}, total_cpus=cpus)
        calibrated = plan.cost.wall_seconds * plan.cost.efficiency / efficiency
        default = plan.cost.wall_seconds * plan.cost.efficiency / cost.EFFICIENCY
        ray.init(address="local", num_cpus=cpus, include_dashboard=False, logging_level="ERROR",
                 log_to_driver=False, configure_logging=False, _temp_dir=f"{tmp}/ray")
        try:
            began = time.perf_counter()
            result = api.run(path).result
            call = time.perf_counter() - began
        finally:
            ray.shutdown()
    measured = result.wall_seconds
    res = {"trials": len(plan.trials), "cpus": cpus, "measured_wall_s": measured, "call_s": call,
           "eta_calibrated_s": calibrated, "eta_default_s": default,
           "error_calibrated": calibrated / measured - 1, "error_default": default / measured - 1,
           "exit_code": result.exit_code}
    log(f"eta: {len(plan.trials)} trials on {cpus} CPUs: measured {measured:.1f}s; plan said {calibrated:.1f}s "
        f"calibrated ({100 * res['error_calibrated']:+.0f}%), {default:.1f}s with the default "
        f"{cost.EFFICIENCY} ({100 * res['error_default']:+.0f}%)")
    return res


def run(quick: bool = False, write: bool = True, eta: bool = True, log=print) -> dict:
    import threadpoolctl

    size = dict(QUICK if quick else FULL)
    with threadpoolctl.threadpool_limits(1):
        res = measure_efficiency(size, log)
    if write and not quick:  # a quick run's few small trials would be a poor calibration
        res["written_to"] = str(write_calibration(res))
        log(f"calibrate: wrote {res['written_to']}")
    if eta:
        res["eta"] = eta_check(size, res["efficiency"], log)
    return res


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.calibrate", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--eta", action="store_true", help="also run a grid to compare plan's ETA with its wall time")
    args = parser.parse_args(argv)
    run(args.quick, not args.no_write, args.eta)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
