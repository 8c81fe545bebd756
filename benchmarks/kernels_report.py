"""The kernel sections (benchmarks/kernels.py) as markdown: every figure with its target, met or
missed by how much, and the CPU model and SIMD flags beside every table."""
from __future__ import annotations

from .kernels import TARGET_CONV, TARGET_MEMORY, TARGET_MIN_RATIO, TARGET_RATIO, TARGET_TUNE
from .machine import cpu_line


def verdict(ok: bool, by: str) -> str:
    return f"**met** (by {by})" if ok else f"**missed** (by {by})"


def throughput_table(k: dict, cpu: str) -> list[str]:
    out = [f"## Training-step throughput at {k['threads']} thread(s) (images/s, forward + backward + Adam)", "",
           cpu + ".", "",
           "| architecture | batch | NumPy | PyTorch | ratio | convolution algorithms (forward/backward) |",
           "|---|---:|---:|---:|---:|---|"]
    for r in k["throughput"]["rows"]:
        algos = ", ".join(f"{layer.split('.')[0]} {a}" for layer, a in r.get("algorithms", {}).items())
        out.append(f"| {r['arch']} | {r['batch']} | {r['numpy_images_per_s']:.0f} | {r['torch_images_per_s']:.0f} | "
                   f"{r['ratio']:.2f} | {algos} |")
    s = k["throughput"]["summary"]
    per_batch = ", ".join(f"batch {key[len('geomean_ratio_batch'):]}: {v:.2f}" for key, v in s.items()
                          if key.startswith("geomean_ratio_batch"))
    out += ["", f"Geometric mean of the ratio: **{s['geomean_ratio']:.2f}** ({per_batch}), target >= {TARGET_RATIO}: "
                + verdict(s["geomean_ratio"] >= TARGET_RATIO, f"{s['geomean_ratio'] - TARGET_RATIO:+.2f}")
                + f"; lowest **{s['min_ratio']:.2f}** ({s['min_arch']}), target >= {TARGET_MIN_RATIO}: "
                + verdict(s["min_ratio"] >= TARGET_MIN_RATIO, f"{s['min_ratio'] - TARGET_MIN_RATIO:+.2f}") + ".", ""]
    return out


def autotune_table(a: dict, threads: int, cpu: str) -> list[str]:
    t = a["lecture_trial"]
    out = [f"### Autotune cost at {threads} thread(s)", "", cpu + ".", "",
           "Seconds spent measuring candidate algorithms in an architecture's first two steps on an empty cache "
           f"(cnn.autotune), against a lecture-grid trial ({t['train_images']} training images, {t['epochs']} "
           f"epochs, batch {t['batch']}, {t['val_images']} validation images per epoch) estimated from the measured "
           "step. Once cached, later trials on this machine pay nothing.", "",
           "| architecture | autotune s | first two steps s | step ms | lecture-grid trial s | share |",
           "|---|---:|---:|---:|---:|---:|"]
    out += [f"| {r['arch']} | {r['autotune_s']:.3f} | {r['first_two_steps_s']:.2f} | {1e3 * r['step_s']:.2f} | "
            f"{r['lecture_trial_s']:.0f} | {100 * r['share']:.2f}% |" for r in a["rows"]]
    out += ["", f"Largest share: **{100 * a['max_share']:.2f}%** ({a['max_arch']}), target < {100 * TARGET_TUNE:.0f}%: "
                + verdict(a["ok"], f"{100 * (TARGET_TUNE - a['max_share']):+.2f} points of margin") + ".", ""]
    return out


