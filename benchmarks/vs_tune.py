"""End to end against what a user would pick instead: the same grid by ``sweeper run`` and by Ray
Tune with a PyTorch trainable logging to MLflow, alternated, each a fresh process as a user runs it.

    python -m benchmarks.vs_tune [--quick] [--repeats 3]

The grid (full: 12 points of the lecture's grid, kernel 3/5/7 x depth 8/16 x pooling max/l2, two
conv blocks, "same" padding, a 64-unit dense layer) on the bundled MNIST subset. Both sides get:
the same train/validation/test images (``sweeper.trials.trial.datasets``), the same initial weights
(the PyTorch net is :func:`benchmarks.archs.torch_twin` of the ``cnn.Model`` the trial's seed
builds), the same batch order (epoch ``e`` shuffles with ``default_rng([seed, e])``, as
``cnn.fit``), Adam at 1e-3, batch 64, float32, one thread per trial, one trial per CPU, and a
fresh MLflow SQLite store (migrated before the clock). Tune logs through ``MLflowLoggerCallback``
(params and per-epoch metrics; no artifacts), the sweeper its whole record (params, metrics,
checkpoints, model, kernels picture).

Measured per side, medians over the repeats: wall time of the whole command (Ray start to exit),
CPU time of its whole process tree (the benchmark is the children's subreaper, so Ray's daemons
and workers are reaped and counted), per-trial overhead ``(wall x CPUs - sum of the trials' own
training seconds) / trials`` and the final test accuracies. Target (issue 11): the sweeper 1.3x
faster end to end or more, at equal accuracy within the repeats' noise.
"""
from __future__ import annotations

import ctypes
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from . import report

FULL = dict(grid={"kernel_size": [3, 5, 7], "depth": [8, 16], "pooling": ["max", "l2"]},
            train_size=1200, epochs=1, repeats=3)
QUICK = dict(grid={"kernel_size": [3, 5]}, train_size=600, epochs=1, repeats=1, sides=("sweeper", "tune"))
TARGET_SPEEDUP = 1.3
#: ``tune``: Tune's defaults (a fresh worker process per function trial); ``tune_reuse``:
#: ``reuse_actors=True``, what a user who knows Tune would set for short trials.
SIDES = ("sweeper", "tune", "tune_reuse")
NAME = "vs-tune"


def sweep_dict(size: dict, uri: str, name: str = NAME) -> dict:
    return {"name": name, "seed": 0, "method": "grid",
            "data": {"source": "bundled", "train_size": size["train_size"], "test_size": None},
            "model": {"blocks": 2, "depth": 8, "depth_rule": "double", "kernel_size": 3, "stride": 1,
                      "padding": "same", "pooling": "max", "dense": [64]},
            "train": {"epochs": size["epochs"], "batch_size": 64, "optimizer": "adam", "learning_rate": 0.001},
            "grid": size["grid"], "resources": {"cpus_per_trial": 1}, "mlflow": {"tracking_uri": uri}}


# -- the Ray Tune side: a PyTorch trainable, as a user would write it -------------------------------

def torch_trainable(config: dict) -> None:
    """One trial: the point's network in PyTorch, trained like ``cnn.fit``, reported to Tune."""
    import numpy as np
    import torch
    from ray import tune

    import cnn
    from benchmarks.archs import torch_twin
    from sweeper.trials.trial import datasets

    torch.set_num_threads(1)
    config = config["trial"]  # one entry of the grid search: the point's resolved config, seed, spec
    point, seed, epochs = config["point"], config["seed"], config["point"]["train"]["epochs"]
    data = datasets(point)
    model = cnn.Model(cnn.ModelSpec.from_dict(config["spec"]), seed=seed, normalizer=data.normalizer)
    net = torch_twin(model)
    # The same standardised float32 images the NumPy model trains on (cnn.Model.prepare).
    train, val, test = ((d and cnn.Dataset(model.prepare(d.x), d.y)) for d in (data.train, data.val, data.test))
    opt = torch.optim.Adam(net.parameters(), lr=point["train"]["learning_rate"])
    batch = point["train"]["batch_size"]
    xs, ys = torch.from_numpy(np.ascontiguousarray(train.x)), torch.from_numpy(train.y.astype(np.int64))

    def evaluate(data):
        with torch.no_grad():
            logits = net(torch.from_numpy(np.ascontiguousarray(data.x)))
            y = torch.from_numpy(data.y.astype(np.int64))
            return float(torch.nn.functional.cross_entropy(logits, y)), float((logits.argmax(1) == y).float().mean())

    began = time.perf_counter()
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        order = torch.from_numpy(np.random.default_rng([seed, epoch]).permutation(len(ys)))
        loss_sum, correct = 0.0, 0
        for i in range(0, len(ys), batch):
            idx = order[i:i + batch]
            xb, yb = xs[idx], ys[idx]
            opt.zero_grad(set_to_none=True)
            logits = net(xb)
            loss = torch.nn.functional.cross_entropy(logits, yb)
            loss.backward()
            opt.step()
            loss_sum += loss.item() * len(idx)
            correct += int((logits.argmax(1) == yb).sum())
        metrics = {"train_loss": loss_sum / len(ys), "train_accuracy": correct / len(ys)}
        metrics["val_loss"], metrics["val_accuracy"] = evaluate(val)
        metrics["epoch_seconds"] = time.perf_counter() - t0
        if epoch < epochs:
            tune.report(metrics)
    train_seconds = time.perf_counter() - began
    metrics["test_loss"], metrics["test_accuracy"] = evaluate(test)
    tune.report({**metrics, "train_seconds": train_seconds})


