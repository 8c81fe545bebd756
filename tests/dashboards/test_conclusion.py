"""The conclusion checked against the report's own tables, on grids whose effects are known.

The report is composed from simulated sweeps (simulated.py) and read back as a reader would read
report.md: the words at the top are parsed and every claim is looked up in the tables below it.
"""
import re
from pathlib import Path

import pytest
import yaml

from dashboards.analysis import Facts
from dashboards.document import to_markdown
from dashboards.nextsweep import SweepFile
from dashboards.sections import compose
from ledger import Selection
from tests.dashboards import simulated

SWEEP = """name: sim
repeats: 3
data: {source: bundled}
grid: {kernel_size: [3, 5, 7], depth: [4, 8, 16], pooling: [max, avg]}
"""


def report(tmp_path, runs, selection=Selection()) -> tuple[dict, str]:
    facts = Facts("sim", "sqlite:///unused.db", runs, selection, tmp_path, sweep=SweepFile(SWEEP))
    composed = compose(facts)
    if composed.next_yaml:
        (tmp_path / "next.yaml").write_text(composed.next_yaml)
    md = to_markdown(list(composed.sections), "sim")
    return parse(md), md


def parse(md: str) -> dict:
    """``{section title: {"items": [...], "tables": [[{column: cell}, ...], ...]}}``."""
    sections = {}
    for chunk in md.split("\n## ")[1:]:
        title, _, body = chunk.partition("\n")
        items = [line[2:].replace("**", "") for line in body.splitlines() if line.startswith("- ")]
        tables, rows = [], []
        for line in body.splitlines() + [""]:
            if line.startswith("|"):
                rows.append([c.strip() for c in line.strip("|").split(" | ")])
            elif rows:
                tables.append([dict(zip(rows[0], r)) for r in rows[2:]])
                rows = []
        sections[title] = {"items": items, "tables": tables}
    return sections


def check_against_tables(s: dict, tmp_path: Path, metric: str = "val_accuracy") -> list[str]:
    """Every claim of the conclusion, looked up in the tables; returns the claims checked."""
    items = s["Conclusion"]["items"]
    checked = []
    leaderboard = s[f"Leaderboard ({metric})"]["tables"][0]
    chosen_table = {r["metric"]: r for r in s["Chosen point"]["tables"][1]}
    means = s["Means by value"]["tables"][0]
    differences = s["Differences between values"]["tables"][0]
    # 1. The chosen point is the leaderboard's first; its numbers are the Chosen point table's.
    chosen = next(i for i in items if i.startswith("Chosen:"))
    assert chosen.startswith(f"Chosen: {leaderboard[0]['point']} (") and leaderboard[0]["tie"] == "chosen"
    for name in (metric, "test_accuracy"):
        row = chosen_table[name]
        quoted = f"{name} {row['mean']}" + ("" if row["95% interval"] == "–" else f" {row['95% interval']}")
        assert quoted in chosen, (quoted, chosen)
    checked.append("chosen")
    # 2. Every point named as a tie is marked "tie" in the leaderboard, with the same difference.
    ties = items[1]  # ties with the chosen point, or that there are none, or that they cannot be named
    if ties.startswith("Ties: none"):
        assert not [r for r in leaderboard if r["tie"] == "tie"]
        assert f"{leaderboard[1]['point']} {leaderboard[1]['vs chosen']}" in ties  # the runner-up, as listed
    elif ties.startswith("Ties: within"):
        marked = [r for r in leaderboard if r["tie"] == "tie"]
        assert marked and all(f"{r['point']} {r['vs chosen']}" in ties for r in marked[:3])
    checked.append("ties")
    # 3. Each "widen F upwards/downwards" is backed by the means table (edge value best) and the
    #    differences table (the edge beats its neighbour: the interval is clear of 0, the right way).
    for field, direction in re.findall(r"(\w+): widen (upwards|downwards), to ", " ".join(items)):
        rows = [r for r in means if r["field"] == field]
        edge = rows[-1] if direction == "upwards" else rows[0]
        assert edge["vs best"] == "best", (field, rows)
        neighbour = rows[-2] if direction == "upwards" else rows[1]
        a, b = (neighbour, edge) if direction == "upwards" else (edge, neighbour)
        diff = next(r for r in differences if r["field"] == field and r["a"] == a["value"] and r["b"] == b["value"])
        quoted = f"{diff['a']} -> {diff['b']}: {diff['diff']}" + (f" {diff['interval']}" if diff["interval"] != "–"
                                                                  else "")
        assert quoted in " ".join(items)
        if diff["interval"] != "–":
            lo, hi = map(float, diff["interval"].strip("[]").split(", "))
            higher = (lo > 0) if direction == "upwards" else (hi < 0)  # the edge's value is higher
            lower = (hi < 0) if direction == "upwards" else (lo > 0)
            assert lower if metric == "val_loss" else higher, (field, direction, diff)
        checked.append(f"widen {field} {direction}")
    # 4. Knobs named as ties: every value of theirs is the best or ties with it in the means table.
    for line in [i for i in items if i.startswith("Ties within noise:")]:
        for field in re.findall(r"(\w+) \(its values", line):
            assert {r["vs best"] for r in means if r["field"] == field} <= {"best", "tie"}
            checked.append(f"tie {field}")
    # 5. The knobs that matter come in the ANOVA table's order.
    anova = [r["term"] for r in s["Which knobs matter"]["tables"][0]]
    matter = next((i for i in items if i.startswith("Knobs that matter")), "")
    named = re.findall(r"\d\. (\w+):", matter)
    assert named == [t for t in anova if t in named]
    # 6. The next sweep file the conclusion names exists and holds the grid it states.
    if "The next sweep file" in " ".join(items):
        grid = yaml.safe_load((tmp_path / "next.yaml").read_text())["grid"]
        for field, old, new in re.findall(r"grid\.(\w+): (\[[^\]]*\]) -> (\[[^\]]*\])", " ".join(items)):
            assert grid[field] == yaml.safe_load(new)
        checked.append("next.yaml")
    return checked


