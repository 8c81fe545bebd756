"""PNG plots for the report, drawn with matplotlib when it is installed (it usually comes with mlflow).

Figures are built with :class:`matplotlib.figure.Figure` and the Agg canvas directly, never
through ``pyplot``: pyplot keeps global state and may pick an interactive backend, and a report
built inside a notebook or a Ray driver must not change either.
"""
from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from typing import Sequence

import pandas as pd

from .stats import label, ordered_labels

#: Curves drawn in colour with a legend entry; the others are thin grey lines behind them.
HIGHLIGHT = 10


def available() -> bool:
    """True when matplotlib can be imported (checked without importing it)."""
    return importlib.util.find_spec("matplotlib") is not None


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _panels(count: int, width: float, height: float, **share):
    """A figure of ``count`` panels of ``width`` x ``height`` inches, at most 3 a row, the spare
    ones of the last row hidden: the figure and its 2-D array of axes."""
    columns = min(3, count)
    rows = math.ceil(count / columns)
    figure = _figure(width * columns, height * rows)
    axes = figure.subplots(rows, columns, squeeze=False, **share)
    for ax in axes.flat[count:]:
        ax.set_visible(False)
    return figure, axes


def _save(figure, path: Path) -> Path:
    figure.savefig(path, format="png")
    return path


def learning_curves(curves: pd.DataFrame, path: Path, metric: str = "val_accuracy") -> Path:
    """Mean ``metric`` per epoch, one line per point (``stats.learning_curves`` rows); the best
    :data:`HIGHLIGHT` points by last-epoch value in colour, the rest grey."""
    figure = _figure(9, 4.8)
    ax = figure.add_subplot()
    last = curves.sort_values("epoch").groupby("point", sort=False).last()["mean"].sort_values(ascending=False)
    top = list(last.index[:HIGHLIGHT])
    for point, curve in curves.groupby("point", sort=False):
        if point not in top:
            curve = curve.sort_values("epoch")
            ax.plot(curve["epoch"], curve["mean"], color="0.75", linewidth=0.8, zorder=1)
    for point in top:  # best first, so the legend reads as a ranking
        curve = curves[curves["point"] == point].sort_values("epoch")
        ax.plot(curve["epoch"], curve["mean"], marker="o", markersize=3, linewidth=1.6,
                label=curve["point_name"].iloc[0], zorder=2)
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"{metric} (mean over repeats)")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    title = metric.replace("_", " ") + " per epoch"
    ax.set_title(title + (f" (best {len(top)} of {len(last)} points in colour)" if len(last) > len(top) else ""))
    if top:
        ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    return _save(figure, path)


def by_value(points: pd.DataFrame, fields: Sequence[str], path: Path, metric: str = "test_accuracy") -> Path:
    """One panel per field: every point's mean ``metric`` (dots) at each value, with the mean
    over points and its std as a black bar."""
    figure, axes = _panels(len(fields), 4.0, 3.2, sharey=True)
    for ax, field in zip(axes.flat, fields):
        order = ordered_labels(points[field])
        position = points[field].map(label).map({text: i for i, text in enumerate(order)})
        # Spread dots sideways, deterministically, so points with equal accuracy stay visible.
        rank = position.groupby(position).cumcount()
        size = position.map(position.value_counts())
        offset = ((rank + 0.5) / size - 0.5) * 0.4
        ax.scatter(position + offset, points[metric], s=14, alpha=0.7, color="tab:blue", zorder=2)
        values = points[metric].groupby(position)
        means, stds = values.mean(), values.std(ddof=1).fillna(0.0)
        ax.errorbar(means.index, means, yerr=stds, fmt="_", color="black", markersize=22, capsize=4,
                    elinewidth=1.2, zorder=3)
        ax.set_xticks(range(len(order)), order, rotation=30 if max(map(len, order)) > 6 else 0)
        ax.set_xlim(-0.6, len(order) - 0.4)
        ax.set_title(field)
        ax.grid(axis="y", alpha=0.3)
    for ax in axes[:, 0]:
        ax.set_ylabel(metric)
    return _save(figure, path)


def pareto(points: pd.DataFrame, front: pd.DataFrame, path: Path, cost: str = "forward_flops",
           metric: str = "test_accuracy") -> Path:
    """``metric`` against ``cost`` for every point, the Pareto front as a red staircase."""
    figure = _figure(9, 4.8)
    ax = figure.add_subplot()
    data = points.dropna(subset=[cost, metric])
    ax.scatter(data[cost].astype(float), data[metric], s=18, color="tab:blue", alpha=0.6, label="point")
    if len(front):
        ax.step(front[cost].astype(float), front[metric], where="post", color="tab:red", linewidth=1.2, zorder=3)
        ax.scatter(front[cost].astype(float), front[metric], s=36, color="tab:red", zorder=4, label="Pareto front")
        for x, y, name in zip(front[cost].astype(float), front[metric], front["point_name"]):
            ax.annotate(name, (x, y), textcoords="offset points", xytext=(4, -10), fontsize=7)
    low, high = data[cost].min(), data[cost].max()
    if len(data) and low > 0 and high / low > 10:  # a grid of kernel sizes and depths spans decades
        ax.set_xscale("log")
    ax.set_xlabel(f"{cost} (per image)")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} against cost")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return _save(figure, path)


__all__ = ["available", "by_value", "learning_curves", "pareto"]