def tune_main(path: str, uri: str, storage: str, reuse: str = "default") -> int:
    """``python -m benchmarks.vs_tune --tune-child FILE URI DIR [reuse]``: the grid of ``FILE`` by Ray Tune.

    ``reuse``: Tune's ``reuse_actors=True`` (a worker process trains several trials, as the
    sweeper's do); by default every function trial gets a fresh process.
    """
    import ray
    from ray import tune
    from ray.air.integrations.mlflow import MLflowLoggerCallback

    from sweeper.plan.points import make_plan
    from sweeper.spec.config import load_sweep

    config = load_sweep(path)
    plan = make_plan(config, {}, flops_per_cpu=1e9)
    trials = [{"point": t.point.config, "seed": t.seed, "spec": t.point.spec.to_dict(), "name": t.run_name}
              for t in plan.trials]
    cpus = len(os.sched_getaffinity(0))
    ray.init(address="local", num_cpus=cpus, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    try:
        tuner = tune.Tuner(
            tune.with_resources(torch_trainable, {"cpu": 1}),
            param_space={"trial": tune.grid_search(trials)},
            tune_config=tune.TuneConfig(max_concurrent_trials=cpus, reuse_actors=True if reuse == "reuse" else None),
            run_config=tune.RunConfig(name=config.name, storage_path=storage, verbose=0,
                                      callbacks=[MLflowLoggerCallback(tracking_uri=uri, experiment_name=config.name,
                                                                      save_artifact=False)]),
        )
        results = tuner.fit()
    finally:
        ray.shutdown()
    errors = [r.error for r in results if r.error]
    print(f"tune: {len(results)} trials, {len(errors)} errors")
    return 1 if errors else 0


# -- measuring a command and its whole process tree -------------------------------------------------

def _subreaper() -> None:
    """Become the subreaper of our descendants: orphaned Ray processes are reparented to us, so their
    CPU time lands in RUSAGE_CHILDREN when we reap them."""
    PR_SET_CHILD_SUBREAPER = 36
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def _reap(deadline_s: float) -> int:
    """Reap every descendant (waiting up to ``deadline_s``; then SIGKILL what is left). Returns how many."""
    reaped, end = 0, time.monotonic() + deadline_s
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return reaped
        if pid:
            reaped += 1
            continue
        if time.monotonic() > end:
            for child in _children():
                try:
                    os.kill(child, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            end = time.monotonic() + 5
        time.sleep(0.05)


def _children() -> list[int]:
    me = os.getpid()
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    if int(fh.read().rsplit(")", 1)[1].split()[1]) == me:
                        out.append(int(entry))
            except (OSError, IndexError, ValueError):
                pass
    return out


def timed_tree(argv: list[str], env: dict, log_path: Path) -> dict:
    """Wall time from launch to exit, and CPU seconds of the whole tree (reaped within 20 s after)."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.perf_counter()
    with open(log_path, "w") as log:
        code = subprocess.call(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
    wall = time.perf_counter() - began
    lingering = _reap(20)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": wall, "cpu_s": cpu, "exit_code": code, "reaped_after_exit": lingering}


def _trial_metrics(uri: str, name: str) -> list[dict]:
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(name)
    runs = client.search_runs([exp.experiment_id], "attributes.status = 'FINISHED'", max_results=5000)
    return [{"test_accuracy": r.data.metrics["test_accuracy"], "train_seconds": r.data.metrics["train_seconds"]}
            for r in runs if "test_accuracy" in r.data.metrics and "train_seconds" in r.data.metrics]


def one_run(side: str, size: dict, folder: Path, template: Path, index: int) -> dict:
    work = folder / f"{side}-{index}"
    work.mkdir()
    db = work / "mlflow.db"
    shutil.copy(template, db)
    uri = f"sqlite:///{db}"
    path = work / f"{NAME}.yaml"
    path.write_text(yaml.safe_dump(sweep_dict(size, uri), sort_keys=False))
    ray_tmp = Path(tempfile.mkdtemp(prefix=f"vt{side[0]}", dir="/tmp"))
    env = {**os.environ, "RAY_ADDRESS": "local", "RAY_TMPDIR": str(ray_tmp), "MLFLOW_TRACKING_URI": uri,
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")])}
    if side == "sweeper":
        argv = [sys.executable, "-m", "sweeper", "run", str(path), "-q"]
    else:
        argv = [sys.executable, "-m", "benchmarks.vs_tune", "--tune-child", str(path), uri, str(work / "tune"),
                "reuse" if side == "tune_reuse" else "default"]
    res = timed_tree(argv, env, work / "output.txt")
    shutil.rmtree(ray_tmp, ignore_errors=True)
    trials = _trial_metrics(uri, NAME)
    n, cpus = len(trials), len(os.sched_getaffinity(0))
    res.update(side=side, trials=n, cpus=cpus,
               train_seconds=sum(t["train_seconds"] for t in trials),
               accuracies=sorted(t["test_accuracy"] for t in trials),
               mean_accuracy=statistics.fmean(t["test_accuracy"] for t in trials) if trials else float("nan"))
    res["overhead_per_trial_s"] = (res["wall_s"] * cpus - res["train_seconds"]) / n if n else float("nan")
    if res["exit_code"] != 0 or n == 0:
        res["output_tail"] = (work / "output.txt").read_text()[-3000:]
    return res


def _template(folder: Path) -> Path:
    """An empty, migrated MLflow SQLite store: copies of it skip the ~20 s of migrations per run."""
    from mlflow import MlflowClient

    path = folder / "template.db"
    MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


def run(quick: bool = False, repeats: int | None = None, log=print) -> dict:
    import logging

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    size = dict(QUICK if quick else FULL)
    repeats = repeats or size["repeats"]
    _subreaper()
    sides = size.get("sides", SIDES)
    rows = {side: [] for side in sides}
    with tempfile.TemporaryDirectory(prefix="vs-tune") as tmp:
        folder = Path(tmp)
        template = _template(folder)
        for i in range(repeats):
            for side in (sides if i % 2 == 0 else sides[::-1]):
                r = one_run(side, size, folder, template, i)
                rows[side].append(r)
                log(f"vs-tune: round {i + 1} {side:10s}: wall {r['wall_s']:6.1f}s, CPU {r['cpu_s']:6.1f}s, "
                    f"{r['trials']} trials, train {r['train_seconds']:.1f}s, overhead {r['overhead_per_trial_s']:.2f}s/trial, "
                    f"mean test accuracy {r['mean_accuracy']:.4f}, exit {r['exit_code']}"
                    + (f"\n{r.get('output_tail', '')}" if "output_tail" in r else ""))
    return summarise(size, rows, log)


def summarise(size: dict, rows: dict, log) -> dict:
    """Medians per side; the speedup against the faster Tune setting; accuracy gaps and noise."""
    keys = ("wall_s", "cpu_s", "train_seconds", "overhead_per_trial_s", "mean_accuracy")
    med = {side: {k: statistics.median(r[k] for r in rs) for k in keys} for side, rs in rows.items() if rs}
    tunes = [side for side in med if side != "sweeper"]
    best = min(tunes, key=lambda side: med[side]["wall_s"])
    speedup = med[best]["wall_s"] / med["sweeper"]["wall_s"]
    # Same data, initial weights and batches on both sides: per point the test accuracies differ
    # only by float32 rounding. Noise: the spread of the sweeper's mean accuracy over repeats.
    pairs = [(a, b) for ra, rb in zip(rows["sweeper"], rows[best]) for a, b in zip(ra["accuracies"], rb["accuracies"])]
    means = [r["mean_accuracy"] for r in rows["sweeper"]]
    res = {"config": size, "rounds": rows, "medians": med, "compared_with": best, "speedup": speedup,
           "speedups": {side: med[side]["wall_s"] / med["sweeper"]["wall_s"] for side in tunes},
           "cpu_ratio": med[best]["cpu_s"] / med["sweeper"]["cpu_s"],
           "accuracy_gap": med["sweeper"]["mean_accuracy"] - med[best]["mean_accuracy"],
           "max_abs_accuracy_diff_sorted": max((abs(a - b) for a, b in pairs), default=float("nan")),
           "accuracy_noise": (max(means) - min(means)) if len(means) > 1 else None,
           "target_speedup": TARGET_SPEEDUP, "speedup_ok": speedup >= TARGET_SPEEDUP,
           "trials": rows["sweeper"][0]["trials"], "load_average_end": list(os.getloadavg())}
    for side in med:
        m = med[side]
        log(f"vs-tune: {side:10s} median of {len(rows[side])}: wall {m['wall_s']:6.1f}s, CPU {m['cpu_s']:6.1f}s, "
            f"overhead {m['overhead_per_trial_s']:.2f}s/trial, mean test accuracy {m['mean_accuracy']:.4f}")
    log(f"vs-tune: sweeper {speedup:.2f}x faster than {best} (target >= {TARGET_SPEEDUP}x: "
        f"{'met' if res['speedup_ok'] else 'missed'} by {speedup - TARGET_SPEEDUP:+.2f}x); accuracy gap "
        f"{res['accuracy_gap']:+.4f}")
    return res


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--tune-child"]:
        return tune_main(*argv[1:5])
    return report.section_main("vs_tune", __doc__, run, argv, [("--repeats", dict(type=int, default=None))])


if __name__ == "__main__":
    raise SystemExit(main())
