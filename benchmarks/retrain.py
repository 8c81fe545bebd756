"""Retrain one point of a sweep with several seeds: the spread of its test accuracy.

    python -m benchmarks.retrain SWEEP_FILE --store URI [--seeds 3] [--parallel 2] [--json FILE]
    python -m benchmarks.retrain SWEEP_FILE --set FIELD=VALUE ... [--seeds 3] ...

The point is the sweep's chosen one (``--store``: the tracking store the sweep ran in; chosen by
its selection rule on validation, as ``sweeper report`` does, and its resolved settings read from
the chosen run's ``config.json``), or the file's base settings with ``--set`` values. Each seed
is ``sweeper train FILE --repeat r`` (one point, one thread, no Ray or MLflow) on a copy of the
file with those settings and without grid or early stopping, ``--parallel`` at once: repeat 0 has
the sweep's own seed, so it trains exactly the sweep's trial again; repeats 1, 2, ... are new
seeds (initial weights, data order, augmentation, dropout masks). Printed: every seed's final
validation and test accuracy and time, and the mean, standard deviation and range.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

from . import report

FINAL = re.compile(r"^final: .*test_accuracy ([0-9.]+)", re.M)
EPOCH = re.compile(r"^epoch (\d+): .*val_accuracy ([0-9.]+)", re.M)


def chosen_settings(sweep: dict, uri: str) -> tuple[dict, str]:
    """``({"model": ..., "train": ...}, point name)`` of the sweep's chosen point in store ``uri``."""
    from ledger import fetch_artifact, load_parent, load_runs, rank_points

    name = sweep["name"]
    runs = load_runs(uri, name)
    parent = load_parent(uri, name)
    ranked = rank_points(runs, parent["selection"]) if parent else rank_points(runs)
    if ranked.empty:
        raise SystemExit(f"{uri}: sweep {name!r} has no finished trial with a validation metric")
    point = ranked.index[0]
    done = runs[(runs["point"] == point) & (runs["status"] == "FINISHED")].sort_values("repeat")
    with tempfile.TemporaryDirectory() as tmp:
        path = fetch_artifact(uri, done["run_id"].iloc[0], "config.json", tmp)
        if path is None:
            raise SystemExit(f"run {done['run_id'].iloc[0]} has no config.json")
        config = json.loads(path.read_text())
    return {"model": config["model"], "train": config["train"]}, str(ranked["point_name"].iloc[0])


def point_file(file: str, folder: Path, settings: dict | None = None, assignments=()) -> Path:
    """A copy of the sweep file for one point: ``settings`` replace its model and train sections
    (``--set FIELD=VALUE`` go into whichever holds the field), no grid, no early stopping."""
    from sweeper.spec.config import GRID_SECTIONS
    from sweeper.spec.yamlsource import load_yaml, parse_value

    data, _ = load_yaml(file)
    data = {k: v for k, v in data.items() if k not in ("grid", "exclude", "early_stopping", "samples")}
    data["method"] = "grid"
    for section, values in (settings or {}).items():
        data[section] = dict(values)
    for item in assignments:
        key, _, text = item.partition("=")
        if key.strip() not in GRID_SECTIONS:
            raise SystemExit(f"--set {item}: {key!r} is not a model or train field")
        data.setdefault(GRID_SECTIONS[key.strip()], {})[key.strip()] = parse_value(text)
    path = folder / "point.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _train(path: Path, repeat: int, cwd: str, log) -> dict:
    started = time.perf_counter()
    command = [sys.executable, "-m", "sweeper.app.cli", "train", str(path), "--repeat", str(repeat)]
    proc = subprocess.run(command, capture_output=True, text=True, cwd=cwd, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    seconds = time.perf_counter() - started
    final, epochs = FINAL.search(proc.stdout), EPOCH.findall(proc.stdout)
    if proc.returncode or not final:
        raise SystemExit(f"repeat {repeat} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    out = {"repeat": repeat, "test_accuracy": float(final.group(1)), "epochs": int(epochs[-1][0]) if epochs else 0,
           "val_accuracy": float(epochs[-1][1]) if epochs else float("nan"), "seconds": seconds,
           "seed_line": proc.stdout.splitlines()[0]}
    log(f"  repeat {repeat}: test {out['test_accuracy']:.4f}, val {out['val_accuracy']:.4f} after {out['epochs']} "
        f"epochs, {seconds / 60:.1f} min ({out['seed_line']})")
    return out


def run(file: str, store: str | None = None, assignments=(), seeds: int = 3, parallel: int = 2, log=print) -> dict:
    from sweeper.spec.yamlsource import load_yaml

    sweep, _ = load_yaml(file)
    settings, name = chosen_settings(sweep, store) if store else (None, "the file's settings with --set values")
    load = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        path = point_file(file, Path(tmp), settings, assignments)
        log(f"retraining {name} of {file}, {seeds} seeds, {parallel} at a time (load average {load[0]:.1f})")
        with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
            runs = list(pool.map(lambda r: _train(path, r, os.getcwd(), log), range(seeds)))
        point = yaml.safe_load(path.read_text())
    tests = [r["test_accuracy"] for r in runs]
    res = {"file": file, "point": name, "settings": {k: point.get(k) for k in ("model", "train")}, "runs": runs,
           "mean": statistics.fmean(tests), "sd": statistics.stdev(tests) if len(tests) > 1 else 0.0,
           "min": min(tests), "max": max(tests), "load_average": [load, list(os.getloadavg())]}
    log(summary(res))
    return res


def summary(res: dict) -> str:
    return (f"test accuracy over {len(res['runs'])} seeds: mean {res['mean']:.4f}, sd {res['sd']:.4f}, "
            f"range {res['min']:.4f}-{res['max']:.4f}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.retrain", description=__doc__.splitlines()[0])
    parser.add_argument("file", help="the sweep file")
    parser.add_argument("--store", default=None, help="tracking URI of the sweep's runs: retrain its chosen point")
    parser.add_argument("--set", dest="assignments", action="append", default=[], metavar="FIELD=VALUE",
                        help="without --store: a model or train field of the point (repeatable)")
    parser.add_argument("--seeds", type=int, default=3, help="repeats to train (default 3)")
    parser.add_argument("--parallel", type=int, default=2, help="trainings at once (default 2)")
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args(argv)
    res = run(args.file, args.store, args.assignments, args.seeds, args.parallel)
    if args.json:
        report.write_json(res, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
