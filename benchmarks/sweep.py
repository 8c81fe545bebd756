"""Sweep efficiency: a grid of equal trials run by the sweep service on all CPUs.

Three wall times of the same N trials (grid points that differ only in a learning rate, which
changes no cost) on C CPUs, one trial per CPU:

* ideal  ``N * T1 / C``: T1 is one trial alone, in-process, one BLAS thread, no MLflow (median);
* pool   plain processes, one per CPU, data loaded before the clock starts, no Ray, no MLflow:
         what the hardware gives when every CPU trains (shared caches, memory bandwidth, SMT);
* W      ``sweeper.app.service.run`` (the Python API) on a fresh local Ray (its workers start cold, as in a
         ``sweeper run``), into an MLflow SQLite store: ``SweepResult.wall_seconds``, the
         execution phase (planning and the parent run excluded; they take ~0.3 s).

The whole measurement is repeated (``rounds``) and medians reported: this machine's speed drifts.

efficiency = ideal / W (the issue's measure), and (sum of the trials' own times / C) / W (what
``sweeper run`` prints); overhead per trial = (W * C - N * T1) / N, split with the trials' profiles
into idle CPU time (before the first trial, between trials, after the last) and time inside the
trials that was not training (MLflow writes, the data load, slower training next to a busy CPU).
"""
from __future__ import annotations

import functools
import json
import logging
import multiprocessing
import os
import statistics
import tempfile
import time
from pathlib import Path

import yaml

# A trial: ~4 s alone. Rounds: the whole measurement (T1, the pool, the service, T1 again) is
# repeated and the medians reported, because this machine's speed drifts by 20-30% over a minute.
FULL = dict(train_size=6000, epochs=5, depth=8, trials_per_cpu=4, t1_reps=4, rounds=5)
QUICK = dict(train_size=600, epochs=2, depth=4, trials_per_cpu=2, t1_reps=2, rounds=1)
TARGET_EFFICIENCY, TARGET_OVERHEAD_S = 0.9, 0.3
NAME = "bench-sweep"
#: Recorder methods as timed by ``sweeper.trials.trial.execute`` (handing records to the driver), then the epoch
#: checkpoint's file and the early-stopping coordinator's round trips.
MLFLOW = ("start", "finished_elsewhere", "load_checkpoint", "describe", "log_epoch", "save_checkpoint",
          "finish", "fail")
RECORDING = MLFLOW + ("write_checkpoint", "report")


def sweep_dict(size: dict, n: int, uri: str, name: str = NAME) -> dict:
    return {"name": name, "seed": 0, "method": "grid",
            "data": {"source": "bundled", "train_size": size["train_size"], "test_size": 1000},
            "model": {"blocks": 2, "depth": size["depth"], "padding": "same", "dense": [64]},
            "train": {"epochs": size["epochs"], "batch_size": 64},
            "grid": {"learning_rate": [round(0.001 + 0.00001 * i, 6) for i in range(n)]},
            "resources": {"cpus_per_trial": 1}, "mlflow": {"tracking_uri": uri}}


def _tasks(path: Path) -> list:
    from sweeper.spec.config import load_sweep
    from sweeper.plan.points import make_plan
    from sweeper.trials.trial import TrialTask

    plan = make_plan(load_sweep(path), {})
    return [TrialTask(t, profile=True) for t in plan.trials]


@functools.lru_cache(maxsize=2)
def _prepared(data_json: str, seed: int, classes: int):
    from sweeper.plan.data import prepare_data

    return prepare_data(json.loads(data_json), seed, classes)


def task_data(task):
    """The prepared data of ``task``'s sweep, read once per process (as a sweep's driver does)."""
    config = task.config
    return _prepared(json.dumps(config["data"], sort_keys=True), config["seed"], config["model"]["classes"])


def single_trials(task, reps: int, warmup: bool = True) -> list[dict]:
    """One trial in-process with no MLflow, ``reps`` times: profiles with ``seconds``.

    A first run loads the data (then cached) and is not counted.
    """
    from sweeper.trials.trial import execute

    data = task_data(task)
    if warmup:
        execute(task, data)
    return [{**o.profile, "seconds": o.seconds} for o in (execute(task, data) for _ in range(reps))]


