"""How far one driver scales: a sweep whose trials sleep, on far more logical CPUs than cores, with
full logging through an MLflow tracking server; what the driver sustains, and from that the largest
cluster one driver keeps 90% busy.

    python -m benchmarks.driver_scale [--quick] [--trials N] [--cpus C] [--trial-seconds T] [--epochs E]

The trials are real ``sweeper`` trials (the driver, the relay of records, checkpoints between
epochs, the final model and its picture, every per-epoch metric) whose training is replaced, in the
Ray workers only, by a sleep of ``T / E`` per epoch reporting made-up metrics (Ray's
``worker_process_setup_hook`` swaps ``cnn.fit``/``cnn.evaluate``: see :func:`sleeping_trials`). Ray
is started with ``--num-cpus C`` (64 by default) on this 2-core machine, so the trials cost no CPU
and the driver (and the MLflow server) is what sets the pace. The store is a lean MLflow server
(1 worker) on a SQLite backend in a temporary folder (PostgreSQL is not installed here).

Figures:

    completions/s     N / W                 (W: first submission to last result, the sweep's own clock)
    metric writes/s   metric values logged per second (per-epoch metrics x epochs x N, plus finals) / W
    efficiency        N x T / C / W         (1 = every slot busy all the time)
    driver CPU, RSS   the driver process's CPU seconds per 1000 trials; its peak RSS and growth
    90%-busy size     S = R x T / 0.9 trial slots for trials of T = 10 s, 1 min, 10 min, R the
                      completions/s measured with the slots saturated (a cluster of S slots asks
                      S / T completions per second; the driver gives R)
"""
from __future__ import annotations

import logging
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml

from . import report

FULL = dict(trials=300, cpus=64, trial_seconds=2.0, epochs=5)
QUICK = dict(trials=16, cpus=16, trial_seconds=1.0, epochs=2)
TRIAL_LENGTHS = {"10 s": 10.0, "1 min": 60.0, "10 min": 600.0}
BUSY = 0.9
#: Metrics logged per epoch by a trial (sweeper.trials.trial: train/val loss and accuracy, lr, seconds).
PER_EPOCH = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "learning_rate", "epoch_seconds")