@pytest.mark.parametrize("seed", range(3))
def test_a_rising_kernel_advises_widening_upwards_as_the_tables_show(tmp_path, seed):
    s, md = report(tmp_path, simulated.runs(seed, strong={3: 0.0, 5: 0.01, 7: 0.02}))
    checked = check_against_tables(s, tmp_path)
    assert "widen kernel_size upwards" in checked and "tie depth" in checked and "next.yaml" in checked
    assert yaml.safe_load((tmp_path / "next.yaml").read_text())["grid"]["kernel_size"] == [5, 7, 9]
    assert md.index("## Conclusion") < md.index("## Chosen point")


def test_the_past_contradiction_cannot_come_back(tmp_path):
    """The chosen point has the smallest kernel, the smaller kernel is worse on average: the
    report must not advise widening it downwards (it did, beside a table that said otherwise)."""
    runs = simulated.runs(0, strong={3: 0.0, 5: 0.015, 7: 0.006}, bonus={(3, 4, "max"): 0.04})
    s, md = report(tmp_path, runs)
    assert "kernel_size 3," in s["Conclusion"]["items"][0]  # the chosen point, at the edge
    checked = check_against_tables(s, tmp_path)
    assert not any(c.startswith("widen kernel_size") for c in checked)
    assert "kernel_size downwards" not in md and "kernel_size: widen" not in md


def test_on_a_loss_the_direction_follows_the_selection(tmp_path):
    runs = simulated.runs(1, strong={3: 0.0, 5: 0.01, 7: 0.02})
    s, _ = report(tmp_path, runs, Selection("val_loss", "min"))
    assert "widen kernel_size upwards" in check_against_tables(s, tmp_path, "val_loss")


def test_one_repeat_says_intervals_need_repeats_and_shows_none(tmp_path):
    s, md = report(tmp_path, simulated.runs(2, repeats=1, strong={3: 0.0, 5: 0.01, 7: 0.02}))
    items = s["Conclusion"]["items"]
    assert "intervals need repeats" in items[0] and "[" not in items[0]
    assert items[1].startswith("Ties: cannot be named")
    check_against_tables(s, tmp_path)
    zero_width = [m for m in re.findall(r"\[([-+]?[\d.]+), ([-+]?[\d.]+)\]", md) if m[0] == m[1]]
    assert zero_width == []
    assert "repeats: 3" in (tmp_path / "next.yaml").read_text()


def test_on_a_grid_with_skipped_points_the_words_follow_the_matched_table(tmp_path):
    runs = simulated.runs(0, strong={3: 0.0, 5: 0.01, 7: 0.02},
                          bonus={(k, 16, p): 0.06 for k in (3, 5) for p in ("max", "avg")})
    s, _ = report(tmp_path, runs)
    assert "widen kernel_size upwards" in check_against_tables(s, tmp_path)
    kernel = {r["value"]: r for r in s["Means by value"]["tables"][0] if r["field"] == "kernel_size"}
    assert kernel["7"]["vs best"] == "best" and float(kernel["5"]["mean"]) > float(kernel["7"]["mean"])
