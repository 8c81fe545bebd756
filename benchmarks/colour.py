"""The core against PyTorch on colour images in CIFAR-10's binary format: test accuracy and time.

    python -m benchmarks.colour [--quick] [--cifar FOLDER] [--epochs N] [--seeds N] [--json FILE]

Both frameworks train the same network from the same initial weights (PyTorch's copied from the
core's), on the same batches in the same order with the same augmentation (random crops of the
image padded by 4 pixels, horizontal flips), with Adam and the same cosine schedule for the same
epochs, in float32 on one thread each. The core trains through :func:`cnn.fit`; PyTorch through
a loop that draws its batches as ``cnn.fit`` documents (epoch ``e``: order
``default_rng([seed, e])``, augmentation ``default_rng([seed, e, 1])``) and steps
``torch.optim.lr_scheduler.CosineAnnealingLR`` once per epoch. Seeds (initial weights, data
order) are shared between the two and differ from seed to seed, so the spread over seeds is the
noise the two means are compared with: the verdict says whether the difference of the mean test
accuracies lies within two standard errors of a difference of means over that many seeds.

Data: ``--cifar FOLDER`` reads the binary CIFAR-10 (``data_batch_*.bin``, ``test_batch.bin``),
or any data set in that format. Without it (CI, and this machine, which cannot download CIFAR-10)
a generated set in the same format is written to a temporary folder and read back through the
same reader: ten classes of a shape (square, disc, ring, plus, bar) in a warm or a cool colour,
with jittered size, place and hue, on a noisy background, and 5% of the labels shuffled. The
report says which one the figures come from.
"""
from __future__ import annotations

import colorsys
import math
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from . import report

NET = dict(blocks=2, depth=16, depth_rule="double", kernel_size=3, padding="same", pooling="max", dense=[64],
           batch_norm=True)
FULL = dict(train=10000, test=2000, epochs=4, seeds=3, batch_size=64, lr=2e-3)
QUICK = dict(train=600, test=200, epochs=1, seeds=3, batch_size=50, lr=2e-3)
SHAPES = ("square", "disc", "ring", "plus", "bar")


