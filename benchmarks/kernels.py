"""NumPy kernels against PyTorch on this CPU, at a given thread count (the ``kernels`` and
``kernels2`` sections of ``benchmarks.run``).

* throughput: a training step (forward, backward, Adam) of each architecture of
  :mod:`benchmarks.archs` and of its PyTorch twin, alternated, medians; the ratio NumPy / PyTorch
  images per second. Target: geometric mean >= 1.3 and none below 1.0, at 1 and at 2 threads.
* the convolution algorithm each layer chose (:mod:`cnn.autotune`) and what choosing cost: each
  architecture's first two steps with an empty autotune cache, against a lecture-grid trial
  (sweeps/lecture-grid.yaml: 54,000 training images, 3 epochs, batch 64, 6,000 validation images
  scored per epoch) estimated from the measured step. Target: < 5%.
* each convolution's forward + backward rate against the matmul rate, alternated
  (:mod:`benchmarks.convrate`), in FLOPs of the direct convolution whatever algorithm runs
  (FFT and Winograd do fewer). Target: >= 60% for layers with >= 8 input channels, 1 thread.
* per-layer times, the step against its FLOP limit, and (1 thread) peak memory.

The autotune cache is a fresh temporary file for the run (``CNN_AUTOTUNE_CACHE``), so the
choices and their cost are this run's own.
"""
from __future__ import annotations

import math
import os
import tempfile
import time
from pathlib import Path

import numpy as np

import cnn
from cnn import autotune

from . import archs, convrate, layers, matmul, memory
from .steps import numpy_trainer, random_batch, torch_trainer
from .timing import alternate, geomean, median

TARGET_RATIO, TARGET_MIN_RATIO, TARGET_CONV, TARGET_MEMORY, TARGET_TUNE = 1.3, 1.0, 0.6, 1.5, 0.05
#: sweeps/lecture-grid.yaml: 60,000 MNIST images less 10% validation, 3 epochs, batch 64.
LECTURE_TRIAL = {"train_images": 54000, "val_images": 6000, "epochs": 3, "batch": 64}


def lecture_trial_seconds(step_s: float) -> float:
    """A lecture-grid trial's training time from one step's: its steps, plus the validation
    forwards (a forward is about a third of a step)."""
    t = LECTURE_TRIAL
    steps = math.ceil(t["train_images"] / t["batch"]) + math.ceil(t["val_images"] / t["batch"]) / 3
    return t["epochs"] * steps * step_s


def conv_algorithms(model: cnn.Model) -> dict:
    """``layer name -> "forward/backward"`` algorithms the model's convolutions ran last."""
    return {layer.name: f"{layer.chosen.get('forward', '-')}/{layer.chosen.get('backward', '-')}"
            for layer in model.layers if isinstance(layer, cnn.Conv2D)}


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
            spent = autotune.spent()
            samples = alternate({"numpy": lambda: np_step(x, y), "torch": lambda: torch_step(x, y)},
                                config["reps"], config["warmup"], config["target_s"])
            a, b = n / median(samples["numpy"]), n / median(samples["torch"])
            rows.append({"arch": name, "batch": n, "numpy_images_per_s": a, "torch_images_per_s": b,
                         "ratio": a / b, "max_logit_diff": diff, "algorithms": conv_algorithms(model),
                         "autotune_s": autotune.spent() - spent,
                         "numpy_step_s": samples["numpy"], "torch_step_s": samples["torch"]})
            log(f"{name:22s} batch {n:4d}: numpy {a:8.0f} img/s  torch {b:8.0f} img/s  ratio {a / b:.2f}  "
                + " ".join(f"{k}={v}" for k, v in rows[-1]["algorithms"].items()))
    ratios = [r["ratio"] for r in rows]
    worst = min(rows, key=lambda r: r["ratio"])
    summary = {"geomean_ratio": geomean(ratios), "min_ratio": worst["ratio"],
               "min_arch": f"{worst['arch']} @ {worst['batch']}"}
    summary["ok"] = summary["geomean_ratio"] >= TARGET_RATIO and summary["min_ratio"] >= TARGET_MIN_RATIO
    for n in config["batches"]:
        summary[f"geomean_ratio_batch{n}"] = geomean(r["ratio"] for r in rows if r["batch"] == n)
    return {"rows": rows, "summary": summary}


