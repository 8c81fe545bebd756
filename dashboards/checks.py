"""Warnings in the spirit of the deep-learning tuning playbook, about the point the sweep chose.

(Which way to move the grid is :mod:`dashboards.advice`'s, read off the same tables as the report.)

* **Noise against claims**: the repeats of one point disagree (pooled seed std of a trial) by
  more than the gap between the chosen point and the runner-up, or more than a difference the
  report calls significant (then it holds on average over many points, not for one run).
* **Budget**: early stopping ended trials at different epochs, and the knob analysis compares
  them at the epoch every trial reached (:mod:`dashboards.budget`): an effect there need not hold
  at the end; or the per-epoch values it needs were missing.
* **Overfitting**: the chosen point's final train accuracy exceeds its validation accuracy by
  more than ``gap`` (absolute), or its validation curve peaked before the last epoch by more
  than the seed noise.

Each function returns plain sentences; an empty list means nothing to warn about.
"""
from __future__ import annotations

import math
from typing import Optional

import pandas as pd

from ledger import Selection

#: Train minus validation accuracy above which the chosen point is said to overfit.
GAP = 0.02


def noise(noise_std: float, ranked: pd.DataFrame, differences: pd.DataFrame, metric: str) -> list[str]:
    """Repeats that disagree by more than what the report claims (see the module docstring)."""
    if math.isnan(noise_std):
        return ["one repeat per point: how much a run varies with its seed is unknown, so no difference in "
                "this report can be told apart from noise; set repeats: 2 or more."]
    out = []
    if len(ranked) > 1:
        gap = abs(ranked["score"].iloc[0] - ranked["score"].iloc[1])
        if noise_std > gap:
            out.append(f"the chosen point beats the runner-up ({ranked['point_name'].iloc[1]}) by {gap:.4f} in mean "
                       f"{metric}, less than the seed noise of one run ({noise_std:.4f} std): which of the top "
                       f"points is best is not settled.")
    claimed = differences.dropna(subset=["lo", "hi"])
    claimed = claimed[(claimed["lo"] > 0) | (claimed["hi"] < 0)]
    small = claimed[claimed["diff"].abs() < noise_std]
    for _, row in small.iterrows():
        out.append(f"{row['field']} {row['a']} -> {row['b']}: the difference {row['diff']:+.4f} is significant on "
                   f"average over {int(row['contexts'])} matched point(s) but smaller than the seed noise of one "
                   f"run ({noise_std:.4f}): a single run may show the opposite.")
    return out


def overfitting(chosen_runs: pd.DataFrame, curve: Optional[pd.DataFrame], noise_std: float, selection: Selection,
                gap: float = GAP) -> list[str]:
    """The chosen point's train/validation gap and a validation curve that peaked early.

    ``chosen_runs``: its finished runs (``train_accuracy``, ``val_accuracy``); ``curve``: its
    mean selection metric per epoch (``epoch``, ``mean``), or None."""
    out = []
    if {"train_accuracy", "val_accuracy"} <= set(chosen_runs.columns):
        diff = float((chosen_runs["train_accuracy"] - chosen_runs["val_accuracy"]).mean())
        if not math.isnan(diff) and diff > gap:
            out.append(f"the chosen point overfits: final train accuracy exceeds validation accuracy by {diff:.4f} "
                       f"(more than {gap}); more data, augmentation, weight decay or fewer epochs may help.")
    if curve is not None and len(curve) > 1:
        curve = curve.sort_values("epoch")
        peak = curve.loc[curve["mean"].idxmax() if selection.mode == "max" else curve["mean"].idxmin()]
        last = curve.iloc[-1]
        tolerance = 0.0 if math.isnan(noise_std) else noise_std
        if peak["epoch"] < last["epoch"] and abs(peak["mean"] - last["mean"]) > tolerance:
            out.append(f"the chosen point's {selection.metric} was best at epoch {int(peak['epoch'])} "
                       f"({peak['mean']:.4f}) and ended at {last['mean']:.4f}: it trains past its best epoch.")
    return out


def budget(epoch: Optional[int], read: bool, missing: int, metric: str) -> list[str]:
    """Caveats of comparing trials early stopping ended at different epochs.

    ``epoch``: the common budget (None: every trial trained as long); ``read``: whether the
    per-epoch history was read; ``missing``: trials left out for lack of a value at ``epoch``."""
    if epoch is None:
        return []
    if not read:
        return [f"early stopping ended trials at different epochs, but their per-epoch {metric} was not read: the "
                f"knob analysis compares each trial's last value, which mixes how good a point is with how long it "
                f"trained."]
    out = [f"the knob analysis compares every trial's {metric} at epoch {epoch}, the epoch every trial reached "
           f"before early stopping: a knob that pays off late (schedule, regularisation) may rank differently at "
           f"the end; only the trials that went on show that."]
    if missing:
        out.append(f"{missing} trial(s) have no {metric} at epoch {epoch} in their history and are left out of the "
                   f"knob analysis.")
    return out


__all__ = ["GAP", "budget", "noise", "overfitting"]
