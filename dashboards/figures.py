"""The report's statistical pictures (matplotlib, Agg canvas, no pyplot; see :mod:`dashboards.plots`).

* :func:`heatmaps`: the mean selection metric for every pair of swept fields;
* :func:`level_intervals`: per field, each value's mean over points with its interval;
* :func:`cost_fronts`: the metric against forward FLOPs, parameters and training time, each with
  its Pareto front;
* :func:`parallel`: every point as a line across the swept fields, coloured by the metric.

Value axes follow the natural order of :func:`dashboards.stats.ordered_labels` (4 < 8 < 16).
"""
from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from .plots import _figure, _panels, _save
from .stats import label, ordered_labels, pareto_front


def heatmaps(table: pd.DataFrame, fields: Sequence[str], path: Path, metric: str) -> Path:
    """One panel per pair of ``fields``: mean of ``table["y"]`` (per trial, averaged) per cell."""
    pairs = list(itertools.combinations(fields, 2))
    figure, axes = _panels(len(pairs), 4.2, 3.4)
    order = table.attrs["order"]
    points = table.groupby("point", sort=False).agg(y=("y", "mean"), **{f: (f, "first") for f in fields})
    low, high = points["y"].min(), points["y"].max()
    for ax, (a, b) in zip(axes.flat, pairs):
        grid = points.pivot_table(index=a, columns=b, values="y", aggfunc="mean")
        grid = grid.reindex(index=[v for v in order[a] if v in grid.index], columns=[v for v in order[b] if v in grid.columns])
        image = ax.imshow(grid.to_numpy(float), cmap="viridis", vmin=low, vmax=high, aspect="auto")
        for (i, j), value in np.ndenumerate(grid.to_numpy(float)):
            if not math.isnan(value):
                ax.text(j, i, f"{value:.3f}", ha="center", va="center", fontsize=7,
                        color="white" if value < (low + high) / 2 else "black")
        ax.set_xticks(range(len(grid.columns)), grid.columns, fontsize=8)
        ax.set_yticks(range(len(grid.index)), grid.index, fontsize=8)
        ax.set_xlabel(b)
        ax.set_ylabel(a)
    figure.colorbar(image, ax=axes, shrink=0.6, label=f"mean {metric}")
    return _save(figure, path)


def level_intervals(means: dict[str, pd.DataFrame], path: Path, metric: str) -> Path:
    """One panel per field: ``means[field]`` rows (:func:`dashboards.inference.level_means`)."""
    fields = list(means)
    figure, axes = _panels(len(fields), 4.0, 3.0, sharey=True)
    for ax, field in zip(axes.flat, fields):
        table = means[field]
        x = np.arange(len(table))
        err = np.vstack([table["mean"] - table["lo"], table["hi"] - table["mean"]]).astype(float)
        ax.errorbar(x, table["mean"], yerr=None if np.isnan(err).all() else err, fmt="o", color="tab:blue",
                    capsize=5, elinewidth=1.4)
        ax.plot(x, table["mean"], color="tab:blue", alpha=0.4)
        ax.set_xticks(x, table[field].astype(str))
        ax.set_xlim(-0.5, len(table) - 0.5)
        ax.set_title(field)
        ax.grid(axis="y", alpha=0.3)
    for ax in axes[:, 0]:
        ax.set_ylabel(f"mean {metric}")
    return _save(figure, path)


COSTS = (("forward_flops", "forward FLOPs per image"), ("n_params", "parameters"), ("train_seconds", "training seconds"))


