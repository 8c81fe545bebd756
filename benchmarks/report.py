"""The results as JSON (everything) and markdown (the tables the README quotes)."""
from __future__ import annotations

import json
from pathlib import Path

from . import kernels_report
from .kernels_report import verdict as _verdict
from .sweep import TARGET_EFFICIENCY, TARGET_OVERHEAD_S

BREAKDOWN_LABELS = {
    "idle_head": "idle CPUs until every CPU has a trial (first runs, worker start, imports)",
    "idle_between": "idle CPUs between trials",
    "idle_tail": "idle CPUs after the last trial started (last round, final bookkeeping)",
    "data_load": "data load (once per worker process)",
    "mlflow_start": "recording: mark RUNNING, attempt and worker tags",
    "mlflow_finished_elsewhere": "recording: search for a finished duplicate",
    "mlflow_load_checkpoint": "recording: look for a checkpoint",
    "mlflow_describe": "recording: model size params",
    "mlflow_log_epoch": "recording: per-epoch metrics",
    "mlflow_save_checkpoint": "recording: epoch checkpoint upload and tag",
    "checkpoint_file": "epoch checkpoints written to files",
    "coordinator": "early-stopping coordinator round trips",
    "mlflow_finish": "recording: final metrics, artifacts, FINISHED, duplicate check",
    "mlflow_fail": "recording: failure record",
    "slowdown": "training slower than alone (the other CPU's trial, driver, Ray, SQLite)",
}


def markdown(res: dict) -> str:
    m = res["machine"]
    blas = ", ".join(f"{b['internal_api']} {b['version']} ({b['architecture']}, {b['num_threads']} threads)"
                     for b in m["numpy_blas"])
    out = [
        "# NumPy CNN against PyTorch on the CPU" if ("throughput" in res or "kernels2" in res)
        else "# cnn-sweeper benchmarks",
        "",
        f"Machine: {m['cpu']} (CPU flags: {' '.join(m.get('cpu_flags') or ['unknown'])}), {m['usable_cpus']} usable of {m['logical_cpus']} logical CPUs, "
        f"{m['threads']} thread(s) for both frameworks; Python {m['python']}, NumPy {m['numpy']} "
        f"(BLAS: {blas}), PyTorch {m['torch']} ({m['torch_backend']}); {m['date']}."
        + (f" Environment: {m['env']}." if m["env"] else "")
        + (f" Load average at start: {', '.join(f'{v:.1f}' for v in m['load_average_at_start'])}."
           if m.get("load_average_at_start") else "")
        + (f" At the end: {', '.join(f'{v:.1f}' for v in m['load_average_end'])}." if m.get("load_average_end") else "")
        + " The machine is shared with other busy sessions: compare the ratios measured side by side, not"
          " absolute times." + (f" {m['note']}" if m.get("note") else ""),
        f"Mode: {'quick (smoke run, not representative)' if res['config']['quick'] else 'full'}; "
        f"median of {res['config']['reps']} alternated repetitions; float32, Adam, softmax cross-entropy."
        + (f" Sections: {', '.join(res['sections'])}." if "sections" in res else ""),
        "",
    ]
    if "throughput" in res:
        out += kernels_report.markdown(res, m)
    if "throughput" in res.get("kernels2", {}):  # a merged file may hold an older run's kernels2
        out += kernels_report.markdown(res["kernels2"], m)
    sections = (("sweep", sweep_markdown), ("vs_tune", vs_tune_markdown),
                ("bookkeeping", bookkeeping_markdown), ("ledger", ledger_markdown), ("calibrate", calibrate_markdown),
                ("paging", paging_markdown))
    # Imported here: these sections import this module.
    from .colour import markdown as colour_markdown
    from .driver_scale import markdown as driver_scale_markdown
    from .search import markdown as search_markdown

    for key, section in (*sections, ("colour", colour_markdown), ("search", search_markdown),
                         ("driver_scale", driver_scale_markdown)):
        if key in res:
            out += section(res[key])
    return "\n".join(out)


