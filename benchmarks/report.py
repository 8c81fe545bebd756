"""The results as JSON (everything) and markdown (the tables the README quotes)."""
from __future__ import annotations

import json
from pathlib import Path


def _mb(b) -> str:
    return f"{b / 2**20:.1f}"


def markdown(res: dict) -> str:
    m, t = res["machine"], res["targets"]
    blas = ", ".join(f"{b['internal_api']} {b['version']} ({b['architecture']}, {b['num_threads']} threads)"
                     for b in m["numpy_blas"])
    out = [
        "# NumPy CNN against PyTorch on the CPU",
        "",
        f"Machine: {m['cpu']}, {m['usable_cpus']} usable of {m['logical_cpus']} logical CPUs, "
        f"{m['threads']} thread(s) for both frameworks; Python {m['python']}, NumPy {m['numpy']} "
        f"(BLAS: {blas}), PyTorch {m['torch']} ({m['torch_backend']}); {m['date']}."
        + (f" Environment: {m['env']}." if m["env"] else "")
        + (f" Load average at start: {', '.join(f'{v:.1f}' for v in m['load_average_at_start'])}."
           if m.get("load_average_at_start") else ""),
        f"Mode: {'quick (smoke run, not representative)' if res['config']['quick'] else 'full'}; "
        f"median of {res['config']['reps']} alternated repetitions; float32, Adam, softmax cross-entropy.",
        "",
        "## Training-step throughput (images/s, forward + backward + update)",
        "",
        "| architecture | batch | NumPy | PyTorch | ratio |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in res["throughput"]["rows"]:
        out.append(f"| {row['arch']} | {row['batch']} | {row['numpy_images_per_s']:.0f} | "
                   f"{row['torch_images_per_s']:.0f} | {row['ratio']:.2f} |")
    s = res["throughput"]["summary"]
    out += ["", f"Geometric mean of the ratio: **{s['geomean_ratio']:.2f}** (target >= 0.5); "
                f"lowest: **{s['min_ratio']:.2f}** ({s['min_arch']}, target >= 0.3).", ""]
    out += ["## Convolution arithmetic rate (forward + backward)", "",
            f"Measured float32 matmul rate: {res['matmul']['peak_gflops']:.1f} GFLOP/s "
            f"({res['matmul']['size']}x{res['matmul']['size']} square).", "",
            "| architecture | layer | C -> F | GFLOP/s | % of matmul peak | same-shape matmul GFLOP/s | target applies |",
            "|---|---|---|---:|---:|---:|:-:|"]
    for row in res["conv_rate"]["rows"]:
        out.append(f"| {row['arch']} | {row['layer']} | {row['in_channels']} -> {row['out_channels']} | "
                   f"{row['gflops']:.1f} | {100 * row['fraction_of_peak']:.0f}% | {row['matched_gflops']:.1f} | "
                   f"{'yes' if row['target_applies'] else 'no'} |")
    out += ["", "Target (>= 50% of the matmul rate, layers with >= 8 input channels): "
                f"{'met' if t['conv_rate_ok'] else 'missed'}; lowest {100 * t['conv_rate_min']:.0f}%.", ""]
    out += ["## Peak memory of a training step", "",
            "| architecture | batch | traced peak MiB | buffers need MiB | ratio |", "|---|---:|---:|---:|---:|"]
    for row in res["memory"]["rows"]:
        out.append(f"| {row['arch']} | {row['batch']} | {_mb(row['peak_bytes'])} | {_mb(row['need_bytes'])} | "
                   f"{row['ratio']:.2f} |")
    out += ["", "Need = every im2col matrix + every layer's output + the largest input-gradient column "
                f"buffer. Target ratio <= 1.5: {'met' if t['memory_ok'] else 'missed'}.", ""]
    out += ["## Where a NumPy step goes (batch " + str(res["layers"]["batch"]) + ")", "",
            "| architecture | layer | forward ms | backward ms | share |", "|---|---|---:|---:|---:|"]
    for arch, prof in res["layers"]["archs"].items():
        for row in prof["layers"]:
            out.append(f"| {arch} | {row['layer']} | {1e3 * row['forward_s']:.2f} | {1e3 * row['backward_s']:.2f} | "
                       f"{100 * row['share']:.0f}% |")
    out += ["", "Sweep efficiency (trials on all CPUs through the sweep service) is not measured here yet.", ""]
    return "\n".join(out)


def write(res: dict, out_dir: Path) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    js, md = out_dir / "latest.json", out_dir / "latest.md"
    js.write_text(json.dumps(res, indent=2) + "\n")
    md.write_text(markdown(res))
    return js, md