def sleeping_trials() -> None:
    """Ray's worker_process_setup_hook: in this worker, ``cnn.fit`` sleeps ``DRIVER_SCALE_EPOCH_S``
    per epoch and reports made-up metrics through the callbacks; ``cnn.evaluate`` answers at once."""
    import cnn
    from cnn.train import EpochReport, FitResult

    per_epoch = float(os.environ["DRIVER_SCALE_EPOCH_S"])

    def fit(model, optimizer, train, val=None, *, epochs, callbacks=(), start_epoch=1, history=None, **_):
        history = list(history or [])
        for epoch in range(start_epoch, epochs + 1):
            time.sleep(per_epoch)
            metrics = {"train_loss": 1.0 / epoch, "train_accuracy": 0.5, "val_loss": 1.0 / epoch,
                       "val_accuracy": 0.5 + 0.01 * epoch, "learning_rate": 0.01, "seconds": per_epoch}
            history.append(metrics)
            if any(cb(EpochReport(epoch, metrics, model, optimizer, history)) for cb in callbacks):
                return FitResult(history, True, epoch)
        return FitResult(history, False, epochs)

    cnn.fit = fit
    cnn.evaluate = lambda model, data, batch_size=1000: (0.5, 0.5)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _mlflow_server(folder: Path) -> tuple[subprocess.Popen, str]:
    """A lean MLflow server (1 worker, no job execution) on a SQLite store in ``folder``."""
    port = _free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"  # no "View run" line per run
    mlflow = str(Path(sys.executable).parent / "mlflow")
    proc = subprocess.Popen([mlflow, "server", "--backend-store-uri", f"sqlite:///{folder}/mlflow.db",
                             "--artifacts-destination", str(folder / "artifacts"), "--serve-artifacts",
                             "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                            env=env, stdout=open(folder / "mlflow.log", "w"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=3):
                return proc, uri
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(1)
    proc.kill()
    raise RuntimeError(f"the MLflow server did not start: {(folder / 'mlflow.log').read_text()[-2000:]}")


def _stop(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, 9)
        except ProcessLookupError:
            pass


def _sweep(n: int, epochs: int, uri: str) -> dict:
    return {"name": "driver-scale", "seed": 0, "method": "grid",
            "data": {"source": "bundled", "train_size": 200, "test_size": 100},
            "model": {"blocks": 1, "depth": 2, "padding": "same", "dense": [8]},
            "train": {"epochs": epochs, "batch_size": 64},
            "grid": {"learning_rate": [round(0.001 + 0.00001 * i, 6) for i in range(n)]},
            "resources": {"cpus_per_trial": 1}, "mlflow": {"tracking_uri": uri}}


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) of ``pid`` and its live descendants (the MLflow server's workers)."""
    tick = os.sysconf("SC_CLK_TCK")
    children: dict[int, list[int]] = {}
    stats: dict[int, list[str]] = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            stats[int(proc.name)] = fields
            children.setdefault(int(fields[1]), []).append(int(proc.name))
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        if p in stats:
            total += (int(stats[p][11]) + int(stats[p][12])) / tick
        todo += children.get(p, [])
    return total


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run(quick: bool = False, trials: int | None = None, cpus: int | None = None, trial_seconds: float | None = None,
        epochs: int | None = None, log=print) -> dict:
    os.environ.setdefault("RAY_AUTH_MODE", "token")  # read when Ray is imported; Ray's default for a local cluster
    import ray

    from sweeper import api

    size = dict(QUICK if quick else FULL)
    n, c = trials or size["trials"], cpus or size["cpus"]
    t, e = trial_seconds or size["trial_seconds"], epochs or size["epochs"]
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    folder = Path(tempfile.mkdtemp(prefix="driver-scale-"))
    server, uri = _mlflow_server(folder)
    try:
        path = folder / "driver-scale.yaml"
        path.write_text(yaml.safe_dump(_sweep(n, e, uri), sort_keys=False))
        ray.init(address="local", num_cpus=c, include_dashboard=False, logging_level="ERROR", log_to_driver=False,
                 configure_logging=False, _temp_dir=str(folder / "ray"),
                 runtime_env={"worker_process_setup_hook": "benchmarks.driver_scale.sleeping_trials",
                              "env_vars": {"DRIVER_SCALE_EPOCH_S": str(t / e),
                                           "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}})
        try:
            log(f"driver_scale: {n} trials of {t:.1f}s ({e} epochs) on {c} logical CPUs "
                f"({os.cpu_count()} cores), MLflow server {uri} on SQLite ...")
            rss0, cpu0, server0, began = _rss_mib(), _cpu(), _tree_cpu(server.pid), time.perf_counter()
            result = api.run(path, tracking_uri=uri).result
            call, driver_cpu = time.perf_counter() - began, _cpu() - cpu0
            server_cpu = _tree_cpu(server.pid) - server0
            rss1 = _rss_mib()
        finally:
            ray.shutdown()
    finally:
        _stop(server)
        shutil.rmtree(folder, ignore_errors=True)
    if result.exit_code != 0:
        raise RuntimeError(f"the driver-scale sweep failed: {result.message}")
    wall = result.wall_seconds
    rate = n / wall
    writes = n * (e * len(PER_EPOCH) + 5)  # + the final test_loss, test_accuracy, train_seconds, epochs_run, peak_rss
    res = {"trials": n, "cpus": c, "cores": os.cpu_count(), "trial_s": t, "epochs": e, "store": "MLflow server, SQLite",
           "wall_s": wall, "call_s": call, "ideal_wall_s": n * t / c, "efficiency": n * t / c / wall,
           "completions_per_s": rate, "metric_writes_per_s": writes / wall,
           "driver_cpu_s": driver_cpu, "driver_cpu_s_per_1000": 1000 * driver_cpu / n,
           "driver_cpu_share": driver_cpu / call, "server_cpu_s_per_1000": 1000 * server_cpu / n,
           "server_cpu_share": server_cpu / call, "driver_rss_mib": rss1,
           "driver_rss_growth_mib_per_1000": 1000 * (rss1 - rss0) / n,
           "driver_peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
           "busy": BUSY, "load_average_end": list(os.getloadavg())}
    res["saturated"] = c / t > rate  # slots asked more completions per second than the driver gave
    res["busy90_slots"] = {label: int(rate * length / BUSY) for label, length in TRIAL_LENGTHS.items()}
    log(f"driver_scale: {n} trials in {wall:.0f}s (ideal {res['ideal_wall_s']:.0f}s): {rate:.2f} completions/s, "
        f"{res['metric_writes_per_s']:.0f} metric writes/s, efficiency {res['efficiency']:.0%}; driver CPU "
        f"{res['driver_cpu_s_per_1000']:.0f}s per 1000 trials ({res['driver_cpu_share']:.0%} of a core), MLflow server CPU {res['server_cpu_s_per_1000']:.0f}s per 1000 "
        f"({res['server_cpu_share']:.0%} of a core), driver RSS "
        f"{rss1:.0f} MiB (+{res['driver_rss_growth_mib_per_1000']:.0f} MiB per 1000 trials)")
    log("driver_scale: largest cluster one driver keeps 90% busy: "
        + ", ".join(f"{k} trials {v} slots" for k, v in res["busy90_slots"].items())
        + ("" if res["saturated"] else " (NOT saturated: the slots, not the driver, set this rate; a lower bound)"))
    return res


def markdown(res: dict) -> list[str]:
    """The section's lines for latest.md."""
    b = res["busy90_slots"]
    return ["## One driver's scale: sleeping trials, full logging to an MLflow server", "", f"{res['trials']} sleeping trials of {res['trial_s']:.1f}s ({res['epochs']} epochs) on {res['cpus']} logical "
            f"CPUs ({res['cores']} cores), {res['store']}: {res['completions_per_s']:.2f} completions/s, "
            f"{res['metric_writes_per_s']:.0f} metric writes/s, efficiency {res['efficiency']:.0%}; driver CPU "
            f"{res['driver_cpu_s_per_1000']:.0f}s and RSS growth {res['driver_rss_growth_mib_per_1000']:.0f} MiB per "
            f"1000 trials; 90% busy: **{b['10 s']} / {b['1 min']} / {b['10 min']} slots** for 10 s / 1 min / 10 min "
            f"trials" + ("" if res["saturated"] else " (the slots were not saturated: lower bounds)") + ".", ""]


def main(argv=None) -> int:
    return report.section_main("driver_scale", __doc__, run, argv,
                               [("--trials", dict(type=int, default=None)), ("--cpus", dict(type=int, default=None)),
                                ("--trial-seconds", dict(type=float, default=None, dest="trial_seconds")),
                                ("--epochs", dict(type=int, default=None))])


if __name__ == "__main__":
    raise SystemExit(main())
