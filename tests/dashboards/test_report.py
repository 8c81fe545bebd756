"""build_report (:mod:`dashboards.report`) on real MLflow stores, and the quickstart's report in a browser.

* the quickstart-like store of quickstart_store.py (failures, a duplicate, a resumed run): the
  tables match the runs; no matplotlib means tables only; nothing of an earlier build survives;
* the known-effects stores of synthetic_store.py: the report finds the strong knob, chooses on
  validation, and writes a next.yaml that ``sweeper validate`` accepts where the advice is to widen;
* 2,000 runs in under 30 s of CPU (slow);
* the real quickstart, trained on Ray, its report opened in headless Chromium: it starts with the
  conclusion (slow; screenshots in .ci/artifacts/).
"""
from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.dashboards.quickstart_store import expected_points
from tests.dashboards.synthetic_store import write_store

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / ".ci" / "artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def chromium(tmp_path, url: str, *, shot: Path | None = None, width: int = 1280, height: int = 1400) -> str:
    """The page's DOM after its scripts ran (``--dump-dom``), or a screenshot into ``shot``."""
    args = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync",
            "--disable-background-networking", "--disable-component-update", "--hide-scrollbars",
            f"--user-data-dir={tmp_path / 'chromium'}", f"--window-size={width},{height}",
            "--virtual-time-budget=30000"]
    args += [f"--screenshot={shot}"] if shot else ["--dump-dom"]
    return subprocess.run([*args, url], capture_output=True, text=True, timeout=300).stdout


class HtmlTables(HTMLParser):
    """Every <table> of a page as rows of cell texts (the stdlib has no read_html backend)."""

    def __init__(self):
        super().__init__()
        self.tables, self.row, self.cell = [], None, None

    @classmethod
    def of(cls, text: str) -> list[list[list[str]]]:
        parser = cls()
        parser.feed(text)
        return parser.tables

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.row = []
        elif tag in ("td", "th"):
            self.cell = ""

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self.row is not None:
            self.row.append(self.cell.strip())
            self.cell = None
        elif tag == "tr":
            self.tables[-1].append(self.row)
            self.row = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell += data


def test_tables_match_the_runs_of_the_store(store, tmp_path):
    from dashboards import build_report, load_runs

    html_path = build_report(store.uri, "quickstart", tmp_path / "out")
    out = html_path.parent
    for name in ("report.md", "report.html", "runs.csv", "points.csv", "note.md", "learning_curves.png",
                 "levels.png", "heatmaps.png", "cost.png", "parallel.png"):
        assert (out / name).stat().st_size > 0, name
    points = pd.read_csv(out / "points.csv")
    got = {(k, p): a for k, p, a in zip(points["kernel_size"], points["pooling"], points["test_accuracy"])}
    assert got == pytest.approx(expected_points())
    # best_run_id is the repeat best on validation (here the second: repeat k adds 0.004 k).
    runs = load_runs(store.uri, "quickstart").set_index("run_id")
    assert all(runs.loc[r, "repeat"] == (0 if n == 1 else 1) for r, n in zip(points["best_run_id"], points["repeats"]))
    expected = {key: value - 0.01 for key, value in expected_points().items()}  # val = test - 0.01 here
    md = (out / "report.md").read_text()
    best = max(expected, key=expected.get)
    first_row = md.split("## Leaderboard")[1].split("\n")[4]
    assert first_row.startswith(f"| 1 | k{best[0]} {best[1]} | 2 | {expected[best]:.4f} |"), first_row
    tables = HtmlTables.of(html_path.read_text())
    anova = next(t for t in tables if t[0][:2] == ["term", "df"])
    assert [r[0] for r in anova if r[0] in ("kernel_size", "pooling")] and anova[-1][0] == "residual"
    text = html_path.read_text()
    assert text.count('src="data:image/png;base64,') == 5  # no model.npz in this hand-written store: no kernels
    assert "<script" not in text and 'src="http' not in text and "href=\"http" not in text
    assert text.index('class="lead"') < text.index("<nav>") < text.index('id="chosen-point"')


def test_without_matplotlib_the_report_is_tables_only(store, tmp_path, monkeypatch):
    from dashboards import figures
    from dashboards.report import build_report

    monkeypatch.setattr(figures, "available", lambda: False)
    html_path = build_report(store.uri, "quickstart", tmp_path)
    assert "tables only" in html_path.read_text() and not list(tmp_path.glob("*.png"))


def test_nothing_of_an_earlier_build_survives(store, tmp_path):
    from dashboards.report import build_report

    (tmp_path / "next.yaml").write_text("name: stale\n")
    (tmp_path / "old-plot.png").write_bytes(b"stale")
    build_report(store.uri, "quickstart", tmp_path)
    assert not (tmp_path / "old-plot.png").exists()
    next_yaml = tmp_path / "next.yaml"
    assert not next_yaml.exists() or "stale" not in next_yaml.read_text()


def test_the_report_of_a_known_effect_finds_it_and_chooses_on_validation(known, tmp_path):
    from dashboards.report import build_report
    from ledger import load_runs

    uri, _, _ = known
    md = build_report(uri, "known", tmp_path).with_suffix(".md").read_text()
    anova = md.split("## Which knobs matter")[1].split("## ")[0]
    row = next(line for line in anova.splitlines() if line.startswith("| kernel_size |"))
    assert float(row.split("|")[5].replace("<", "").strip()) < 0.05  # the p column
    runs = load_runs(uri, "known")
    best = runs.groupby("point_name")["val_accuracy"].mean().idxmax()
    trap = runs.groupby("point_name")["test_accuracy"].mean().idxmax()  # best on test, poor on validation
    assert trap != best and f"**Chosen:** {best} (" in md and "the best on val_accuracy (higher is better)" in md
    assert trap not in md.split("## Chosen point")[1].split("## ")[0]
    assert md.index("| depth | 4 | 8 |") < md.index("| depth | 8 | 16 |")  # numeric order
    assert "**Next: stop.**" in md and not (tmp_path / "next.yaml").exists()  # kernel 5 is bracketed by 3 and 7


