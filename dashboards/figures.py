"""The report's pictures, drawn with matplotlib (when it is installed; it usually comes with mlflow).

* :func:`learning_curves`: the selection metric per epoch of the best points;
* :func:`level_intervals`: per knob, each value's mean over points with its interval, numeric
  knobs joined by a line, categorical ones (pooling, padding, activation) as separate points;
* :func:`heatmaps`: the mean selection metric for every pair of swept knobs;
* :func:`cost_fronts`: the metric against forward FLOPs, parameters and training time, each with
  its Pareto front;
* :func:`objective_front`: a sweep with several objectives, each pair of them with the Pareto
  front of all of them;
* :func:`parallel`: every point as a line across the swept knobs, coloured by the metric;
* :func:`kernels`: the chosen network's first-layer kernels on one colour scale.

Figures are built with :class:`matplotlib.figure.Figure` and the Agg canvas directly, never
through ``pyplot``: pyplot keeps global state and may pick an interactive backend, and a report
built inside a notebook or a Ray driver must not change either. Value axes follow the natural
order of :func:`dashboards.stats.ordered_labels` (4 < 8 < 16).
"""
from __future__ import annotations

import importlib.util
import itertools
import math
from pathlib import Path
from typing import Collection, Optional, Sequence

import numpy as np
import pandas as pd

from ledger import Selection

from .stats import label, ordered_labels, pareto_front

#: Curves drawn in colour with a legend entry; the others are thin grey lines behind them.
HIGHLIGHT = 10
#: Kernel pictures: screen pixels per kernel cell (at least), and the widest picture drawn.
MIN_CELL, MAX_WIDTH = 8, 1000


def available() -> bool:
    """True when matplotlib can be imported (checked without importing it)."""
    return importlib.util.find_spec("matplotlib") is not None


def _figure(width: float, height: float, layout: Optional[str] = "constrained"):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100, layout=layout)
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


def learning_curves(curves: pd.DataFrame, path: Path, selection: Selection) -> Path:
    """Mean selection metric per epoch, one line per point (``stats.learning_curves`` rows); the
    best :data:`HIGHLIGHT` points by last-epoch value in colour, the rest grey."""
    metric = selection.metric
    figure = _figure(9, 4.8)
    ax = figure.add_subplot()
    last = curves.sort_values("epoch").groupby("point", sort=False).last()["mean"]
    last = last.sort_values(ascending=selection.mode == "min")
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


def level_intervals(means: dict[str, pd.DataFrame], path: Path, metric: str, numeric: Collection[str]) -> Path:
    """One panel per knob: ``means[knob]`` rows (:func:`dashboards.inference.level_means`), each
    value a point with its interval (none drawn where there is none). Knobs in ``numeric`` are
    joined by a line, in numeric order; the others are categories, and a line would invent an
    order between them."""
    fields = list(means)
    figure, axes = _panels(len(fields), 4.0, 3.0, sharey=True)
    for ax, field in zip(axes.flat, fields):
        table = means[field]
        x = np.arange(len(table))
        err = np.vstack([table["mean"] - table["lo"], table["hi"] - table["mean"]]).astype(float)
        ax.errorbar(x, table["mean"], yerr=None if np.isnan(err).all() else err, fmt="o", color="tab:blue",
                    capsize=5, elinewidth=1.4, linestyle="-" if field in numeric else "none", alpha=0.9)
        ax.set_xticks(x, table[field].astype(str))
        ax.set_xlim(-0.5, len(table) - 0.5)
        ax.set_title(field + ("" if field in numeric else " (categories)"))
        ax.grid(axis="y", alpha=0.3)
    for ax in axes[:, 0]:
        ax.set_ylabel(f"mean {metric}")
    return _save(figure, path)


def heatmaps(table: pd.DataFrame, fields: Sequence[str], path: Path, metric: str) -> Path:
    """One panel per pair of ``fields``: mean of ``table["y"]`` (per trial, averaged) per cell."""
    pairs = list(itertools.combinations(fields, 2))
    figure, axes = _panels(len(pairs), 4.2, 3.4)
    order = table.attrs["order"]
    points = table.groupby("point", sort=False).agg(y=("y", "mean"), **{f: (f, "first") for f in fields})
    low, high = points["y"].min(), points["y"].max()
    for ax, (a, b) in zip(axes.flat, pairs):
        grid = points.pivot_table(index=a, columns=b, values="y", aggfunc="mean")
        grid = grid.reindex(index=[v for v in order[a] if v in grid.index],
                            columns=[v for v in order[b] if v in grid.columns])
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


COSTS = (("forward_flops", "forward FLOPs per image"), ("n_params", "parameters"),
         ("train_seconds", "training seconds"))


def cost_fronts(points: pd.DataFrame, path: Path, selection: Selection, chosen: Optional[str] = None) -> Path:
    """The selection metric against each cost of :data:`COSTS` present, the Pareto front in red,
    the chosen point ringed."""
    metric = selection.metric
    costs = [(c, t) for c, t in COSTS if c in points.columns and points[c].notna().any()]
    figure = _figure(4.2 * max(len(costs), 1), 3.6)
    axes = figure.subplots(1, max(len(costs), 1), squeeze=False)[0]
    for ax, (cost, title) in zip(axes, costs):
        data = points.dropna(subset=[cost, metric])
        x = data[cost].astype(float)
        ax.scatter(x, data[metric], s=14, color="tab:blue", alpha=0.6)
        front = pareto_front(data, cost, selection)
        ax.step(front[cost].astype(float), front[metric], where="post", color="tab:red", linewidth=1.2)
        ax.scatter(front[cost].astype(float), front[metric], s=28, color="tab:red", zorder=3)
        if chosen is not None and (data["point"] == chosen).any():
            row = data[data["point"] == chosen].iloc[0]
            ax.scatter([float(row[cost])], [row[metric]], s=120, facecolors="none", edgecolors="black", zorder=4,
                       label="chosen")
            ax.legend(fontsize=8, loc="best")
        if len(x) and x.min() > 0 and x.max() / x.min() > 10:
            from matplotlib.ticker import NullFormatter

            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())  # "3x10^4 4x10^4 ..." labels run into each other
        ax.set_xlabel(title)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(metric)
    return _save(figure, path)