def _pool_worker(tasks, barrier, queue) -> None:
    from sweeper.trials.trial import execute

    data = task_data(tasks[0])  # the data, and every import, before the clock starts
    barrier.wait()
    began = time.time()
    times = [execute(task, data).seconds for task in tasks]
    queue.put((began, time.time(), times))


def plain_pool(tasks: list, cpus: int) -> dict:
    """The same trials on ``cpus`` plain processes (round-robin), started together."""
    ctx = multiprocessing.get_context("spawn")
    barrier, queue = ctx.Barrier(cpus), ctx.Queue()
    procs = [ctx.Process(target=_pool_worker, args=(tasks[i::cpus], barrier, queue)) for i in range(cpus)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=1800) for _ in procs]
    for p in procs:
        p.join()
    wall = max(r[1] for r in results) - min(r[0] for r in results)
    times = [t for r in results for t in r[2]]
    return {"wall_seconds": wall, "trial_seconds": times, "median_trial_seconds": statistics.median(times)}


def _ensure_ray(folder: Path, cpus: int | None) -> bool:
    """A private local Ray (its own temp folder, never another cluster's); reuse one already up."""
    import ray

    if ray.is_initialized():
        return False
    ray.init(address="local", num_cpus=cpus or len(os.sched_getaffinity(0)), include_dashboard=False,
             logging_level="ERROR", log_to_driver=False, configure_logging=False, _temp_dir=str(folder / "ray"))
    return True


def _idle(rows: list, cpus: int, start: float, end: float) -> float:
    """CPU-seconds with no trial running in [start, end] (at most ``cpus`` trials run at once)."""
    events = sorted([(r["started_at"], 1) for r in rows] + [(r["ended_at"], -1) for r in rows])
    idle, busy, t = 0.0, 0, start
    for when, step in events + [(end, 0)]:
        when = min(max(when, start), end)
        idle += max(0, cpus - busy) * (when - t)
        busy, t = busy + step, when
    return idle


def breakdown(result, alone: list[dict], end_wall: float) -> dict:
    """Where ``W * C - N * T1`` CPU-seconds went, per trial.

    Idle CPUs: from the start of the execution phase until C trials have started (``head``: the
    first runs' creation, worker start and imports), from then until the last trial started
    (``between``), and after it (``tail``: the last round's imbalance and the final bookkeeping).
    Busy but not training: recording calls inside the trials (handing messages to the driver, or
    MLflow calls where a worker records itself), the data load (once per process), and the rest
    (``slowdown``: trials running slower than alone, next to the other CPU's trial and the
    driver's MLflow writes, Ray and SQLite on the same CPUs). Each part is net of what the same part took in the
    trials alone (``alone``: their profiles; e.g. they write checkpoint files too).
    """
    rows = [r for r in result.timeline if "started_at" in r and "ended_at" in r]
    n, cpus, wall = len(rows), result.cpus, result.wall_seconds
    start_wall = end_wall - wall
    starts = sorted(r["started_at"] for r in rows)
    full, last = starts[min(cpus, n) - 1], starts[-1]
    base = {k: statistics.median(a.get(k, 0.0) for a in alone) for k in RECORDING + ("data", "seconds")}
    inside = {k: sum(r.get(k, 0.0) for r in rows) - n * base[k] for k in RECORDING}
    data = sum(r.get("data", 0.0) for r in rows) - n * base["data"]
    trial_sum = sum(r["seconds"] for r in rows)
    ideal_trial = base["seconds"]
    per = {"idle_head": _idle(rows, cpus, start_wall, full), "idle_between": _idle(rows, cpus, full, last),
           "idle_tail": _idle(rows, cpus, last, end_wall), "data_load": data,
           **{f"mlflow_{k}": inside[k] for k in MLFLOW if inside[k]},
           "checkpoint_file": inside["write_checkpoint"], "coordinator": inside["report"],
           "slowdown": trial_sum - n * ideal_trial - sum(inside.values()) - data}
    per = {k: v / n for k, v in per.items()}
    by_pid: dict = {}
    for r in sorted(rows, key=lambda r: r["started_at"]):
        by_pid.setdefault(r["pid"], []).append(r)
    first = [runs[0] for runs in by_pid.values()]
    later = [r for runs in by_pid.values() for r in runs[1:]]

    def med(values):
        values = list(values)
        return statistics.median(values) if values else None

    return {
        "per_trial": per,
        "total_per_trial": sum(per.values()),
        "worker_processes": len(by_pid),
        # The first trial of a worker process loads the data (then cached); later ones do not.
        "data_first_s": med(r.get("data", 0.0) for r in first),
        "recording_later_s": med(sum(r.get(k, 0.0) for k in RECORDING) for r in later),
        # From submission to the trial's first line, for the first trial of each worker process.
        "start_latency_first_s": med(r["started_at"] - r["submitted_at"] for r in first if "submitted_at" in r),
        "collect_latency_s": med(r["collected_at"] - r["ended_at"] for r in rows if "collected_at" in r),
        "create_run_s": med(r["create_run"] for r in rows if "create_run" in r),
        "alone_recording_s": sum(base[k] for k in RECORDING),
        "driver_seconds": dict(result.driver),
    }