def cost_fronts(points: pd.DataFrame, path: Path, metric: str, chosen: str | None = None) -> Path:
    """``metric`` against each cost of :data:`COSTS` present, the Pareto front in red, the chosen point ringed."""
    costs = [(c, t) for c, t in COSTS if c in points.columns and points[c].notna().any()]
    figure = _figure(4.2 * max(len(costs), 1), 3.6)
    axes = figure.subplots(1, max(len(costs), 1), squeeze=False)[0]
    for ax, (cost, title) in zip(axes, costs):
        data = points.dropna(subset=[cost, metric])
        x = data[cost].astype(float)
        ax.scatter(x, data[metric], s=14, color="tab:blue", alpha=0.6)
        front = pareto_front(data, cost, metric)
        ax.step(front[cost].astype(float), front[metric], where="post", color="tab:red", linewidth=1.2)
        ax.scatter(front[cost].astype(float), front[metric], s=28, color="tab:red", zorder=3)
        if chosen is not None and (data["point"] == chosen).any():
            row = data[data["point"] == chosen].iloc[0]
            ax.scatter([float(row[cost])], [row[metric]], s=120, facecolors="none", edgecolors="black", zorder=4,
                       label="chosen")
            ax.legend(fontsize=8, loc="lower right")
        if len(x) and x.min() > 0 and x.max() / x.min() > 10:
            from matplotlib.ticker import NullFormatter

            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())  # "3x10^4 4x10^4 ..." labels run into each other
        ax.set_xlabel(title)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(metric)
    return _save(figure, path)


def parallel(points: pd.DataFrame, fields: Sequence[str], path: Path, metric: str, chosen: str | None = None) -> Path:
    """Every point as a line over the swept fields (values spread over [0, 1] in natural order)
    and the metric (scaled to [0, 1]); colour: the metric; black: the chosen point."""
    import matplotlib
    from matplotlib import cm, colors

    data = points.dropna(subset=[metric])
    axes_names = [*fields, metric]
    figure = _figure(max(7.0, 1.6 * len(axes_names)), 4.2)
    ax = figure.add_subplot()
    scaled, ticks = {}, {}
    for field in fields:
        order = ordered_labels(data[field])
        where = {v: (i / (len(order) - 1) if len(order) > 1 else 0.5) for i, v in enumerate(order)}
        scaled[field] = data[field].map(label).map(where)
        ticks[field] = where
    low, high = data[metric].min(), data[metric].max()
    scaled[metric] = (data[metric] - low) / ((high - low) or 1.0)
    norm = colors.Normalize(low, high)
    colormap = matplotlib.colormaps["viridis"]
    x = np.arange(len(axes_names))
    # A small, deterministic vertical spread per point, so lines sharing a value stay apart.
    spread = pd.Series((np.arange(len(data)) % 9 - 4) * 0.008, index=data.index)
    for field in fields:
        scaled[field] = scaled[field] + spread
    order = data[metric].sort_values().index  # best drawn last, on top
    for index in order:
        y = [scaled[name][index] for name in axes_names]
        is_chosen = chosen is not None and data.loc[index, "point"] == chosen
        ax.plot(x, y, color="black" if is_chosen else colormap(norm(data.loc[index, metric])),
                linewidth=2.4 if is_chosen else 1.0, alpha=1.0 if is_chosen else 0.7, zorder=3 if is_chosen else 2)
    for i, name in enumerate(axes_names):
        ax.axvline(i, color="0.6", linewidth=0.8, zorder=1)
        if name in ticks:
            for value, position in ticks[name].items():
                ax.annotate(value, (i, position), xytext=(3, 0), textcoords="offset points", fontsize=7, va="center")
        else:
            for value in (low, high):
                ax.annotate(f"{value:.3f}", (i, (value - low) / ((high - low) or 1.0)), xytext=(3, 0),
                            textcoords="offset points", fontsize=7, va="center")
    ax.set_xticks(x, axes_names)
    ax.set_yticks([])
    ax.set_xlim(-0.2, len(axes_names) - 0.6)
    figure.colorbar(cm.ScalarMappable(norm=norm, cmap=colormap), ax=ax, label=metric)
    return _save(figure, path)


__all__ = ["COSTS", "cost_fronts", "heatmaps", "level_intervals", "parallel"]