def _log_if_wide(ax, values: pd.Series) -> None:
    if len(values) and values.min() > 0 and values.max() / values.min() > 10:
        from matplotlib.ticker import NullFormatter

        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())


def objective_front(ranked: pd.DataFrame, objectives: Sequence[tuple[str, str]], path: Path,
                    chosen: Optional[str] = None) -> Path:
    """Every point's mean of each pair of objectives (``ranked``: :func:`ledger.rank_points` with
    the objectives, so it has their means and ``front``); the Pareto front of all objectives in
    red, joined in order along the first axis when there are two; the chosen point ringed."""
    pairs = list(itertools.combinations(range(len(objectives)), 2))
    figure, axes = _panels(len(pairs), 4.6, 3.8)
    for ax, (i, j) in zip(axes.flat, pairs):
        (x, x_mode), (y, y_mode) = objectives[i], objectives[j]
        data = ranked.dropna(subset=[x, y])
        rest, front = data[~data["front"].astype(bool)], data[data["front"].astype(bool)].sort_values(x)
        ax.scatter(rest[x].astype(float), rest[y].astype(float), s=14, color="tab:blue", alpha=0.6, label="dominated")
        ax.scatter(front[x].astype(float), front[y].astype(float), s=28, color="tab:red", zorder=3,
                   label="Pareto front")
        if len(objectives) == 2 and len(front) > 1:
            ax.plot(front[x].astype(float), front[y].astype(float), color="tab:red", linewidth=1.0)
        if chosen is not None and chosen in data.index:
            ax.scatter([float(data.loc[chosen, x])], [float(data.loc[chosen, y])], s=140, facecolors="none",
                       edgecolors="black", linewidths=1.5, zorder=4, label="chosen")
        _log_if_wide(ax, data[x].astype(float))
        ax.set_xlabel(f"{x} ({'higher' if x_mode == 'max' else 'lower'} is better)")
        ax.set_ylabel(f"{y} ({'higher' if y_mode == 'max' else 'lower'} is better)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    return _save(figure, path)


def parallel(points: pd.DataFrame, fields: Sequence[str], path: Path, metric: str,
             chosen: Optional[str] = None) -> Path:
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
    for index in data[metric].sort_values().index:  # highest drawn last, on top
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


def kernel_layout(shape: tuple[int, int, int, int]) -> tuple[int, int, int]:
    """``(per_row, rows, cell)`` for weights of ``shape (F, C, kh, kw)``: filters per row, rows of
    filters, and screen pixels per kernel cell (>= :data:`MIN_CELL`; the picture's width stays
    under :data:`MAX_WIDTH` so the page does not shrink it)."""
    f, _, _, kw = shape
    per_row = max(1, min(f, 16, (MAX_WIDTH // MIN_CELL + 1) // (kw + 1)))
    cell = max(MIN_CELL, min(32, MAX_WIDTH // (per_row * (kw + 1))))
    return per_row, math.ceil(f / per_row), cell


def kernels(weights: np.ndarray, path: Path, title: str, limit: int = 64) -> Path:
    """The first ``limit`` filters of ``weights (F, C, kh, kw)``, each a tile of its ``C``
    channels stacked, on one diverging colour scale centred at 0 (blue negative, red positive),
    with the scale below: tiles can be compared with each other, unlike pictures scaled per tile."""
    from matplotlib import colormaps

    w = np.asarray(weights, dtype=float)[:limit]
    f, c, kh, kw = w.shape
    per_row, rows, cell = kernel_layout(w.shape)
    grid = np.full((rows * c * (kh + 1) - 1, per_row * (kw + 1) - 1), np.nan)
    for i in range(f):
        row, column = divmod(i, per_row)
        for j in range(c):
            y, x = (row * c + j) * (kh + 1), column * (kw + 1)
            grid[y:y + kh, x:x + kw] = w[i, j]
    width, height = grid.shape[1] * cell, grid.shape[0] * cell
    left, top, bottom = 12, 34, 62  # pixels around the image: title above, colour scale below
    fig_w, fig_h = max(width + 2 * left, 360), height + top + bottom
    figure = _figure(fig_w / 100, fig_h / 100, layout=None)
    ax = figure.add_axes([left / fig_w, bottom / fig_h, width / fig_w, height / fig_h])
    bound = float(np.nanmax(np.abs(grid))) or 1.0
    image = ax.imshow(grid, cmap=colormaps["RdBu_r"].with_extremes(bad="white"), vmin=-bound, vmax=bound,
                      interpolation="nearest", aspect="auto")
    ax.set_axis_off()
    scale = figure.add_axes([left / fig_w, 22 / fig_h, min(width, 320) / fig_w, 10 / fig_h])
    figure.colorbar(image, cax=scale, orientation="horizontal").ax.tick_params(labelsize=7)
    figure.text(left / fig_w, 1 - 8 / fig_h, title, fontsize=9, va="top")
    figure.savefig(path, format="png", dpi=100)
    return path


__all__ = ["COSTS", "available", "cost_fronts", "heatmaps", "kernel_layout", "kernels", "learning_curves",
           "level_intervals", "parallel"]