def vs_tune_markdown(v: dict) -> list[str]:
    c, med = v["config"], v["medians"]
    grid = " x ".join(f"{k} {'/'.join(map(str, vals))}" for k, vals in c["grid"].items())
    out = ["## End to end against Ray Tune + PyTorch + MLflow", "",
           f"The same {v['trials']} points ({grid}; bundled MNIST, {c['train_size'] or 'all 5400'} training images, "
           f"{c['epochs']} epoch(s), batch 64, Adam 1e-3, the same initial weights and batch order, one thread per "
           f"trial, one trial per CPU), each side a fresh process into a fresh SQLite store, alternated; medians of "
           f"{len(v['rounds']['sweeper'])} rounds. `tune`: Tune's defaults (a new worker process per trial); "
           "`tune_reuse`: `reuse_actors=True`.", "",
           "| side | wall s | CPU s (whole process tree) | overhead s/trial | mean test accuracy |",
           "|---|---:|---:|---:|---:|"]
    out += [f"| {side} | {m['wall_s']:.1f} | {m['cpu_s']:.1f} | {m['overhead_per_trial_s']:.2f} | "
            f"{m['mean_accuracy']:.4f} |" for side, m in med.items()]
    noise = v.get("accuracy_noise")
    out += ["", f"`sweeper run` against the faster Tune setting ({v['compared_with']}): **{v['speedup']:.2f}x** "
                f"faster, target >= {v['target_speedup']}x: "
                + _verdict(v["speedup_ok"], f"{v['speedup'] - v['target_speedup']:+.2f}x")
                + f"; CPU {v['cpu_ratio']:.2f}x less. Accuracy gap {v['accuracy_gap']:+.4f} (largest per-point "
                f"difference {v['max_abs_accuracy_diff_sorted']:.4f}"
                + (f"; the sweeper's own spread over repeats {noise:.4f}" if noise is not None else "") + ").", ""]
    return out


def bookkeeping_markdown(b: dict) -> list[str]:
    return ["## Bookkeeping: many one-second trials with full MLflow logging", "",
            f"{b['trials']} trials on {b['cpus']} CPUs (a tiny network, T1 = {b['T1']:.2f} s alone): ideal "
            f"{b['ideal_wall_s']:.0f} s, measured {b['wall_s']:.0f} s (whole call {b['call_s']:.0f} s). Efficiency "
            f"**{100 * b['efficiency']:.0f}%**, target >= {100 * b['target']:.0f}%: "
            + _verdict(b["efficiency_ok"], f"{100 * (b['efficiency'] - b['target']):+.0f} points")
            + (f" (against T1 at Ray's worker niceness {100 * b['efficiency_own_times']:.0f}%)" if b.get("note") else
               f" (with the trials' own times {100 * b['efficiency_own_times']:.0f}%)") + ". The driver's CPU: "
            f"**{b['driver_cpu_per_trial_s']:.3f} s per trial** ({b['driver_cpu_s']:.0f} s in all); its MLflow work: "
            + ", ".join(f"{k} {v:.1f} s" for k, v in sorted(b["driver_seconds"].items())) + "."
            + (f" {b['note']}" if b.get("note") else ""), ""]


def paging_markdown(p: dict) -> list[str]:
    return ["## Reading the shared data paged", "",
            f"{p['images']} CIFAR-sized uint8 images ({p['data_mib']:.0f} MiB) in Ray's object store; fresh workers "
            "alternate, median of the second epoch (benchmarks/paging.py):", "",
            "| read | epoch s | worker peak RSS MiB | RSS before training MiB |", "|---|---:|---:|---:|",
            *(f"| {mode} | {p[mode]['epoch_seconds']:.2f} | {p[mode]['max_rss_mib']:.0f} | "
              f"{p[mode]['rss_before_mib']:.0f} |" for mode in ("plain", "paged")),
            "", f"Paged / plain epoch time: x{p['time_ratio']:.3f}; peak RSS saved per worker: "
                f"{p['rss_saved_mib']:.0f} MiB.", ""]


