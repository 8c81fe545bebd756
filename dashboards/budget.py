"""Early stopping in the report: where trials stopped, and the knob analysis at a common budget.

Early stopping (the sweep's ASHA rule) ends trials at different epochs: with grace 3 and
reduction factor 3 most trials stop at epoch 3, some at 9, a few run to the end. Each trial's
*last* value then mixes how good its point is with how long it trained, so a knob whose values
were stopped early looks worse than it is. The field's answer (Hyperband, Li et al. 2018; ASHA,
Li et al. 2020: rungs compare trials at the same resource) is to compare at a common budget:
each trial's metric at the largest epoch every analysed trial reached (with ASHA: the grace epoch).

Only the knob analysis (ANOVA, effects, importance, advice, heatmaps) moves to that budget; the
chosen point and the ranking stay those of :mod:`ledger.selection`, on the final values.

* :func:`stopping`: finished trials per epoch trained, and whether that epoch was the end;
* :func:`common_epoch`: the common budget, or None when every trial trained as long;
* :func:`at_epoch`: the run frame with the metric replaced by its value at that epoch.
"""
from __future__ import annotations

from typing import Optional

import pandas as pd

from .stats import finished_trials


def _analysed(runs: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The deciding runs of finished trials that have ``metric``, with ``epochs_run`` known."""
    done = finished_trials(runs)
    if metric not in done.columns or "epochs_run" not in done.columns:
        return done.iloc[0:0]
    return done[done[metric].notna() & done["epochs_run"].notna()]


def stopping(runs: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Finished trials (those with ``metric``) per epoch trained, fewest epochs first.

    Columns: ``epoch`` (int), ``trials`` (int), ``stopped`` (bool: early stopping ended them
    there, the run's ``stopped_early`` tag; False: they ran to the end). Empty when no run
    recorded ``epochs_run``."""
    done = _analysed(runs, metric)
    columns = ["epoch", "trials", "stopped"]
    if done.empty:
        return pd.DataFrame(columns=columns)
    stopped = done["stopped_early"].notna() if "stopped_early" in done.columns else pd.Series(False, index=done.index)
    table = pd.DataFrame({"epoch": done["epochs_run"].astype("int64"), "stopped": stopped.astype(bool)})
    table = table.groupby(["epoch", "stopped"]).size().rename("trials").reset_index()
    return table.astype({"trials": "int64"})[columns]


def common_epoch(runs: pd.DataFrame, metric: str) -> Optional[int]:
    """The largest epoch every analysed trial reached, when the trials trained for different
    numbers of epochs (early stopping); None when they all trained as long (or nothing says)."""
    done = _analysed(runs, metric)
    if done.empty or done["epochs_run"].nunique() < 2:
        return None
    return int(done["epochs_run"].min())


def describe(table: pd.DataFrame) -> Optional[str]:
    """One sentence of :func:`stopping`'s table: "5 of 32 trials ran to the end (15 epochs); early
    stopping ended 25 at epoch 3 and 2 at epoch 9." None when no trial was stopped."""
    if table.empty or not table["stopped"].any():
        return None
    total = int(table["trials"].sum())
    ended = table[~table["stopped"]]
    stopped = table[table["stopped"]].groupby("epoch")["trials"].sum()
    end = (f"{int(ended['trials'].sum())} of {total} trials ran to the end"
           + (f" ({', '.join(str(e) for e in ended['epoch'])} epochs)" if len(ended) else ""))
    rungs = [f"{n} at epoch {e}" for e, n in stopped.items()]
    return f"{end}; early stopping ended {', '.join(rungs[:-1]) + ' and ' if len(rungs) > 1 else ''}{rungs[-1]}."


def at_epoch(runs: pd.DataFrame, history: pd.DataFrame, metric: str, epoch: int) -> pd.DataFrame:
    """A copy of ``runs`` whose ``metric`` is each run's value at ``epoch`` (``history`` as
    :func:`ledger.frame.load_history` returns it); NaN for a run without that epoch in
    ``history``, so that it drops out of the analysis rather than counting its last value."""
    values = history[(history["metric"] == metric) & (history["epoch"] == epoch)]
    values = values.drop_duplicates("run_id", keep="last").set_index("run_id")["value"]
    out = runs.copy()
    out[metric] = runs["run_id"].map(values).astype("float64")
    out.attrs = dict(runs.attrs)
    return out


def missing(budget_runs: pd.DataFrame, runs: pd.DataFrame, metric: str) -> int:
    """Finished trials that have ``metric`` in ``runs`` but none at the budget in ``budget_runs``."""
    before, after = finished_trials(runs), finished_trials(budget_runs)
    return int(before[metric].notna().sum() - after[metric].notna().sum()) if metric in before else 0


def measure(metric: str, epoch: Optional[int]) -> str:
    """What the knob analysis compares: ``val_accuracy`` or ``val_accuracy at epoch 3``."""
    return metric if epoch is None else f"{metric} at epoch {epoch}"


def sentence(metric: str, epoch: Optional[int]) -> str:
    """The knob sections' note on the budget ("" when every trial is compared at its last epoch)."""
    if epoch is None:
        return ""
    return (f"Early stopping ended trials at different epochs, so every trial's {metric} is taken at epoch {epoch}, "
            f"the epoch every trial reached (from its per-epoch history), not at its last epoch; the chosen point "
            f"and the leaderboard stay on the final values.")


__all__ = ["at_epoch", "common_epoch", "describe", "measure", "missing", "sentence", "stopping"]