def autotune_costs(config: dict, throughput_rows: list[dict], log) -> dict:
    """Each architecture's first two steps on an empty cache: the seconds spent choosing, against
    a lecture-grid trial estimated from the architecture's measured step (batch 64 if measured)."""
    n = 64 if 64 in config["batches"] else config["batches"][0]
    steps = {r["arch"]: median(r["numpy_step_s"]) for r in throughput_rows if r["batch"] == n}
    rows = []
    for name in config["archs"]:
        with _fresh_cache():
            model = cnn.Model(archs.spec_for(name), seed=0)
            step = numpy_trainer(model)
            x, y = random_batch(n)
            spent, t0 = autotune.spent(), time.perf_counter()
            step(x, y)
            step(x, y)
            first = time.perf_counter() - t0
            tuned = autotune.spent() - spent
        trial = lecture_trial_seconds(steps[name])
        rows.append({"arch": name, "batch": n, "autotune_s": tuned, "first_two_steps_s": first,
                     "step_s": steps[name], "lecture_trial_s": trial, "share": tuned / trial,
                     "algorithms": conv_algorithms(model)})
        log(f"autotune {name:22s}: {tuned:.3f} s = {100 * tuned / trial:.2f}% of a lecture-grid trial ({trial:.0f} s)")
    worst = max(rows, key=lambda r: r["share"])
    return {"rows": rows, "max_share": worst["share"], "max_arch": worst["arch"],
            "ok": worst["share"] < TARGET_TUNE, "lecture_trial": LECTURE_TRIAL}


class _fresh_cache:
    """``CNN_AUTOTUNE_CACHE`` pointed at a new empty file for the block (and the in-memory choices cleared)."""

    def __enter__(self):
        self.folder = tempfile.TemporaryDirectory(prefix="cnn-autotune-")
        self.before = os.environ.get(autotune.CACHE_ENV)
        os.environ[autotune.CACHE_ENV] = str(Path(self.folder.name) / "autotune.json")
        autotune.forget()
        return self

    def __exit__(self, *exc):
        if self.before is None:
            os.environ.pop(autotune.CACHE_ENV, None)
        else:
            os.environ[autotune.CACHE_ENV] = self.before
        autotune.forget()
        self.folder.cleanup()


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
        prof["algorithms"] = conv_algorithms(model)
        if peak:
            prof["step_limit_s"] = prof["step_flops"] / peak
            prof["step_fraction_of_limit"] = prof["step_limit_s"] / prof["step_s"]
        out[name] = prof
    return {"batch": n, "archs": out}


def conv_rates(config: dict, profiles: dict, peak: float) -> dict:
    """Each conv layer's rate in direct-convolution FLOPs; ``fraction_of_peak`` is measured
    alternated with the matmul (benchmarks/convrate.py), the other columns against the run's ``peak``."""
    n, rows = profiles["batch"], []
    alternated = {(r["arch"], r["layer"]): r for r in convrate.alternated_fractions(
        list(profiles["archs"]), n, reps=config["layer_reps"], size=min(512, config["matmul_size"]),
        target_s=config["target_s"])}
    for name, prof in profiles["archs"].items():
        infos = {i.name: i for i in cnn.infer_shapes(archs.spec_for(name))}
        for row in prof["layers"]:
            if "flops_per_s" not in row:
                continue
            info, alt = infos[row["layer"]], alternated[name, row["layer"]]
            (oh, ow), k = info.out_shape[1:], info.config["kernel_size"]
            matched = matmul.conv_rate(n * oh * ow, info.in_shape[0] * k[0] * k[1], info.out_shape[0],
                                       with_dx=row["computes_dx"], reps=3, target_s=config["target_s"])
            layer_s = row["flops"] / row["flops_per_s"]
            rows.append({"arch": name, "layer": row["layer"], "in_channels": row["in_channels"],
                         "out_channels": row["out_channels"], "algorithms": alt["algorithms"],
                         "gflops": row["flops_per_s"] / 1e9, "fraction_of_peak": alt["fraction"],
                         "fraction_range": [alt["fraction_min"], alt["fraction_max"]],
                         "fraction_of_peak_once": row["flops_per_s"] / peak, "matched_gflops": matched / 1e9,
                         "matched_fraction_of_peak": matched / peak, "layer_ms": 1e3 * layer_s,
                         "target_applies": row["in_channels"] >= 8})
    return {"batch": n, "rows": rows}