def ledger_markdown(g: dict) -> list[str]:
    out = ["## The ledger at scale", "",
           f"An experiment of {g['runs']} FINISHED trial runs in {g['uri']}, written through the driver's writer"]
    w = g.get("write")
    if w:
        chunks = ", ".join(f"{c['seconds']:.0f}" for c in w["per_chunk"])
        out[-1] += f" in {w['seconds']:.0f} s (seconds per 1000 runs as the store grew: {chunks})"
    out[-1] += ". Each command in a fresh process:"
    out += ["", "| command | wall s | CPU s | target | verdict (wall) | verdict (CPU) | with 10 runs: wall s, CPU s | "
                "peak memory MiB |", "|---|---:|---:|---:|---|---|---:|---:|"]
    for key, r in g["commands"].items():
        small = (f"{r['small_seconds']:.1f}, {r['small_cpu_seconds']:.1f}" if "small_seconds" in r else "-")
        out.append(f"| `sweeper {key}` | {r['seconds']:.1f} | {r['cpu_seconds']:.1f} | < {r['target_s']:.0f} | "
                   + _verdict(r["met"], f"{r['seconds'] - r['target_s']:+.1f} s") + " | "
                   + _verdict(r.get("cpu_met", False), f"{r['cpu_seconds'] - r['target_s']:+.1f} s")
                   + f" | {small} | {r['peak_rss_mib']:.0f} |")
    out += ["", "CPU s: user + system seconds of the command's process (and of what it waited for); on a machine "
                "loaded by other sessions a command waits for a CPU, and its CPU time is the better measure of its "
                "own cost. The 10-run sweep in the same store, timed right before, shows what does not grow with "
                "the runs (Python, MLflow and pandas imports, the store's opening).", ""]
    return out


def calibrate_markdown(c: dict) -> list[str]:
    out = ["## The cost model, calibrated", "",
           f"Efficiency (trial FLOPs / seconds / single-thread matmul rate, {c['flops_per_cpu'] / 1e9:.1f} GFLOP/s): "
           f"median **{c['efficiency']:.3f}** over {len(c['points'])} points ("
           + ", ".join(f"{p['point']} {p['efficiency']:.3f}" for p in c["points"]) + ")"
           + (f"; stored in `{c['written_to']}`" if c.get("written_to") else "") + "."]
    e = c.get("eta")
    if e:
        out += ["", f"`sweeper plan`'s ETA of {e['trials']} trials on {e['cpus']} CPUs against the measured execution "
                    f"phase {e['measured_wall_s']:.1f} s: **{100 * e['error_calibrated']:+.0f}%** calibrated "
                    f"({e['eta_calibrated_s']:.1f} s), {100 * e['error_default']:+.0f}% with the old fixed 0.05 "
                    f"({e['eta_default_s']:.1f} s). Trials are dispatched longest first (the plan's estimate)."]
    out.append("")
    return out


