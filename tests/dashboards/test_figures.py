"""The report's pictures (:mod:`dashboards.figures`), drawn and measured."""
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from dashboards import figures
from ledger import Selection


@pytest.fixture
def drawn(monkeypatch):
    """The figures drawn, as matplotlib objects (besides the PNG files)."""
    kept = []
    save = figures._save
    monkeypatch.setattr(figures, "_save", lambda figure, path: kept.append(figure) or save(figure, path))
    return kept


@pytest.mark.parametrize("shape", [(8, 1, 3, 3), (8, 1, 5, 5), (64, 1, 3, 3), (32, 3, 7, 7), (4, 1, 11, 11)])
def test_kernel_cells_are_at_least_8_pixels_with_a_colour_scale(tmp_path, shape):
    """A checkerboard of +1/-1 weights: along a row of the first tile the colour changes every
    cell, so the runs of one colour measure the cell's width in pixels."""
    f, c, kh, kw = shape
    weights = np.where(np.add.outer(np.arange(kh), np.arange(kw)) % 2 == 0, 1.0, -1.0)
    weights = np.broadcast_to(weights, shape).copy()
    path = figures.kernels(weights, tmp_path / "k.png", "test")
    image = np.asarray(Image.open(path).convert("RGB")).astype(int)
    red = (image[:, :, 0] > 150) & (image[:, :, 2] < 100)  # +1: the scale's red end
    rows = np.flatnonzero(red.any(axis=1))
    row = red[rows[len(rows) // 2 if c == 1 and f <= 16 else 0]]  # a row through the first row of tiles
    runs = np.diff(np.flatnonzero(np.diff(np.concatenate([[0], row.astype(int), [0]]))))[::2]
    assert runs.min() >= figures.MIN_CELL, runs
    assert image.shape[1] <= figures.MAX_WIDTH + 100  # the page shows it at its own size
    # The colour scale: a horizontal bar from blue to red under the tiles.
    bar = image[-40:-20]
    assert ((bar[:, :, 2] > 100) & (bar[:, :, 0] < 60)).any() and ((bar[:, :, 0] > 100) & (bar[:, :, 2] < 60)).any()


def test_categorical_knobs_are_points_numeric_knobs_a_line(tmp_path, drawn):
    means = {"kernel_size": pd.DataFrame({"kernel_size": ["3", "5", "7"], "points": 2, "mean": [0.9, 0.95, 0.93],
                                          "lo": [0.89, 0.94, 0.92], "hi": [0.91, 0.96, 0.94]}),
             "pooling": pd.DataFrame({"pooling": ["avg", "l2", "max"], "points": 3, "mean": [0.9, 0.92, 0.91],
                                      "lo": np.nan, "hi": np.nan})}
    figures.level_intervals(means, tmp_path / "levels.png", "val_accuracy", {"kernel_size"})
    axes = [ax for ax in drawn[0].axes if ax.get_visible()]
    styles = {ax.get_title(): ax.containers[0].lines[0].get_linestyle() for ax in axes}  # the means' own line
    assert styles == {"kernel_size": "-", "pooling (categories)": "None"}
    assert len(axes[0].collections) == 1 and not axes[1].collections  # error bars only where there are intervals


def test_learning_curves_rank_by_the_selection(tmp_path, drawn):
    curves = pd.DataFrame({"point": ["a", "a", "b", "b"], "point_name": ["a", "a", "b", "b"], "epoch": [1, 2, 1, 2],
                           "mean": [0.5, 0.3, 0.5, 0.4], "std": 0.0, "repeats": 1})
    figures.learning_curves(curves, tmp_path / "c.png", Selection("val_loss", "min"))
    legend = [t.get_text() for t in drawn[0].axes[0].get_legend().get_texts()]
    assert legend == ["a", "b"]  # lowest last-epoch loss first