def run(quick: bool = False, folder: Path | str | None = None, cpus: int | None = None,
        tracking_uri: str | None = None, log=print) -> dict:
    """Measure and return the sweep section (see the module's docstring)."""
    size = dict(QUICK if quick else FULL)
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="sweepbench", dir=folder) as tmp:
        tmp = Path(tmp)
        if tracking_uri is None:  # a fresh store: ~20 s of migrations, before any clock runs
            from mlflow import MlflowClient

            began = time.perf_counter()
            tracking_uri = f"sqlite:///{tmp}/mlflow.db"
            MlflowClient(tracking_uri).search_experiments()
            log(f"sweep: fresh MLflow store in {time.perf_counter() - began:.1f}s (not timed)")
        rounds = []
        for _ in range(size.get("rounds", 1)):
            # A Ray of its own for every round, as every `sweeper run` has: worker processes start
            # cold (imports, data), as they do for a user. A Ray already up is used as it is.
            started_ray = _ensure_ray(tmp, cpus)
            try:
                import ray

                cpus = int(ray.cluster_resources().get("CPU", 1))
                n = size["trials_per_cpu"] * cpus
                rounds.append(_round(size, cpus, n, tmp, tracking_uri, log))
            finally:
                if started_ray:
                    import ray

                    ray.shutdown()
    return combine(rounds, log)


