"""Run every benchmark and write ``latest.json`` and ``latest.md``.

    python -m benchmarks.run [--quick] [--out benchmarks/results] [--threads N] [--sections kernels,sweep,...]

``--quick`` is the CI smoke run: two small architectures, a tiny batch, a few seconds; its numbers
say the code runs, not how fast. Both frameworks get the same thread count: threadpoolctl limits
NumPy's BLAS, ``torch.set_num_threads`` limits PyTorch.

Sections: ``kernels`` (NumPy against PyTorch: throughput, layers, convolution rate, memory, the
step against its FLOP limit; 1 thread unless ``--threads``), ``kernels2`` (the convolution rates
and the step's FLOP fraction again at 2 threads), ``sweep`` (a grid of equal trials through the
sweep service on all CPUs; see benchmarks/sweep.py), ``vs_tune`` (the same grid by ``sweeper run``
and by Ray Tune + PyTorch + MLflow), ``bookkeeping`` (500 one-second trials with full logging),
``ledger`` (plan, status, resume, report on an experiment of 10,000 runs; ``--ledger-uri`` reuses a
store that holds them), ``calibrate`` (the cost model's efficiency on this machine, written to
``~/.cache/cnn-sweeper/calibration.json``, and plan's ETA against a measured grid), ``paging``
(a worker's epoch and peak RSS reading shared CIFAR-sized data directly and paged) and ``colour``
(the same network trained by the core and by PyTorch on colour images in CIFAR-10's format, 3 seeds
each: test accuracies, the verdict, epoch times; ``--cifar FOLDER`` for real CIFAR-10 files, else a
generated set; see benchmarks/colour.py). The sections on
Ray start their own local Ray and fresh MLflow stores; ``--threads`` does not apply to them.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

import cnn

from . import (archs, bookkeeping, calibrate, colour, convrate, layers, ledger_scale, machine, matmul, memory, paging,
               report, sweep, vs_tune)
from .steps import numpy_trainer, random_batch, torch_trainer
from .timing import alternate, geomean, median

FULL = dict(quick=False, archs=tuple(archs.GRID), batches=(64, 128), reps=7, warmup=2, target_s=0.3,
            layer_batch=64, layer_reps=7, matmul_size=1024)
QUICK = dict(quick=True, archs=archs.QUICK, batches=(8,), reps=3, warmup=1, target_s=0.01,
             layer_batch=8, layer_reps=2, matmul_size=256)

TARGET_RATIO, TARGET_MIN_RATIO, TARGET_CONV, TARGET_MEMORY = 0.5, 0.3, 0.6, 1.5
SECTIONS = ("kernels", "kernels2", "sweep", "vs_tune", "bookkeeping", "ledger", "calibrate", "paging", "colour")
LEDGER_RUNS = {False: 10000, True: 20}


def throughput(config: dict, log) -> dict:
    import torch
    rows = []
    for name in config["archs"]:
        spec = archs.spec_for(name)
        for n in config["batches"]:
            model = cnn.Model(spec, seed=0)
            net = archs.torch_twin(model)
            x, y = random_batch(n)
            with torch.no_grad():  # the twin is the same function: checked before timing it
                diff = float(np.abs(model.forward(x) - net(torch.from_numpy(x)).numpy()).max())
            np_step, torch_step = numpy_trainer(model), torch_trainer(net)
            samples = alternate({"numpy": lambda: np_step(x, y), "torch": lambda: torch_step(x, y)},
                                config["reps"], config["warmup"], config["target_s"])
            a, b = n / median(samples["numpy"]), n / median(samples["torch"])
            rows.append({"arch": name, "batch": n, "numpy_images_per_s": a, "torch_images_per_s": b,
                         "ratio": a / b, "max_logit_diff": diff,
                         "numpy_step_s": samples["numpy"], "torch_step_s": samples["torch"]})
            log(f"{name:22s} batch {n:4d}: numpy {a:8.0f} img/s  torch {b:8.0f} img/s  ratio {a / b:.2f}")
    ratios = [r["ratio"] for r in rows]
    worst = min(rows, key=lambda r: r["ratio"])
    summary = {"geomean_ratio": geomean(ratios), "min_ratio": worst["ratio"],
               "min_arch": f"{worst['arch']} @ {worst['batch']}"}
    for n in config["batches"]:
        summary[f"geomean_ratio_batch{n}"] = geomean(r["ratio"] for r in rows if r["batch"] == n)
    return {"rows": rows, "summary": summary}


def layer_profiles(config: dict, peak: float | None = None) -> dict:
    """Each layer's times; with ``peak``, the whole step against its FLOP limit: step FLOPs
    (3 x forward, less the first convolution's input gradient) / matmul rate, over the step's time."""
    n = config["layer_batch"]
    x, y = random_batch(n)
    out = {}
    for name in config["archs"]:
        model = cnn.Model(archs.spec_for(name), seed=0)
        prof = layers.profile_layers(model, x, y, config["layer_reps"])
        infos = cnn.infer_shapes(archs.spec_for(name))
        first = next(i for i in infos if i.name.endswith(".conv"))
        prof["step_flops"] = n * (3 * sum(i.flops for i in infos) - first.flops)
        if peak:
            prof["step_limit_s"] = prof["step_flops"] / peak
            prof["step_fraction_of_limit"] = prof["step_limit_s"] / prof["step_s"]
        out[name] = prof
    return {"batch": n, "archs": out}


def conv_rates(config: dict, profiles: dict, peak: float) -> dict:
    """Each conv layer's rate; ``fraction_of_peak`` is measured alternated with the matmul
    (benchmarks/convrate.py), the other columns against the one ``peak`` of the run."""
    n, rows = profiles["batch"], []
    alternated = {(r["arch"], r["layer"]): r for r in convrate.alternated_fractions(
        list(profiles["archs"]), n, reps=config["layer_reps"], size=min(512, config["matmul_size"]),
        target_s=config["target_s"])}
    for name, prof in profiles["archs"].items():
        infos = {i.name: i for i in cnn.infer_shapes(archs.spec_for(name))}
        for row in prof["layers"]:
            if "flops_per_s" not in row:
                continue
            info = infos[row["layer"]]
            (oh, ow), k = info.out_shape[1:], info.config["kernel_size"]
            matched = matmul.conv_rate(n * oh * ow, info.in_shape[0] * k[0] * k[1], info.out_shape[0],
                                       with_dx=row["computes_dx"], reps=3,
                                       target_s=config["target_s"])
            copies = copy_times(info, n, row["computes_dx"], config)
            layer_s = row["flops"] / row["flops_per_s"]
            rows.append({"arch": name, "layer": row["layer"], "in_channels": row["in_channels"],
                         "out_channels": row["out_channels"], "gflops": row["flops_per_s"] / 1e9,
                         "fraction_of_peak": alternated[name, row["layer"]]["fraction"],
                         "fraction_range": [alternated[name, row["layer"]]["fraction_min"],
                                            alternated[name, row["layer"]]["fraction_max"]],
                         "fraction_of_peak_once": row["flops_per_s"] / peak, "matched_gflops": matched / 1e9,
                         "matched_fraction_of_peak": matched / peak, "layer_ms": 1e3 * layer_s,
                         "matmul_ms": 1e3 * row["flops"] / matched, **{f"{k}_ms": 1e3 * v for k, v in copies.items()},
                         "copies_share": sum(copies.values()) / layer_s,
                         "target_applies": row["in_channels"] >= 8})
    return {"batch": n, "rows": rows}


def copy_times(info, n: int, with_dx: bool, config: dict) -> dict:
    """Seconds of the layer's im2col copy and (when it computes dx) its col2im scatter, alone."""
    from cnn.im2col import col2im_t, im2col_t

    c, h, w = info.in_shape
    x = np.random.default_rng(0).random((c, h, w, n), dtype=np.float32).transpose(3, 0, 1, 2)  # batch-last
    k, s, pad = (tuple(info.config[key]) for key in ("kernel_size", "stride", "padding"))  # resolved by infer_shapes
    out_hw = tuple(info.out_shape[1:])
    cols = im2col_t(x, k, s, pad, out_hw)
    fns = {"im2col": lambda: im2col_t(x, k, s, pad, out_hw, out=cols)}
    if with_dx:
        fns["col2im"] = lambda: col2im_t(cols, x.shape, k, s, pad, out_hw)
    samples = alternate(fns, 3, warmup=1, target_s=config["target_s"])
    return {key: median(v) for key, v in samples.items()}


def memory_rows(config: dict) -> dict:
    n, rows = config["layer_batch"], []
    x, y = random_batch(n)
    for name in config["archs"]:
        model = cnn.Model(archs.spec_for(name), seed=0)

        def make_step():
            step, opt = numpy_trainer(model, with_optimizer=True)
            return step, lambda: sum(v.nbytes for v in opt.state.values())

        peak = memory.step_peak_bytes(make_step, x, y)
        need = memory.theoretical_bytes(model, n)
        rows.append({"arch": name, "batch": n, "peak_bytes": peak, "need_bytes": need["total_bytes"],
                     "need": need, "ratio": peak / need["total_bytes"]})
    return {"rows": rows}


def kernels(config: dict, threads: int, log) -> dict:
    import threadpoolctl
    import torch

    res = {}
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with threadpoolctl.threadpool_limits(limits=threads, user_api="blas"):
            peak = matmul.peak_rate(config["matmul_size"], config["reps"], config["target_s"])
            res["matmul"] = {"size": config["matmul_size"], "peak_flops_per_s": peak, "peak_gflops": peak / 1e9}
            log(f"float32 matmul {config['matmul_size']}^3: {peak / 1e9:.1f} GFLOP/s")
            res["throughput"] = throughput(config, log)
            res["layers"] = layer_profiles(config, peak)
            res["conv_rate"] = conv_rates(config, res["layers"], peak)
            res["memory"] = memory_rows(config)
    finally:
        torch.set_num_threads(previous)
    return res


def kernels_at(config: dict, threads: int, log) -> dict:
    """The convolution rates and the step's FLOP fraction at ``threads`` threads (no PyTorch)."""
    import threadpoolctl

    with threadpoolctl.threadpool_limits(limits=threads, user_api="blas"):
        peak = matmul.peak_rate(config["matmul_size"], config["reps"], config["target_s"])
        log(f"{threads} threads: float32 matmul {peak / 1e9:.1f} GFLOP/s")
        profiles = layer_profiles(config, peak)
        rates = conv_rates(config, profiles, peak)
    applies = [r["fraction_of_peak"] for r in rates["rows"] if r["target_applies"]]
    return {"threads": threads, "matmul": {"peak_flops_per_s": peak, "peak_gflops": peak / 1e9},
            "layers": profiles, "conv_rate": rates, "conv_rate_min": min(applies, default=float("nan"))}


def kernel_targets(res: dict) -> dict:
    s = res["throughput"]["summary"]
    applies = [r["fraction_of_peak"] for r in res["conv_rate"]["rows"] if r["target_applies"]]
    ratios = [r["ratio"] for r in res["memory"]["rows"]]
    return {
        "throughput_ok": s["geomean_ratio"] >= TARGET_RATIO and s["min_ratio"] >= TARGET_MIN_RATIO,
        "conv_rate_min": min(applies, default=float("nan")),
        "conv_rate_ok": bool(applies) and min(applies) >= TARGET_CONV,
        "memory_max_ratio": max(ratios),
        "memory_ok": max(ratios) <= TARGET_MEMORY,
    }


def run(quick: bool = False, out: Path | str = "benchmarks/results", threads: int | None = None,
        log=print, sections=SECTIONS, tracking_uri: str | None = None, ledger_uri: str | None = None,
        ledger_runs: int | None = None, cifar: str | None = None) -> dict:
    """Run ``sections`` and write them (only them) to ``out``/latest.{json,md}.

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
        res.update(kernels(config, threads, log))
        res["targets"].update(kernel_targets(res))
    if "kernels2" in sections:
        res["kernels2"] = kernels_at(config, 2, log)
        res["targets"].update(conv_rate_min_2_threads=res["kernels2"]["conv_rate_min"])
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
    res["machine"]["load_average_end"] = list(os.getloadavg())
    js, md = report.write(res, Path(out))
    log(f"wrote {js} and {md}")
    return res


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
    args = parser.parse_args(argv)
    if args.threads is not None and args.threads < 1:
        parser.error("--threads must be >= 1")
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    if not sections or set(sections) - set(SECTIONS):
        parser.error(f"--sections: choose from {', '.join(SECTIONS)}")
    run(args.quick, args.out, args.threads, sections=sections, ledger_uri=args.ledger_uri, ledger_runs=args.ledger_runs,
        cifar=args.cifar)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