def _shape_mask(kind: int, size: int, rng) -> np.ndarray:
    r = int(rng.integers(size // 6, size // 3))
    cy, cx = rng.integers(r + 1, size - r - 1, 2)
    yy, xx = np.mgrid[:size, :size]
    dy, dx = np.abs(yy - cy), np.abs(xx - cx)
    d2 = (yy - cy) ** 2 + (xx - cx) ** 2
    thick = max(1, r // 3)
    return [(dy <= r) & (dx <= r), d2 <= r * r, (d2 <= r * r) & (d2 >= (r - thick) ** 2),
            ((dy <= thick // 2) | (dx <= thick // 2)) & (dy <= r) & (dx <= r), (dy <= thick // 2) & (dx <= r)][kind]


def generated_images(n: int, seed: int, size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """``n`` images (N, 3, size, size) uint8 and labels: class ``k`` is shape ``k % 5`` in a warm
    (hues 0-0.3) or cool (0.25-0.55, overlapping) colour for ``k < 5`` or ``k >= 5``."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, n)
    x = np.empty((n, size, size, 3), np.uint8)
    for i, label in enumerate(y):
        tint = rng.uniform(0, 90, 3)
        img = np.clip(tint + rng.normal(0, 28, (size, size, 3)), 0, 255)
        hue = rng.uniform(0.0, 0.3) if label < 5 else rng.uniform(0.25, 0.55)
        colour = np.array(colorsys.hsv_to_rgb(hue, rng.uniform(0.5, 1), rng.uniform(0.6, 1))) * 255
        img[_shape_mask(int(label) % 5, size, rng)] = colour
        x[i] = img
    noisy = rng.random(n) < 0.05
    y[noisy] = rng.integers(0, 10, int(noisy.sum()))
    return x.transpose(0, 3, 1, 2).copy(), y


def write_cifar_format(folder: Path, train: int, test: int, seed: int = 0) -> Path:
    """A generated set as CIFAR-10 binary files: five ``data_batch_*.bin`` and ``test_batch.bin``."""
    folder.mkdir(parents=True, exist_ok=True)
    parts = np.array_split(np.arange(train), 5)
    x, y = generated_images(train + test, seed)
    files = [(f"data_batch_{i + 1}.bin", idx) for i, idx in enumerate(parts)] + [
        ("test_batch.bin", np.arange(train, train + test))]
    for name, idx in files:
        records = np.concatenate([y[idx, None].astype(np.uint8), x[idx].reshape(len(idx), -1)], axis=1)
        records.tofile(folder / name)
    return folder


def _core(spec, data, cfg, seed, norm):
    import cnn

    model = cnn.Model(spec, seed=seed, normalizer=norm)
    initial = {k: v.copy() for k, v in model.state_dict().items()}
    schedule = cnn.Schedule(cfg["lr"], cfg["epochs"], "cosine")
    result = cnn.fit(model, cnn.Adam(cfg["lr"]), data["train"], epochs=cfg["epochs"], batch_size=cfg["batch_size"],
                     seed=seed, augment=cnn.Augment(crop_padding=4, hflip=True), schedule=schedule)
    _, accuracy = cnn.evaluate(model, data["test"], 500)
    return {"test_accuracy": accuracy, "epoch_seconds": [h["seconds"] for h in result.history]}, initial


def _torch(spec, data, cfg, seed, norm, initial):
    """The same training in PyTorch: batches drawn as cnn.fit draws them, torch's own scheduler."""
    import torch

    import cnn
    from .archs import torch_twin

    twin = cnn.Model(spec, seed=seed)
    twin.load_state_dict(initial)
    net = torch_twin(twin)
    opt = torch.optim.Adam(net.parameters(), lr=cfg["lr"])
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg["epochs"])
    augment, train = cnn.Augment(crop_padding=4, hflip=True), data["train"]
    seconds = []
    for epoch in range(1, cfg["epochs"] + 1):
        started = time.perf_counter()
        net.train()
        order = np.random.default_rng([seed, epoch]).permutation(len(train))
        rng = np.random.default_rng([seed, epoch, 1])
        for i in range(0, len(train), cfg["batch_size"]):
            idx = order[i : i + cfg["batch_size"]]
            xb = torch.from_numpy(norm(augment(train.x[idx], rng), np.float32))
            opt.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(net(xb), torch.from_numpy(train.y[idx].astype(np.int64))).backward()
            opt.step()
        scheduler.step()
        seconds.append(time.perf_counter() - started)
    net.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(data["test"]), 500):
            xb = torch.from_numpy(norm(data["test"].x[i : i + 500], np.float32))
            correct += int((net(xb).argmax(1).numpy() == data["test"].y[i : i + 500]).sum())
    return {"test_accuracy": correct / len(data["test"]), "epoch_seconds": seconds}


def compare(core: list[float], torch: list[float]) -> dict:
    """Means, spreads over seeds, the paired difference, and the verdict (see the module's doc)."""
    from scipy import stats

    n = len(core)
    sd = (statistics.stdev(core), statistics.stdev(torch)) if n > 1 else (0.0, 0.0)
    diff = statistics.fmean(core) - statistics.fmean(torch)
    band = 2 * math.sqrt((sd[0] ** 2 + sd[1] ** 2) / n)
    paired = [a - b for a, b in zip(core, torch)]
    spread = statistics.stdev(paired) if n > 1 else 0.0
    half = stats.t.ppf(0.975, n - 1) * spread / math.sqrt(n) if n > 1 else float("nan")
    return {"core_mean": statistics.fmean(core), "torch_mean": statistics.fmean(torch), "core_sd": sd[0],
            "torch_sd": sd[1], "difference": diff, "noise_band": band,
            "paired_interval": [statistics.fmean(paired) - half, statistics.fmean(paired) + half],
            "within_noise": abs(diff) <= band + 1e-12}


def run(quick: bool = False, cifar: str | None = None, epochs: int | None = None, seeds: int | None = None,
        log=print) -> dict:
    import threadpoolctl
    import torch

    import cnn
    from sweeper.spec.config import ModelConfig

    cfg = dict(QUICK if quick else FULL)
    cfg.update({k: v for k, v in (("epochs", epochs), ("seeds", seeds)) if v})
    with tempfile.TemporaryDirectory() as tmp:
        if cifar:
            folder, source = Path(cifar), f"CIFAR-10 binary files in {cifar}"
        else:
            folder = write_cifar_format(Path(tmp) / "generated", cfg["train"], cfg["test"])
            source = (f"a generated set in CIFAR-10's binary format ({cfg['train']} training, {cfg['test']} test "
                      "images: 5 shapes x warm/cool colours, 5% labels shuffled; benchmarks/colour.py)")
        train, test = cnn.load_cifar10(folder)
    data = {"train": train, "test": test}
    norm = cnn.Normalizer.fit(train.x)
    spec = ModelConfig(**NET).to_spec(tuple(train.x.shape[1:]))
    log(f"colour: {source}; {len(train)} training, {len(test)} test images; {cfg['epochs']} epochs x {cfg['seeds']} seeds")
    runs = {"core": [], "torch": []}
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpoolctl.threadpool_limits(limits=1, user_api="blas"):
            for seed in range(cfg["seeds"]):
                core, initial = _core(spec, data, cfg, seed, norm)
                theirs = _torch(spec, data, cfg, seed, norm, initial)
                runs["core"].append(core)
                runs["torch"].append(theirs)
                log(f"  seed {seed}: core {core['test_accuracy']:.4f} ({statistics.median(core['epoch_seconds']):.1f} "
                    f"s/epoch), PyTorch {theirs['test_accuracy']:.4f} "
                    f"({statistics.median(theirs['epoch_seconds']):.1f} s/epoch)")
    finally:
        torch.set_num_threads(previous)
    out = {"source": source, "generated": not cifar, "train_images": len(train), "test_images": len(test),
           "config": {**cfg, "net": NET, "augment": "crop_padding 4, hflip", "schedule": "cosine, per epoch",
                      "optimizer": "adam", "threads": 1}, "runs": runs}
    out.update(compare([r["test_accuracy"] for r in runs["core"]], [r["test_accuracy"] for r in runs["torch"]]))
    for name in runs:
        out[f"{name}_epoch_seconds"] = statistics.median(s for r in runs[name] for s in r["epoch_seconds"])
    out["time_ratio"] = out["core_epoch_seconds"] / out["torch_epoch_seconds"]
    log(verdict(out))
    return out


def verdict(c: dict) -> str:
    within = "within" if c["within_noise"] else "NOT within"
    return (f"test accuracy: core {c['core_mean']:.4f} (sd {c['core_sd']:.4f}), PyTorch {c['torch_mean']:.4f} "
            f"(sd {c['torch_sd']:.4f}) over {len(c['runs']['core'])} seeds; difference {c['difference']:+.4f}, "
            f"{within} seed noise (+-{c['noise_band']:.4f}); epoch {c['core_epoch_seconds']:.1f} s core, "
            f"{c['torch_epoch_seconds']:.1f} s PyTorch (x{c['time_ratio']:.2f})")


def markdown(c: dict) -> list[str]:
    cfg = c["config"]
    out = ["## Colour images: the core against PyTorch", "",
           f"Data: {c['source']}. Network: {cfg['net']}; {cfg['epochs']} epochs, batch {cfg['batch_size']}, Adam "
           f"{cfg['lr']} with a cosine schedule, {cfg['augment']}; the same initial weights, batches and augmentation "
           "in both, one thread each (benchmarks/colour.py).", "",
           "| seed | core test accuracy | PyTorch test accuracy | core s/epoch | PyTorch s/epoch |",
           "|---:|---:|---:|---:|---:|"]
    for seed, (a, b) in enumerate(zip(c["runs"]["core"], c["runs"]["torch"])):
        out.append(f"| {seed} | {a['test_accuracy']:.4f} | {b['test_accuracy']:.4f} | "
                   f"{statistics.median(a['epoch_seconds']):.1f} | {statistics.median(b['epoch_seconds']):.1f} |")
    lo, hi = c["paired_interval"]
    out += ["", f"Mean test accuracy: core {c['core_mean']:.4f} (sd {c['core_sd']:.4f} over seeds), PyTorch "
                f"{c['torch_mean']:.4f} (sd {c['torch_sd']:.4f}); difference {c['difference']:+.4f} against a seed-noise "
                f"band of +-{c['noise_band']:.4f} (two standard errors of a difference of means): "
                + ("**within seed noise**" if c["within_noise"] else "**not within seed noise**")
                + f". Paired by seed, 95% interval of the difference [{lo:+.4f}, {hi:+.4f}]. Median epoch "
                f"{c['core_epoch_seconds']:.1f} s in the core, {c['torch_epoch_seconds']:.1f} s in PyTorch "
                f"(x{c['time_ratio']:.2f}).", ""]
    return out


def main(argv=None) -> int:
    options = (("--cifar", dict(default=None, help="a folder of CIFAR-10 binary files (default: a generated set)")),
               ("--epochs", dict(type=int, default=None, help="epochs per run")),
               ("--seeds", dict(type=int, default=None, help="seeds per framework (default 3)")))
    return report.section_main("colour", __doc__, run, argv, options=options)


if __name__ == "__main__":
    raise SystemExit(main())