def memory_rows(config: dict) -> dict:
    n, rows = config["layer_batch"], []
    x, y = random_batch(n)
    for name in config["archs"]:
        model = cnn.Model(archs.spec_for(name), seed=0)

        def make_step():
            step, opt = numpy_trainer(model, with_optimizer=True)
            return step, lambda: sum(v.nbytes for v in opt.state.values())

        step, _ = numpy_trainer(cnn.Model(archs.spec_for(name), seed=0), with_optimizer=True)
        step(x, y)  # the algorithms are chosen (and their trials' buffers gone) before tracing
        peak = memory.step_peak_bytes(make_step, x, y)
        need = memory.theoretical_bytes(model, n)
        rows.append({"arch": name, "batch": n, "peak_bytes": peak, "need_bytes": need["total_bytes"],
                     "need": need, "ratio": peak / need["total_bytes"]})
    return {"rows": rows, "max_ratio": max(r["ratio"] for r in rows),
            "ok": max(r["ratio"] for r in rows) <= TARGET_MEMORY}


def run(config: dict, threads: int, log, with_memory: bool = True) -> dict:
    """Every figure above at ``threads`` threads (BLAS via threadpoolctl, PyTorch via set_num_threads)."""
    import threadpoolctl
    import torch

    res = {"threads": threads}
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with threadpoolctl.threadpool_limits(limits=threads, user_api="blas"), _fresh_cache():
            peak = matmul.peak_rate(config["matmul_size"], config["reps"], config["target_s"])
            res["matmul"] = {"size": config["matmul_size"], "peak_flops_per_s": peak, "peak_gflops": peak / 1e9}
            log(f"{threads} thread(s): float32 matmul {config['matmul_size']}^3: {peak / 1e9:.1f} GFLOP/s")
            res["throughput"] = throughput(config, log)
            res["autotune"] = autotune_costs(config, res["throughput"]["rows"], log)
            res["layers"] = layer_profiles(config, peak)
            res["conv_rate"] = conv_rates(config, res["layers"], peak)
            if with_memory:
                res["memory"] = memory_rows(config)
    finally:
        torch.set_num_threads(previous)
    applies = [r["fraction_of_peak"] for r in res["conv_rate"]["rows"] if r["target_applies"]]
    res["conv_rate"]["min"] = min(applies, default=float("nan"))
    res["conv_rate"]["ok"] = bool(applies) and min(applies) >= TARGET_CONV
    return res


def targets(res: dict, prefix: str = "") -> dict:
    """The section's figures against their targets, for ``results["targets"]``."""
    s, t = res["throughput"]["summary"], {}
    t[prefix + "throughput_geomean"], t[prefix + "throughput_min"] = s["geomean_ratio"], s["min_ratio"]
    t[prefix + "throughput_ok"] = s["ok"]
    t[prefix + "conv_rate_min"], t[prefix + "conv_rate_ok"] = res["conv_rate"]["min"], res["conv_rate"]["ok"]
    t[prefix + "autotune_max_share"], t[prefix + "autotune_ok"] = res["autotune"]["max_share"], res["autotune"]["ok"]
    if "memory" in res:
        t[prefix + "memory_max_ratio"], t[prefix + "memory_ok"] = res["memory"]["max_ratio"], res["memory"]["ok"]
    return t