def test_where_the_advice_is_to_widen_next_yaml_validates_and_the_conclusion_names_it(known, tmp_path, capsys):
    from dashboards.report import build_report
    from sweeper.app.cli import main

    uri, _, _ = known
    md = build_report(uri, "rising", tmp_path).with_suffix(".md").read_text()
    conclusion = md.split("## Conclusion")[1].split("## ")[0]
    assert "**Next: widen.** kernel_size: widen upwards, to 9" in conclusion
    assert f"The next sweep file, {tmp_path / 'next.yaml'}" in conclusion
    assert main(["validate", str(tmp_path / "next.yaml")]) == 0, capsys.readouterr().err
    doc = yaml.safe_load((tmp_path / "next.yaml").read_text())
    assert doc["name"] == "rising" and doc["grid"]["kernel_size"] == [5, 7, 9] and len(doc["grid"]["depth"]) == 1


@pytest.mark.slow
def test_report_over_2000_runs_in_under_30_seconds(tmp_path_factory, record_figure, monkeypatch):
    """``sweeper report`` in a fresh process (imports included) over 2,016 runs.

    The bound is on the process's CPU time (user + system): on a machine shared by many sessions
    the wall time measures the queue for the cores; both are recorded."""
    import resource

    from mlflow import MlflowClient

    uri = os.environ.get("REPORT_SCALE_STORE")
    if not uri:
        tmp = tmp_path_factory.mktemp("scale")
        monkeypatch.chdir(tmp)  # the store's artifact root, ./mlruns, is resolved when it opens
        uri = f"sqlite:///{tmp}/mlflow.db"
        MlflowClient(uri).search_experiments()
        written = write_store(uri, "scale-2000", 14)
        record_figure(f"synthetic store: {written['runs']} runs written in {written['seconds']:.0f} s")
    out = tmp_path_factory.mktemp("scale-report")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "sweeper.app.cli", "report", "scale-2000", "--tracking-uri", uri,
                    "--out", str(out), "--no-attach"], check=True, capture_output=True, timeout=600)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    points = pd.read_csv(out / "points.csv")
    assert points["repeats"].sum() >= 2000
    load = os.getloadavg()[0]
    record_figure(f"sweeper report over {int(points['repeats'].sum())} runs: {cpu:.1f} s CPU, {wall:.1f} s wall "
                  f"at load {load:.0f} on {os.cpu_count()} cores (target < 30 s)")
    assert cpu < 30


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")
def test_the_quickstarts_report_starts_with_the_conclusion(tmp_path, ray_local, monkeypatch, record_figure):
    """The acceptance of issue 18: sweeps/quickstart.yaml trained on Ray into a fresh store, its
    report opened in headless Chromium at 1280x800 shows the conclusion first (screenshots:
    .ci/artifacts/report-quickstart-first-screen.png and -full.png); next.yaml validates; the
    kernel picture has at least 8 pixels per kernel cell."""
    from PIL import Image

    from dashboards.figures import MIN_CELL, kernel_layout
    from sweeper.app.cli import main

    monkeypatch.chdir(tmp_path)  # the store and its artifacts live here
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    assert main(["run", str(REPO / "sweeps" / "quickstart.yaml"), "--tracking-uri", uri, "-q"]) == 0
    out = tmp_path / "reports" / "quickstart"
    assert main(["report", "quickstart", "--tracking-uri", uri, "--out", str(out)]) == 0
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    first, full = ARTIFACTS / "report-quickstart-first-screen.png", ARTIFACTS / "report-quickstart-full.png"
    chromium(tmp_path, (out / "report.html").as_uri(), shot=first, height=800)
    chromium(tmp_path, (out / "report.html").as_uri(), shot=full, height=6000)
    assert Image.open(first).size == (1280, 800) and first.stat().st_size > 20_000  # a blank page is a few kB
    dom = chromium(tmp_path, (out / "report.html").as_uri())
    body = dom.split("<body>", 1)[1]
    headings = re.findall(r"<h[12][^>]*>([^<]+)</h[12]>", body)
    assert headings[:2] == ["Sweep report: quickstart", "Conclusion"], headings[:4]
    lead = body[body.index('<section id="conclusion"'):].split("</section>", 1)[0]
    conclusion = html.unescape(" ".join(re.sub(r"<[^>]+>", " ", lead).split()))
    assert conclusion.startswith("Conclusion Chosen: ") and "Next:" in conclusion
    assert "intervals need repeats" in conclusion  # the quickstart has repeats: 1
    assert not re.search(r"\[(\d\.\d+), \1\]", dom)  # no zero-width interval anywhere
    if (out / "next.yaml").exists():
        assert str(out / "next.yaml") in conclusion and main(["validate", str(out / "next.yaml")]) == 0
    kernels = Image.open(out / "kernels.png")
    _, _, cell = kernel_layout((8, 1, 3, 3))
    assert cell >= MIN_CELL and kernels.width >= 8 * 4 * MIN_CELL  # 8 filters of 3 or 5 cells, 1-cell gaps
    record_figure("quickstart report, " + conclusion[:1500])
