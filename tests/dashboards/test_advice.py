"""What to try next (:mod:`dashboards.advice`), on simulated sweeps whose truth is known (simulated.py).

Truth of every sweep here: kernel size carries the effect given, pooling a small one (max +0.002),
depth none; 3 repeats unless said, seed noise 0.004 per trial.
"""
from pathlib import Path

import pytest

from dashboards.analysis import Facts, analyse
from ledger import Selection
from tests.dashboards import simulated

RISING = {3: 0.0, 5: 0.01, 7: 0.02}     # the best kernel is the largest tried
PEAKED = {3: 0.0, 5: 0.015, 7: 0.006}   # the best kernel is inside the grid
SPARSE = {3: 0.0, 7: 0.02, 11: 0.0}     # inside, with untried sizes on both sides


def advice(runs, selection=Selection()):
    found = analyse(Facts("sim", "sqlite:///unused.db", runs, selection, Path("unused")))
    return found.advice, {k.field: k for k in found.advice.knobs}


@pytest.mark.parametrize("seed", range(3))
def test_a_rising_knob_widens_towards_its_best_and_the_null_knob_ties(seed):
    result, knobs = advice(simulated.runs(seed, strong=RISING))
    assert result.verdict == "widen"
    assert knobs["kernel_size"].action == "widen" and knobs["kernel_size"].values == (5, 7, 9)
    assert "widen upwards, to 9" in knobs["kernel_size"].reason
    assert knobs["depth"].action == "tie" and len(knobs["depth"].values) == 1  # fixed at the chosen point's depth
    assert result.knobs[0].field == "kernel_size"  # ranked first: the largest sum of squares


def test_the_same_on_a_loss_widens_the_same_way():
    """val_loss = 1 - val_accuracy, lower is better: the best kernel is still the largest."""
    result, knobs = advice(simulated.runs(0, strong=RISING), Selection("val_loss", "min"))
    assert knobs["kernel_size"].action == "widen" and knobs["kernel_size"].values == (5, 7, 9)
    assert knobs["kernel_size"].best == "7"


@pytest.mark.parametrize("seed", range(3))
def test_a_best_value_inside_the_grid_is_not_widened(seed):
    result, knobs = advice(simulated.runs(seed, strong=PEAKED))
    assert knobs["kernel_size"].action == "bracketed" and knobs["kernel_size"].best == "5"
    assert result.verdict == "stop"  # nothing to widen, no odd size between 3, 5 and 7


def test_a_chosen_point_at_the_edge_does_not_widen_where_the_averages_fall():
    """The bug of a past report: the chosen point had the smallest kernel (a single lucky point),
    the table showed the smaller kernel worse on average, and the report said "widen downwards"."""
    runs = simulated.runs(0, strong=PEAKED, bonus={(3, 4, "max"): 0.04})
    found = analyse(Facts("sim", "x", runs, Selection(), Path("unused")))
    assert found.chosen_row["kernel_size"] == 3  # the chosen point sits at the edge
    kernel = {k.field: k for k in found.advice.knobs}["kernel_size"]
    assert kernel.action != "widen" and "downwards" not in kernel.reason and kernel.best == "5"
    means = found.effects.means["kernel_size"].set_index("kernel_size")["mean"]
    assert means["3"] < means["5"]


def test_inside_with_room_refines_between_the_best_and_its_worse_neighbours():
    result, knobs = advice(simulated.runs(0, strong=SPARSE))
    assert knobs["kernel_size"].action == "refine" and knobs["kernel_size"].values == (3, 5, 7, 9, 11)
    assert result.verdict == "refine"


def test_a_categorical_knob_keeps_the_values_that_tie_with_its_best():
    runs = simulated.runs(0, strong=RISING)
    runs.loc[runs["pooling"] == "avg", "val_accuracy"] -= 0.02  # avg clearly worse
    result, knobs = advice(runs)
    assert knobs["pooling"].action == "narrow" and knobs["pooling"].values == ("max",)


def test_one_repeat_widens_untested_and_asks_for_repeats():
    result, knobs = advice(simulated.runs(0, repeats=1, strong=RISING))
    assert not result.noise_known and result.repeats == 3 and result.verdict == "widen"
    assert knobs["kernel_size"].action == "widen" and "untested: one repeat" in knobs["kernel_size"].reason
    assert knobs["depth"].action == "keep" and knobs["depth"].values is None  # no tie can be named
    assert knobs["depth"].tied == ()


def test_one_repeat_and_nothing_at_an_edge_still_asks_for_repeats():
    result, _ = advice(simulated.runs(0, repeats=1, strong=PEAKED))
    assert result.verdict == "refine" and result.repeats == 3


def test_on_a_grid_with_skipped_points_the_matched_differences_decide():
    """Kernel 7 was never trained at depth 16 (infeasible), and depth 16 adds 0.06: the plain
    mean of kernel 5 gains from it and passes kernel 7's, yet at every depth both were trained
    at, 7 beats 5. The advice follows the matched comparison, as the differences table does."""
    runs = simulated.runs(0, strong=RISING, bonus={(k, 16, p): 0.06 for k in (3, 5) for p in ("max", "avg")})
    found = analyse(Facts("sim", "x", runs, Selection(), Path("unused")))
    means = found.effects.means["kernel_size"].set_index("kernel_size")["mean"]
    assert means["5"] > means["7"]
    kernel = {k.field: k for k in found.advice.knobs}["kernel_size"]
    assert kernel.best == "7" and kernel.action == "widen" and kernel.values == (5, 7, 9)


def test_a_best_value_at_the_bound_of_the_field_is_not_widened():
    """Kernel size 1 is best and the smallest a sweep file accepts: nothing lies beyond it."""
    result, knobs = advice(simulated.runs(0, strong={1: 0.02, 2: 0.01, 3: 0.0}))
    assert knobs["kernel_size"].action == "bound" and knobs["kernel_size"].best == "1"
    assert "smallest value a sweep file accepts" in knobs["kernel_size"].reason and result.verdict != "widen"


def test_an_effect_the_anova_finds_is_not_called_a_tie_when_no_pair_is_told_apart():
    """One knob, three points: the ANOVA pools the noise over every point, each pairwise
    difference has two degrees of freedom of its own; the knob is kept, neither fixed nor moved."""
    runs = simulated.runs(0)
    runs = runs[(runs["depth"] == 4) & (runs["pooling"] == "max")]
    result, knobs = advice(runs)
    kernel = knobs["kernel_size"]
    assert kernel.p < 0.05 and len(kernel.tied) == 3 and kernel.action == "keep" and kernel.values is None
