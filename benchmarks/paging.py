"""What reading the shared data set through :class:`sweeper.trials.pages.PagedArray` costs and saves.

    python -m benchmarks.paging [--quick]

CIFAR-10-sized uint8 images (45,000 x 3 x 32 x 32, as a 10% validation split leaves them) go into a
fresh local Ray's object store once; each measurement is a fresh worker (``max_calls=1``) that maps
them and trains the same small network (depth 4, stride 2, max pooling, batch 256) for two epochs,
reading the images either directly (every page it reads stays resident) or paged (each batch's
pages handed back). Plain and paged runs alternate; the figures are medians of the second epoch
(the first also pays the plain run's first touch of every page) and each worker's peak RSS.
"""
from __future__ import annotations

import statistics

import numpy as np

from . import report

FULL = dict(images=45000, reps=3)
QUICK = dict(images=3000, reps=1)
MODEL = {"blocks": 1, "depth": 4, "kernel_size": 3, "stride": 2,
        "padding": "same", "pooling": "max", "pool_size": 4, "dense": []}


def _epochs(data, paged: bool) -> dict:
    """Two epochs in this (fresh) worker: their seconds, and the worker's peak RSS before and after."""
    from threadpoolctl import threadpool_limits

    import cnn
    from sweeper.trials import pages
    from sweeper.trials.trial import _memory, _reset_peak_rss
    from sweeper.spec.config import ModelConfig

    x, y = data
    train = cnn.Dataset(x, y)
    train = pages.paged(train, min_bytes=0)[0] if paged else train
    _reset_peak_rss()
    before = _memory()["max_rss"]
    with threadpool_limits(limits=1):
        model = cnn.Model(ModelConfig(**MODEL).to_spec((3, 32, 32)), seed=0, normalizer=cnn.Normalizer.fit(x[:1000]))
        result = cnn.fit(model, cnn.make_optimizer("adam", 1e-3), train, epochs=2, batch_size=256, seed=0)
    return {"seconds": [h["seconds"] for h in result.history], "rss_before": before,
            "max_rss": _memory()["max_rss"], "paged": isinstance(train.x, pages.PagedArray)}


def run(quick: bool = False, log=print) -> dict:
    import ray

    cfg = QUICK if quick else FULL
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (cfg["images"], 3, 32, 32), dtype=np.uint8)
    y = rng.integers(0, 10, cfg["images"])
    started = not ray.is_initialized()  # a test session's Ray is used as it is
    if started:
        ray.init(address="local", num_cpus=1, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    try:
        ref = ray.put((x, y))
        task = ray.remote(num_cpus=1, max_calls=1)(_epochs)
        runs = {"plain": [], "paged": []}
        for _ in range(cfg["reps"]):
            for mode in ("plain", "paged"):
                runs[mode].append(ray.get(task.remote(ref, mode == "paged")))
    finally:
        if started:
            ray.shutdown()
    data_mib = (x.nbytes + y.nbytes) / 2**20
    out = {"images": cfg["images"], "data_mib": data_mib, "paged_in_worker": all(r["paged"] for r in runs["paged"])}
    for mode, rs in runs.items():
        out[mode] = {"epoch_seconds": statistics.median(r["seconds"][-1] for r in rs),
                     "max_rss_mib": statistics.median(r["max_rss"] for r in rs) / 2**20,
                     "rss_before_mib": statistics.median(r["rss_before"] for r in rs) / 2**20}
    out["time_ratio"] = out["paged"]["epoch_seconds"] / out["plain"]["epoch_seconds"]
    out["rss_saved_mib"] = out["plain"]["max_rss_mib"] - out["paged"]["max_rss_mib"]
    log(f"paging: {cfg['images']} images ({data_mib:.0f} MiB) shared through Ray; epoch "
        f"{out['plain']['epoch_seconds']:.2f} s plain, {out['paged']['epoch_seconds']:.2f} s paged "
        f"(x{out['time_ratio']:.3f}); worker peak RSS {out['plain']['max_rss_mib']:.0f} MiB plain, "
        f"{out['paged']['max_rss_mib']:.0f} MiB paged (from {out['paged']['rss_before_mib']:.0f} MiB before training)")
    return out


def main(argv=None) -> int:
    return report.section_main("paging", __doc__, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