def conv_table(c: dict, matmul: dict, threads: int, cpu: str) -> list[str]:
    out = [f"## Convolution rate at {threads} thread(s) (forward + backward)", "", cpu + ".", "",
           f"Matmul rate: {matmul['peak_gflops']:.1f} GFLOP/s (float32, square). Rates count the FLOPs of the direct "
           "convolution (2 x N x OH x OW x F x C x kh x kw forward, twice that backward, once for a first layer that "
           "computes no dx) whatever algorithm runs: FFT and Winograd do fewer, so they can pass 100%.", "",
           "| architecture | layer | C -> F | algorithms (fwd/bwd) | GFLOP/s | % of matmul rate | im2col's same-shape "
           "products alone | layer ms | target applies |", "|---|---|---|---|---:|---:|---:|---:|:-:|"]
    for r in c["rows"]:
        out.append(f"| {r['arch']} | {r['layer']} | {r['in_channels']} -> {r['out_channels']} | {r['algorithms']} | "
                   f"{r['gflops']:.1f} | {100 * r['fraction_of_peak']:.0f}% | "
                   f"{100 * r['matched_fraction_of_peak']:.0f}% | {r['layer_ms']:.2f} | "
                   f"{'yes' if r['target_applies'] else 'no'} |")
    applies = [r for r in c["rows"] if r["target_applies"]]
    out += ["", "% of matmul rate: the layer's forward + backward and a square float32 matmul timed in turn, the "
                "median of the pairs' ratios (benchmarks/convrate.py). im2col's same-shape products alone: the "
                "forward, dW and dx matrix products an im2col convolution of the layer needs, on contiguous operands: "
                "its ceiling at these sizes.", ""]
    if applies:
        low = min(applies, key=lambda r: r["fraction_of_peak"])
        met = sum(r["fraction_of_peak"] >= TARGET_CONV for r in applies)
        out += [f"Target (>= {100 * TARGET_CONV:.0f}% of the matmul rate, layers with >= 8 input channels"
                 + (", 1 thread" if threads == 1 else ", reported only at 2 threads") + f"): {met} of {len(applies)} "
                 f"layers; lowest {100 * low['fraction_of_peak']:.0f}% ({low['arch']} {low['layer']}, "
                 f"{low['in_channels']} -> {low['out_channels']}, {low['algorithms']}): "
                 + verdict(low["fraction_of_peak"] >= TARGET_CONV,
                           f"{100 * (low['fraction_of_peak'] - TARGET_CONV):+.0f} points") + ".", ""]
    return out


def step_rows(layers: dict) -> list[str]:
    out = [f"The whole step against its FLOP limit (direct-convolution FLOPs / matmul rate), batch {layers['batch']}:",
           "", "| architecture | step ms | FLOP limit ms | fraction of the limit |", "|---|---:|---:|---:|"]
    for arch, prof in layers["archs"].items():
        if "step_fraction_of_limit" in prof:
            out.append(f"| {arch} | {1e3 * prof['step_s']:.2f} | {1e3 * prof['step_limit_s']:.2f} | "
                       f"{100 * prof['step_fraction_of_limit']:.0f}% |")
    return out + [""]


def memory_table(m: dict, cpu: str) -> list[str]:
    out = ["## Peak memory of a training step", "", cpu + ".", "",
           "| architecture | batch | traced peak MiB | buffers need MiB | ratio |", "|---|---:|---:|---:|---:|"]
    out += [f"| {r['arch']} | {r['batch']} | {r['peak_bytes'] / 2**20:.1f} | {r['need_bytes'] / 2**20:.1f} | "
            f"{r['ratio']:.2f} |" for r in m["rows"]]
    out += ["", "Need = every im2col matrix + every layer's output + the largest input-gradient column buffer (what an "
                "im2col step holds; FFT layers hold less). Largest ratio "
                f"**{m['max_ratio']:.2f}**, target <= {TARGET_MEMORY}: "
                + verdict(m["ok"], f"{TARGET_MEMORY - m['max_ratio']:+.2f} of margin") + ".", ""]
    return out


def layer_rows(layers: dict, cpu: str) -> list[str]:
    out = [f"## Where a NumPy step goes (batch {layers['batch']})", "", cpu + ".", "",
           "| architecture | layer | forward ms | backward ms | share |", "|---|---|---:|---:|---:|"]
    for arch, prof in layers["archs"].items():
        out += [f"| {arch} | {r['layer']} | {1e3 * r['forward_s']:.2f} | {1e3 * r['backward_s']:.2f} | "
                f"{100 * r['share']:.0f}% |" for r in prof["layers"]]
    return out + [""]


def markdown(k: dict, machine: dict) -> list[str]:
    """One kernel section (``res`` at 1 thread, or ``res["kernels2"]``)."""
    cpu = cpu_line(machine)
    out = throughput_table(k, cpu) + autotune_table(k["autotune"], k["threads"], cpu)
    out += conv_table(k["conv_rate"], k["matmul"], k["threads"], cpu) + step_rows(k["layers"])
    if "memory" in k:
        out += memory_table(k["memory"], cpu)
    return out + layer_rows(k["layers"], cpu)
