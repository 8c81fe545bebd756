"""The core against PyTorch on colour images in CIFAR-10's binary format: test accuracy and time.

    python -m benchmarks.colour [--quick] [--cifar FOLDER] [--epochs N] [--seeds N] [--json FILE]

Both frameworks train the same network from the same initial weights (PyTorch's copied from the
core's), on the same batches in the same order with the same augmentation (random crops of the
image padded by 4 pixels, horizontal flips), with Adam and the same cosine schedule for the same
epochs, in float32 on one thread each. The core trains through :func:`cnn.fit`; PyTorch through
a loop that draws its batches as ``cnn.fit`` documents (epoch ``e``: order
``default_rng([seed, e])``, augmentation ``default_rng([seed, e, 1])``) and steps
``torch.optim.lr_scheduler.CosineAnnealingLR`` once per epoch. The two train their epochs in
turn (core epoch 1, PyTorch epoch 1, core epoch 2, ...): the time ratio is the median over those
pairs, which a machine's changing load hits alike. Seeds (initial weights, data
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
import os
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


class _Core:
    """The core's run of one seed, an epoch at a time: ``cnn.fit`` from epoch ``e`` to ``e`` trains
    exactly the epoch an uninterrupted run would (order, augmentation and rate are closed forms)."""

    def __init__(self, spec, data, cfg, seed, norm):
        import cnn

        self.cnn, self.data, self.cfg, self.seed = cnn, data, cfg, seed
        self.model = cnn.Model(spec, seed=seed, normalizer=norm)
        self.initial = {k: v.copy() for k, v in self.model.state_dict().items()}
        self.opt, self.schedule = cnn.Adam(cfg["lr"]), cnn.Schedule(cfg["lr"], cfg["epochs"], "cosine")

    def epoch(self, e: int) -> float:
        started = time.perf_counter()
        self.cnn.fit(self.model, self.opt, self.data["train"], epochs=e, start_epoch=e, batch_size=self.cfg["batch_size"],
                     seed=self.seed, augment=self.cnn.Augment(crop_padding=4, hflip=True), schedule=self.schedule)
        return time.perf_counter() - started

    def accuracy(self) -> float:
        return self.cnn.evaluate(self.model, self.data["test"], 500)[1]


class _Torch:
    """The same run in PyTorch: batches drawn as cnn.fit draws them, torch's own Adam and scheduler."""

    def __init__(self, spec, data, cfg, seed, norm, initial):
        import torch

        import cnn
        from .archs import torch_twin

        twin = cnn.Model(spec, seed=seed)
        twin.load_state_dict(initial)
        self.torch, self.net, self.data, self.cfg, self.seed, self.norm = torch, torch_twin(twin), data, cfg, seed, norm
        self.opt = torch.optim.Adam(self.net.parameters(), lr=cfg["lr"])
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.opt, cfg["epochs"])
        self.augment = cnn.Augment(crop_padding=4, hflip=True)

    def epoch(self, e: int) -> float:
        torch, train, size = self.torch, self.data["train"], self.cfg["batch_size"]
        started = time.perf_counter()
        self.net.train()
        order = np.random.default_rng([self.seed, e]).permutation(len(train))
        rng = np.random.default_rng([self.seed, e, 1])
        for i in range(0, len(train), size):
            idx = order[i : i + size]
            xb = torch.from_numpy(self.norm(self.augment(train.x[idx], rng), np.float32))
            self.opt.zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(self.net(xb), torch.from_numpy(train.y[idx].astype(np.int64)))
            loss.backward()
            self.opt.step()
        self.scheduler.step()
        return time.perf_counter() - started

    def accuracy(self) -> float:
        test, correct = self.data["test"], 0
        self.net.eval()
        with self.torch.no_grad():
            for i in range(0, len(test), 500):
                xb = self.torch.from_numpy(self.norm(test.x[i : i + 500], np.float32))
                correct += int((self.net(xb).argmax(1).numpy() == test.y[i : i + 500]).sum())
        return correct / len(test)


def _seed(spec, data, cfg, seed, norm) -> tuple[dict, dict]:
    """Both frameworks' runs of one seed, their epochs alternated so that both see the same load."""
    core = _Core(spec, data, cfg, seed, norm)
    theirs = _Torch(spec, data, cfg, seed, norm, core.initial)
    times = {"core": [], "torch": []}
    for e in range(1, cfg["epochs"] + 1):
        times["core"].append(core.epoch(e))
        times["torch"].append(theirs.epoch(e))
    return ({"test_accuracy": core.accuracy(), "epoch_seconds": times["core"]},
            {"test_accuracy": theirs.accuracy(), "epoch_seconds": times["torch"]})


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
                core, theirs = _seed(spec, data, cfg, seed, norm)
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
    # The ratio of each pair of epochs trained one after the other: a load that changes over the
    # run hits both alike.
    out["time_ratio"] = statistics.median(a / b for c, t in zip(runs["core"], runs["torch"])
                                          for a, b in zip(c["epoch_seconds"], t["epoch_seconds"]))
    out["load_average"] = list(os.getloadavg())
    log(verdict(out))
    return out


def verdict(c: dict) -> str:
    within = "within" if c["within_noise"] else "NOT within"
    return (f"test accuracy: core {c['core_mean']:.4f} (sd {c['core_sd']:.4f}), PyTorch {c['torch_mean']:.4f} "
            f"(sd {c['torch_sd']:.4f}) over {len(c['runs']['core'])} seeds; difference {c['difference']:+.4f}, "
            f"{within} seed noise (+-{c['noise_band']:.4f}); epoch {c['core_epoch_seconds']:.1f} s core, "
            f"{c['torch_epoch_seconds']:.1f} s PyTorch, core/PyTorch x{c['time_ratio']:.2f} (median of alternated epochs)")


def net_text(net: dict) -> str:
    depths = [net["depth"] * (2 ** i if net["depth_rule"] == "double" else 1) for i in range(net["blocks"])]
    return (f"{net['blocks']} conv blocks of {'/'.join(map(str, depths))} {net['kernel_size']}x{net['kernel_size']} "
            f"kernels, {net['padding']} padding, {net['pooling']} pooling"
            + (", batch norm" if net.get("batch_norm") else "") + f", dense {net['dense']}, 10 logits")


def markdown(c: dict) -> list[str]:
    cfg = c["config"]
    out = ["## Colour images: the core against PyTorch", "",
           f"Data: {c['source']}. Network: {net_text(cfg['net'])}; {cfg['epochs']} epochs, batch {cfg['batch_size']}, Adam "
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
                f"{c['core_epoch_seconds']:.1f} s in the core, {c['torch_epoch_seconds']:.1f} s in PyTorch; the core "
                f"takes x{c['time_ratio']:.2f} PyTorch's time (median over the pairs of epochs, each pair trained one "
                f"after the other; load average {c['load_average'][0]:.1f} at the end).", ""]
    return out


def main(argv=None) -> int:
    options = (("--cifar", dict(default=None, help="a folder of CIFAR-10 binary files (default: a generated set)")),
               ("--epochs", dict(type=int, default=None, help="epochs per run")),
               ("--seeds", dict(type=int, default=None, help="seeds per framework (default 3)")))
    return report.section_main("colour", __doc__, run, argv, options=options)


if __name__ == "__main__":
    raise SystemExit(main())
