"""A sweep with known effects written into a real MLflow store through the project's own writer.

:class:`ledger.Tracker` makes the experiment, the parent run (with the selection rule) and one
child run per (point, repeat) exactly as ``sweeper run`` lays them out; the metrics are logged
the way the driver logs them (per epoch, then the final ones at step 0), and the parent holds a
sweep file of the grid that validates. Truth: ``val = 0.95 + kernel[k] + noise`` (every other
field has no effect; ``kernel`` defaults to :data:`KERNEL`), with the seed effect of repeat r
shared by every point; point (3, 4, max, ...) is the best on test and poor on validation.
"""
from __future__ import annotations

import hashlib
import itertools
import time
from types import SimpleNamespace
from typing import Callable, Optional

import numpy as np
import yaml

KERNEL = {3: 0.0, 5: 0.012, 7: 0.004}
GRID = {"kernel_size": [3, 5, 7], "depth": [4, 8, 16, 32], "pooling": ["max", "avg", "l2"], "stride": [1, 2],
        "padding": [0, "same"]}


def _trial(values: dict, repeat: int, seed: int) -> SimpleNamespace:
    name = " ".join(f"{k[0]}{v}" for k, v in values.items())
    config = {"seed": 0, "data": {"source": "bundled", "val_fraction": 0.1},
              "model": {"blocks": 2, "depth_rule": "constant", "activation": "relu", "dense": [64],
                        **{k: v for k, v in values.items()}},
              "train": {"epochs": 3, "batch_size": 64, "optimizer": "adam", "learning_rate": 0.001}}
    point = SimpleNamespace(hash=hashlib.sha256(name.encode()).hexdigest()[:12], config=config, values=values, name=name)
    return SimpleNamespace(point=point, repeat=repeat, seed=seed, run_name=f"{name} #{repeat + 1}")


def sweep_text(name: str, grid: dict, repeats: int, epochs: int) -> str:
    """A sweep file of ``grid`` on the bundled data, as ``sweeper validate`` accepts it."""
    return yaml.safe_dump({"name": name, "seed": 0, "method": "grid", "repeats": repeats,
                           "data": {"source": "bundled", "val_fraction": 0.1},
                           "model": {"blocks": 2, "depth_rule": "constant", "activation": "relu", "dense": [64]},
                           "train": {"epochs": epochs, "batch_size": 64, "optimizer": "adam", "learning_rate": 0.001},
                           "grid": grid}, sort_keys=False, default_flow_style=None)


def write_store(uri: str, name: str, repeats: int, grid: dict = GRID, seed: int = 0, epochs: int = 3,
                kernel: dict = KERNEL, stop: Optional[Callable[[dict, int], int]] = None) -> dict:
    """Write the sweep; returns ``{"runs": n, "seconds": writing time, "parent": run id}``.

    ``stop(values, repeat)``: the epochs a trial trains, early stopping's way (its curve cut there,
    its final values those of that epoch, tagged ``sweep.stopped_early``); None: every trial all ``epochs``."""
    from mlflow.entities import Metric, Param

    from ledger import Tracker, selection_tags
    from ledger.schema import METHOD, STOPPED_EARLY
    from ledger.selection import DEFAULT
    from ledger.submission import Submission

    rng = np.random.default_rng(seed)
    started = time.perf_counter()
    tracker = Tracker(uri)
    client = tracker.client
    exp = tracker.open_experiment(name, name)
    submission = Submission.start(tracker, exp, name, sweep_text=sweep_text(name, grid, repeats, epochs),
                                  plan_text="synthetic",
                                  tags={**selection_tags(DEFAULT), METHOD: "grid"})
    parent = submission.parent_id
    shared = rng.normal(0, 0.002, repeats)
    count = 0
    for combo in itertools.product(*grid.values()):
        values = dict(zip(grid, combo))
        val_mean = 0.95 + kernel[values["kernel_size"]]
        trap = values["kernel_size"] == 3 and values.get("depth") == 4 and values.get("pooling") == "max"
        for repeat in range(repeats):
            trial = _trial(values, repeat, 1000 + repeat)
            run_id = submission.create_trial_run(trial)
            flops = values["kernel_size"] ** 2 * values["depth"] * 784 // values["stride"] ** 2
            client.log_batch(run_id, params=[Param("n_params", str(values["kernel_size"] ** 2 * values["depth"] * 10)),
                                             Param("forward_flops", str(flops))])
            val = val_mean + shared[repeat] + rng.normal(0, 0.003)
            now = int(time.time() * 1000)
            ran = stop(values, repeat) if stop else epochs
            curve = [Metric(m, v - 0.02 * (epochs - e), now, e) for e in range(1, ran + 1)
                     for m, v in (("val_accuracy", val), ("train_accuracy", val + 0.004), ("train_loss", 1 - val))]
            val -= 0.02 * (epochs - ran)
            final = {"val_accuracy": val, "train_accuracy": val + 0.004, "test_accuracy": 0.999 if trap else val,
                     "test_loss": 1 - val, "train_seconds": flops / 1e5, "epochs_run": ran}
            if ran < epochs:
                client.set_tag(run_id, STOPPED_EARLY, str(ran))
            client.log_batch(run_id, metrics=curve + [Metric(k, v, now, 0) for k, v in final.items()])
            tracker.terminate(run_id, "FINISHED")
            count += 1
    submission.end({"planned": count, "finished": count}, "FINISHED")
    return {"runs": count, "seconds": time.perf_counter() - started, "parent": parent}