def _round(size, cpus, n, tmp: Path, tracking_uri: str, log) -> dict:
    """One measurement: T1 (half before, half after), the plain pool, then the service."""
    from sweeper import api

    name = f"{NAME}-{int(time.time() * 1000)}"  # the store holds the earlier rounds' runs
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(sweep_dict(size, n, tracking_uri, name), sort_keys=False))
    tasks = _tasks(path)
    half = max(1, size["t1_reps"] // 2)
    alone = single_trials(tasks[0], half)
    log(f"sweep: one trial alone {statistics.median(a['seconds'] for a in alone):.2f}s; "
        f"plain pool of {n} on {cpus} CPU(s) ...")
    pool = plain_pool(tasks, cpus)
    log(f"sweep: plain pool {pool['wall_seconds']:.2f}s; the service on Ray + MLflow ...")
    began = time.perf_counter()
    os.environ["SWEEPER_PROFILE"] = "1"  # the trials time their phases (TrialTask.profile)
    try:
        result = api.run(path, tracking_uri=tracking_uri).result
    finally:
        del os.environ["SWEEPER_PROFILE"]
    end_wall, call = time.time(), time.perf_counter() - began
    alone += single_trials(tasks[0], size["t1_reps"] - half, warmup=False)  # before and after: drift
    if result.exit_code != 0:
        raise RuntimeError(f"the benchmark sweep failed: {result.message} {result.failures}")
    return summarise(size, cpus, n, alone, pool, result, end_wall, call, log)


ROUND_KEYS = ("T1", "ideal_wall_seconds", "wall_seconds", "efficiency", "efficiency_own_times", "pool_efficiency",
              "overhead_per_trial", "service_over_pool_per_trial")


def combine(rounds: list[dict], log) -> dict:
    """The round with the median efficiency, in full, with every round's figures and their medians."""
    ordered = sorted(rounds, key=lambda r: r["efficiency"])
    res = dict(ordered[(len(ordered) - 1) // 2])
    res["rounds"] = [{k: r[k] for k in ROUND_KEYS} | {"plain_pool_seconds": r["plain_pool"]["wall_seconds"]}
                     for r in rounds]
    res["medians"] = {k: statistics.median(r[k] for r in rounds) for k in ROUND_KEYS}
    # The headline figures are the medians over the rounds (each round's efficiency uses its own T1).
    for key in ("efficiency", "efficiency_own_times", "pool_efficiency", "overhead_per_trial",
                "service_over_pool_per_trial"):
        res[key] = res["medians"][key]
    res["targets"] = {"efficiency_ok": res["efficiency"] >= TARGET_EFFICIENCY,
                      "overhead_ok": res["overhead_per_trial"] < TARGET_OVERHEAD_S}
    if len(rounds) > 1:
        log(f"sweep: medians of {len(rounds)} rounds: efficiency {res['efficiency']:.0%}, "
            f"overhead {res['overhead_per_trial']:.2f}s/trial")
    return res


def summarise(size, cpus, n, alone, pool, result, end_wall, call, log) -> dict:
    t1 = [a["seconds"] for a in alone]
    T1, W = statistics.median(t1), result.wall_seconds
    ideal = n * T1 / cpus
    res = {
        "config": size, "cpus": cpus, "trials": n, "single_trial_seconds": t1, "T1": T1,
        "single_trial_profiles": alone,
        "ideal_wall_seconds": ideal, "plain_pool": pool, "wall_seconds": W,
        # The whole sweeper.api.run call: W plus planning, the store's searches and the parent run.
        "call_seconds": call,
        "trial_seconds": result.trial_seconds,
        "efficiency": ideal / W,
        "efficiency_own_times": sum(result.trial_seconds) / cpus / W,
        "pool_efficiency": ideal / pool["wall_seconds"],
        # What Ray and MLflow add over plain processes: the service against the pool, per trial.
        "service_over_pool_per_trial": (W - pool["wall_seconds"]) * cpus / n,
        "overhead_per_trial": (W * cpus - n * T1) / n,
        "breakdown": breakdown(result, alone, end_wall),
        "timeline": result.timeline,
    }
    b = res["breakdown"]
    # Fixed per worker process (imports, MLflow client, data) against the cost of every trial,
    # both as Ray and MLflow add them (net of the trial alone): how the overhead scales with k
    # trials per CPU, and the k from which the overhead target would hold (if the steady part allows).
    fixed = sum(b[k] or 0 for k in ("data_first_s", "start_latency_first_s"))
    # Every trial: its MLflow calls, the gap before it, and its run's creation (the driver shares the CPUs).
    steady = (max(0.0, (b["recording_later_s"] or 0) - b["alone_recording_s"]) + b["per_trial"]["idle_between"]
              + (b["create_run_s"] or 0))
    k = fixed / (TARGET_OVERHEAD_S - steady) if steady < TARGET_OVERHEAD_S else None
    res["amortised"] = {"fixed_per_worker_s": fixed, "steady_per_trial_s": steady, "trials_per_cpu_for_target": k}
    res["targets"] = {"efficiency_ok": res["efficiency"] >= TARGET_EFFICIENCY,
                      "overhead_ok": res["overhead_per_trial"] < TARGET_OVERHEAD_S}
    log(f"sweep: {n} trials on {cpus} CPU(s): T1 {T1:.2f}s, ideal {ideal:.1f}s, pool {pool['wall_seconds']:.1f}s, "
        f"service {W:.1f}s (call {call:.1f}s); efficiency {res['efficiency']:.0%} "
        f"(own times {res['efficiency_own_times']:.0%}), overhead {res['overhead_per_trial']:.2f}s/trial")
    return res