def sweep_markdown(sw: dict) -> list[str]:
    c, b = sw["config"], sw["breakdown"]
    n, cpus, pool = sw["trials"], sw["cpus"], sw["plain_pool"]
    out = [
        "## Sweep efficiency (the sweep service on all CPUs)", "",
        f"A grid of {n} equal trials (bundled data, {c['train_size']} training images, {c['epochs']} epochs, "
        f"depth {c['depth']}; the points differ only in the learning rate) on {cpus} CPU(s), one trial per CPU: "
        "`sweeper.api.run` on a fresh local Ray each round, into an MLflow SQLite store.", "",
        "| | seconds |", "|---|---:|",
        f"| one trial alone, in-process, 1 thread, no MLflow (T1, median of {len(sw['single_trial_seconds'])}) | "
        f"{sw['T1']:.2f} |",
        f"| ideal: N x T1 / CPUs | {sw['ideal_wall_seconds']:.1f} |",
        f"| plain processes, one per CPU, no Ray, no MLflow (data loaded first) | {pool['wall_seconds']:.1f} |",
        f"| the service: execution phase (W) | {sw['wall_seconds']:.1f} |",
        f"| the whole `sweeper.api.run` call (with planning and the parent run) | {sw['call_seconds']:.1f} |", "",
        f"Efficiency N x T1 / CPUs / W: **{100 * sw['efficiency']:.0f}%** (target >= "
        f"{100 * TARGET_EFFICIENCY:.0f}%: {'met' if sw['targets']['efficiency_ok'] else 'missed'}); with the "
        f"trials' own times, sum / CPUs / W: {100 * sw['efficiency_own_times']:.0f}%; plain processes: "
        f"{100 * sw['pool_efficiency']:.0f}% (what the machine gives with every CPU busy).", "",
        f"Overhead per trial (W x CPUs - N x T1) / N: **{sw['overhead_per_trial']:.2f} s** (target < "
        f"{TARGET_OVERHEAD_S} s: {'met' if sw['targets']['overhead_ok'] else 'missed'}); over plain processes "
        f"(what Ray and MLflow add): {sw['service_over_pool_per_trial']:.2f} s.", "",
    ]
    rounds = sw.get("rounds", [])
    if len(rounds) > 1:
        out += [f"Efficiency and overhead above are medians of {len(rounds)} rounds, each a cold Ray with its "
                "own T1 measured around it; the tables are the median round's.", "",
                "| round | T1 s | ideal s | pool s | W s | efficiency | own times | pool | overhead s/trial | "
                "over pool s/trial |", "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        out += [f"| {i + 1} | {r['T1']:.2f} | {r['ideal_wall_seconds']:.1f} | {r['plain_pool_seconds']:.1f} | "
                f"{r['wall_seconds']:.1f} | {100 * r['efficiency']:.0f}% | {100 * r['efficiency_own_times']:.0f}% | "
                f"{100 * r['pool_efficiency']:.0f}% | {r['overhead_per_trial']:.2f} | "
                f"{r['service_over_pool_per_trial']:.2f} |" for i, r in enumerate(rounds)]
        out.append("")
    out += ["| where it went, per trial | seconds |", "|---|---:|"]
    out += [f"| {BREAKDOWN_LABELS.get(k, k)} | {v:.3f} |" for k, v in b["per_trial"].items()]
    out += [f"| total | {b['total_per_trial']:.3f} |", "",
            "\"recording\" is what the trial spends handing its records on: the driver writes them to MLflow "
            "(sweeper/trials/relay.py), on the same CPUs, so its share shows as the trials' slowdown.", "",
            f"Worker processes: {b['worker_processes']}. The first trial of each loads the data in "
            f"{_s(b['data_first_s'])} s; from submission to its first line {_s(b['start_latency_first_s'])} s "
            f"(worker lease, imports). A later trial's recording calls: {_s(b['recording_later_s'])} s. The driver "
            f"creates a child run in {_s(b['create_run_s'])} s (median) and collects a result "
            f"{_s(b['collect_latency_s'])} s after it ends. The driver's MLflow work in all: "
            + ", ".join(f"{k} {v:.2f} s" for k, v in sorted(b["driver_seconds"].items())) + ".", ""]
    a = sw.get("amortised")
    if a:
        k = a["trials_per_cpu_for_target"]
        out += [f"Fixed cost per worker process (its first trial's start, imports and data): "
                f"{a['fixed_per_worker_s']:.2f} s; cost of every trial (its recording calls, the gap before it, its "
                f"run's creation): {a['steady_per_trial_s']:.2f} s. With k trials per CPU, Ray and MLflow add about "
                f"{a['steady_per_trial_s']:.2f} + {a['fixed_per_worker_s']:.2f} / k s per trial, under "
                f"{TARGET_OVERHEAD_S} s from k = {'-' if k is None else f'{k:.0f}'} "
                f"(here k = {n / cpus:.0f}; the slowdown of training next to a busy CPU comes on top).", ""]
    return out


def _s(value) -> str:
    return "-" if value is None else f"{value:.2f}"


def write_json(res: dict, path) -> None:
    """Results as every JSON file here holds them (``run``'s, and one section's ``--json``)."""
    Path(path).write_text(json.dumps(res, indent=2) + "\n")


def section_main(module: str, doc: str, run, argv=None, options=(), quick: bool = True) -> int:
    """One section's command line: ``python -m benchmarks.MODULE [--quick] [OPTIONS] [--json FILE]``.

    ``options``: ``(flag, add_argument keywords)``; ``run`` gets ``quick`` (when the section has
    it) and each option by its name, and its results go to ``--json``.
    """
    import argparse

    parser = argparse.ArgumentParser(prog=f"python -m benchmarks.{module}", description=doc.splitlines()[0])
    if quick:
        parser.add_argument("--quick", action="store_true", help="a smoke run: seconds, not representative")
    for flag, kwargs in options:
        parser.add_argument(flag, **kwargs)
    parser.add_argument("--json", default=None, help="write the results here")
    args = vars(parser.parse_args(argv))
    path = args.pop("json")
    res = run(**args)
    if path:
        write_json(res, path)
    return 0


def write(res: dict, out_dir: Path) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    js, md = out_dir / "latest.json", out_dir / "latest.md"
    write_json(res, js)
    md.write_text(markdown(res))
    return js, md
