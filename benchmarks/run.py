"""Run every benchmark and write ``latest.json`` and ``latest.md``.

    python -m benchmarks.run [--quick] [--out benchmarks/results] [--threads N] [--sections kernels,sweep,...]

``--quick`` is the CI smoke run: two small architectures, a tiny batch, a few seconds; its numbers
say the code runs, not how fast. Both frameworks get the same thread count: threadpoolctl limits
NumPy's BLAS, ``torch.set_num_threads`` limits PyTorch.

Sections: ``kernels`` (NumPy against PyTorch: throughput, the algorithm each convolution chose and
the autotune's cost, convolution rates, memory, the step against its FLOP limit; 1 thread unless
``--threads``; see benchmarks/kernels.py), ``kernels2`` (the same at 2 threads, but memory), ``sweep`` (a grid of equal trials through the
sweep service on all CPUs; see benchmarks/sweep.py), ``vs_tune`` (the same grid by ``sweeper run``
and by Ray Tune + PyTorch + MLflow), ``bookkeeping`` (500 one-second trials with full logging),
``ledger`` (plan, status, resume, report on an experiment of 10,000 runs; ``--ledger-uri`` reuses a
store that holds them), ``calibrate`` (the cost model's efficiency on this machine, written to
``~/.cache/cnn-sweeper/calibration.json``, and plan's ETA against a measured grid), ``paging``
(a worker's epoch and peak RSS reading shared CIFAR-sized data directly and paged) and ``colour``
(the same network trained by the core and by PyTorch on colour images in CIFAR-10's format, 3 seeds
each: test accuracies, the verdict, epoch times; ``--cifar FOLDER`` for real CIFAR-10 files, else a
generated set; see benchmarks/colour.py), ``search`` (best validation accuracy after N trials for the
samplers random, sobol, tpe and Optuna's own TPE on one real objective, median over 5 seeds; see
benchmarks/search.py) and ``driver_scale`` (how far one driver scales: sleeping trials
on far more logical CPUs than cores, full logging to an MLflow server; completions and metric writes
per second, the driver's CPU and memory per 1000 trials, the largest cluster kept 90% busy for 10 s,
1 min and 10 min trials; see benchmarks/driver_scale.py). The sections on
Ray start their own local Ray and fresh MLflow stores; ``--threads`` does not apply to them.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

import cnn

from . import (archs, bookkeeping, calibrate, colour, driver_scale, kernels, ledger_scale, machine, paging, report,
               search, sweep, vs_tune)

FULL = dict(quick=False, archs=tuple(archs.GRID), batches=(64, 128), reps=7, warmup=2, target_s=0.3,
            layer_batch=64, layer_reps=7, matmul_size=1024)
QUICK = dict(quick=True, archs=archs.QUICK, batches=(8,), reps=3, warmup=1, target_s=0.01,
             layer_batch=8, layer_reps=2, matmul_size=256)

SECTIONS = ("kernels", "kernels2", "sweep", "vs_tune", "bookkeeping", "ledger", "calibrate", "paging", "colour",
            "search", "driver_scale")
LEDGER_RUNS = {False: 10000, True: 20}


#: The results' keys each section writes (besides its targets).
KEYS = {"kernels": ("matmul", "throughput", "autotune", "layers", "conv_rate", "memory", "threads"),
        **{s: (s,) for s in SECTIONS if s != "kernels"}}


def run(quick: bool = False, out: Path | str = "benchmarks/results", threads: int | None = None,
        log=print, sections=SECTIONS, tracking_uri: str | None = None, ledger_uri: str | None = None,
        ledger_runs: int | None = None, cifar: str | None = None, merge: bool = False) -> dict:
    """Run ``sections`` and write them (only them, or with ``merge`` into the other sections of
    the existing results) to ``out``/latest.{json,md}.

    ``tracking_uri``: an existing MLflow store for the sweep section (tests pass theirs to skip
    the migrations of a fresh one); by default a fresh SQLite store in a temporary folder.
    """
    import threadpoolctl

    unknown = set(sections) - set(SECTIONS)
    if unknown:
        raise ValueError(f"unknown section(s) {sorted(unknown)}; choose from {SECTIONS}")
    config = dict(QUICK if quick else FULL)
    threads = threads or 1  # the kernels' figures are per thread; kernels2 gives 2 threads
    with threadpoolctl.threadpool_limits(limits=threads, user_api="blas"):  # report the BLAS as the kernels run it
        info = machine.machine_info(threads)
    res = {"machine": info,
           "config": {k: list(v) if isinstance(v, tuple) else v for k, v in config.items()},
           "sections": [s for s in SECTIONS if s in sections], "targets": {}}
    if "kernels" in sections:
        res.update(kernels.run(config, threads, log))
        res["targets"].update(kernels.targets(res))
    if "kernels2" in sections:
        res["kernels2"] = kernels.run(config, 2, log, with_memory=False)
        res["targets"].update(kernels.targets(res["kernels2"], prefix="threads2_"))
    if "sweep" in sections:
        res["sweep"] = sweep.run(quick, tracking_uri=tracking_uri, log=log)
        res["targets"].update(sweep_efficiency=res["sweep"]["efficiency"],
                              sweep_efficiency_ok=res["sweep"]["targets"]["efficiency_ok"],
                              sweep_overhead_per_trial=res["sweep"]["overhead_per_trial"],
                              sweep_overhead_ok=res["sweep"]["targets"]["overhead_ok"])
    if "calibrate" in sections:  # before the others on Ray: they then plan with this machine's efficiency
        res["calibrate"] = calibrate.run(quick, write=not quick, eta=not quick, log=log)
        if "eta" in res["calibrate"]:
            res["targets"].update(eta_error=res["calibrate"]["eta"]["error_calibrated"])
    if "vs_tune" in sections:
        res["vs_tune"] = vs_tune.run(quick, log=log)
        res["targets"].update(vs_tune_speedup=res["vs_tune"]["speedup"], vs_tune_ok=res["vs_tune"]["speedup_ok"])
    if "bookkeeping" in sections:
        res["bookkeeping"] = bookkeeping.run(quick, log=log)
        res["targets"].update(bookkeeping_efficiency=res["bookkeeping"]["efficiency"],
                              bookkeeping_ok=res["bookkeeping"]["efficiency_ok"])
    if "ledger" in sections:
        res["ledger"] = ledger_scale.run(ledger_runs or LEDGER_RUNS[quick], ledger_uri, log=log)
        res["targets"].update({f"ledger_{k}_ok": v["met"] for k, v in res["ledger"]["commands"].items()})
    if "paging" in sections:
        res["paging"] = paging.run(quick, log=log)
        res["targets"].update(paging_time_ratio=res["paging"]["time_ratio"])
    if "colour" in sections:
        res["colour"] = colour.run(quick, cifar=cifar, log=log)
        res["targets"].update(colour_within_noise=res["colour"]["within_noise"],
                              colour_time_ratio=res["colour"]["time_ratio"])
    if "search" in sections:
        res["search"] = search.run(quick, log=log)
        res["targets"].update(search_tpe_vs_random=res["search"]["tpe_vs_random"],
                              search_tpe_vs_optuna=res["search"]["tpe_vs_optuna"])
    if "driver_scale" in sections:
        res["driver_scale"] = driver_scale.run(quick, log=log)
        res["targets"].update({f"driver_scale_busy90_{k.replace(' ', '')}": v
                               for k, v in res["driver_scale"]["busy90_slots"].items()})
    res["machine"]["load_average_end"] = list(os.getloadavg())
    if merge:
        res = merged(res, Path(out) / "latest.json")
    js, md = report.write(res, Path(out))
    log(f"wrote {js} and {md}")
    return res


def merged(res: dict, path: Path) -> dict:
    """``res`` laid over the sections of the results in ``path`` that it did not run; the machine
    line then names both runs (each table carries its own CPU line)."""
    import json

    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError):
        return res
    kept = [s for s in old.get("sections", []) if s not in res["sections"]]
    if not kept:
        return res
    out = {k: v for k, v in old.items() if any(k in KEYS[s] for s in kept)}
    out.update(res)
    out["sections"] = [s for s in SECTIONS if s in kept or s in res["sections"]]
    out["targets"] = {**{k: v for k, v in old.get("targets", {}).items() if not _owned(k, res["sections"])},
                      **res["targets"]}
    previous = old.get("machine", {})
    out["machine"]["note"] = (f"Sections {', '.join(res['sections'])} from this run; {', '.join(kept)} kept from "
                              f"the run of {previous.get('date', '?')}: " + previous.get("note", "").strip())
    return out


def _owned(target: str, sections) -> bool:
    """Whether a target belongs to one of ``sections`` (kernels' are unprefixed, kernels2's ``threads2_``)."""
    if target.startswith("threads2_"):
        return "kernels2" in sections
    kernel = any(target.startswith(p) for p in ("throughput", "conv_rate", "autotune", "memory"))
    return ("kernels" in sections) if kernel else any(target.startswith(s) for s in sections)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run (CI): seconds for the kernels, about half a minute for the sweep")
    parser.add_argument("--out", default="benchmarks/results", help="folder for latest.json and latest.md")
    parser.add_argument("--threads", type=int, default=None, help="threads for both frameworks (default: 1)")
    parser.add_argument("--ledger-uri", default=None,
                        help="a store that already holds the ledger section's runs (see benchmarks/ledger_scale.py)")
    parser.add_argument("--ledger-runs", type=int, default=None, help="runs in the ledger section (default 10000)")
    parser.add_argument("--cifar", default=None,
                        help="colour section: a folder of CIFAR-10 binary files (default: a generated set)")
    parser.add_argument("--sections", default=",".join(SECTIONS),
                        help=f"comma-separated sections to run (default: all): {', '.join(SECTIONS)}")
    parser.add_argument("--merge", action="store_true",
                        help="keep the other sections of the existing latest.json (their figures and notes)")
    args = parser.parse_args(argv)
    if args.threads is not None and args.threads < 1:
        parser.error("--threads must be >= 1")
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    if not sections or set(sections) - set(SECTIONS):
        parser.error(f"--sections: choose from {', '.join(SECTIONS)}")
    run(args.quick, args.out, args.threads, sections=sections, ledger_uri=args.ledger_uri, ledger_runs=args.ledger_runs,
        cifar=args.cifar, merge=args.merge)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
