"""The statistics on sweeps with known effects (see simulated.py): 50 simulated stores."""
import math

import numpy as np
import pandas as pd
import pytest

from dashboards import checks, inference, stats
from ledger import Selection, choose_point, rank_points
from tests.dashboards import simulated

FIELDS = ["kernel_size", "depth", "pooling"]
STORES = 50


def analyse(seed: int):
    runs = simulated.runs(seed)
    table = inference.trials(runs, FIELDS, "val_accuracy")
    result, notes = inference.anova(table, FIELDS)
    return runs, table, result.set_index("term"), notes


@pytest.fixture(scope="module")
def fifty():
    return [analyse(seed) for seed in range(STORES)]


def test_strong_knob_is_significant_and_null_knob_rarely(fifty, record_figure):
    strong = [a.loc["kernel_size", "p"] for _, _, a, _ in fifty]
    null = [a.loc["depth", "p"] for _, _, a, _ in fifty]
    assert max(strong) < 0.05
    false_positive = float(np.mean(np.array(null) < 0.05))
    record_figure(f"null knob (depth) significant at 5% in {false_positive:.0%} of {STORES} simulated stores")
    assert false_positive <= 0.10  # nominal 5%; 50 stores put a binomial spread of +-3% on it
    first = fifty[0][2]
    assert first.loc["kernel_size", "eta2_partial"] > 0.5 > first.loc["depth", "eta2_partial"]
    # The two missing points leave the kernel 7 x depth 16 cell empty: kernel x depth loses one of its
    # 4 df (the rank of the design, not the count of columns); depth x pooling keeps its 2.
    assert first.loc["kernel_size", "df"] == 2 and first.loc["kernel_size x depth", "df"] == 3
    assert first.loc["depth x pooling", "df"] == 2 and first.loc["residual", "df"] == 48 - 15  # 16 points x 3 repeats, rank 15


def test_the_chosen_point_is_best_on_validation_not_test(fifty):
    for runs, *_ in fifty[:10]:
        means = runs.groupby("point")["val_accuracy"].mean()
        chosen = choose_point(runs)
        assert chosen == means.idxmax()
        trap = runs.loc[runs["point_name"] == "k3 d8 avg", "point"].iloc[0]
        assert runs.groupby("point")["test_accuracy"].mean().idxmax() == trap != chosen


def test_intervals_cover_the_true_means(fifty, record_figure):
    point_cover, diff_cover = [], []
    truth = {f"k{k} d{d} {p}": simulated.true_mean(k, d, p) for k, d, p in simulated.points()}
    for runs, table, _, _ in fifty:
        iv = inference.point_intervals(table)
        point_cover += [lo <= truth[name] <= hi for name, lo, hi in zip(iv["point_name"], iv["lo"], iv["hi"])]
        diffs = inference.level_differences(table, "kernel_size", FIELDS).set_index(["a", "b"])
        for (a, b), row in diffs.iterrows():
            true = simulated.STRONG[int(b)] - simulated.STRONG[int(a)]
            diff_cover.append(row["lo"] <= true <= row["hi"])
    record_figure(f"95% point intervals cover the true mean in {np.mean(point_cover):.1%} of "
                  f"{len(point_cover)} ({STORES} stores); kernel differences in {np.mean(diff_cover):.1%}")
    assert np.mean(point_cover) >= 0.90 and np.mean(diff_cover) >= 0.90


def test_differences_to_the_chosen_point_cover_the_truth(fifty, record_figure):
    """inference.versus: every point against one, paired by repeat (the Leaderboard's "vs chosen")."""
    cover = []
    for runs, table, _, _ in fifty:
        names = table.groupby("point")["point_name"].first()
        truth = {p: simulated.true_mean(*_values(names[p])) for p in names.index}
        reference = names.index[0]
        v = inference.versus(table, reference)
        assert reference not in v.index and (v["pairs"] == simulated.REPEATS).all()
        cover += [lo <= truth[p] - truth[reference] <= hi for p, lo, hi in zip(v.index, v["lo"], v["hi"])]
    record_figure(f"95% intervals of differences to one point cover the truth in {np.mean(cover):.1%} of {len(cover)}")
    assert np.mean(cover) >= 0.90
    one = inference.trials(simulated.runs(3, repeats=1), FIELDS, "val_accuracy")
    assert inference.versus(one, one["point"].iloc[0])["lo"].isna().all()  # one repeat: no interval


def _values(name: str) -> tuple:
    k, d, pooling = name.split()
    return int(k[1:]), int(d[1:]), pooling


def test_anova_equals_statsmodels_type_ii_on_a_balanced_grid():
    import statsmodels.api as sm
    import statsmodels.formula.api as smf

    runs = simulated.runs(7)
    runs = runs[~runs["point_name"].str.startswith("k7")]  # kernel 3/5 x 3 depths x 2 poolings: balanced
    table = inference.trials(runs, FIELDS, "val_accuracy")
    ours, _ = inference.anova(table, FIELDS)
    fit = smf.ols("y ~ (C(kernel_size) + C(depth) + C(pooling)) ** 2 + C(repeat)", table).fit()
    theirs = sm.stats.anova_lm(fit, typ=2)
    assert ours.set_index("term").loc["kernel_size", "sum_sq"] == pytest.approx(theirs.loc["C(kernel_size)", "sum_sq"])
    assert ours.set_index("term").loc["depth x pooling", "p"] == pytest.approx(
        theirs.loc["C(depth):C(pooling)", "PR(>F)"])


def test_one_repeat_says_what_cannot_be_estimated():
    runs = simulated.runs(3, repeats=1)
    table = inference.trials(runs, FIELDS, "val_accuracy")
    result, notes = inference.anova(table, FIELDS)
    assert result["p"].isna().all() and result["share"].notna().any()
    assert any("one repeat" in n for n in notes)
    assert inference.point_intervals(table)["lo"].isna().all()
    assert inference.level_differences(table, "kernel_size", FIELDS)["lo"].isna().all()
    assert "one repeat" in checks.noise(math.nan, rank_points(runs), pd.DataFrame(), "val_accuracy")[0]


def test_levels_in_numeric_order_and_importance():
    runs = simulated.runs(1)
    runs["depth"] = runs["depth"].astype("Int64")
    table = inference.trials(runs, FIELDS, "val_accuracy")
    assert list(inference.level_means(table, "depth")["depth"]) == ["4", "8", "16"]
    assert table.attrs["order"]["depth"] == ["4", "8", "16"]  # numbers, not text ("16" < "4")
    share = inference.importance(stats.per_point(runs, Selection()), FIELDS, "val_accuracy").set_index("field")["share"]
    assert share.idxmax() == "kernel_size" and share["depth"] < 0.1
