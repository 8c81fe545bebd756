"""Reports from real MLflow stores written through the project's writer (tests/dashboards/synthetic_store.py).

* a small store with known effects: the report finds the strong knob, chooses on validation,
  attaches itself to the parent run with its note, and compares two sweeps;
* 2,000 runs: the report builds in under 30 s (slow: writing the store takes minutes here; set
  ``REPORT_SCALE_STORE`` to a store written by ``write_store(uri, "scale-2000", 14)`` to reuse one).
"""
from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

from tests.dashboards.synthetic_store import write_store

SMALL = {"kernel_size": [3, 5, 7], "depth": [4, 8, 16], "pooling": ["max", "avg"], "stride": [1], "padding": [0]}


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    from mlflow import MlflowClient

    tmp = tmp_path_factory.mktemp("report-store")
    uri = f"sqlite:///{tmp}/mlflow.db"
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp)  # artifacts under this folder
        MlflowClient(uri).search_experiments()
        written = write_store(uri, "known", 3, SMALL, seed=1)
        write_store(uri, "other", 3, SMALL, seed=2)
    return uri, written, tmp


def test_report_on_a_store_with_known_effects(small, tmp_path):
    from sweeper.app.report import report_command
    from ledger import Tracker, load_runs

    uri, written, _ = small
    assert report_command("known", uri, str(tmp_path), attach=True, against="other") == 0
    md = (tmp_path / "report.md").read_text()
    anova = md.split("## Which knobs matter")[1].split("## ")[0]
    row = next(line for line in anova.splitlines() if line.startswith("| kernel_size |"))
    assert float(row.split("|")[5].replace("<", "").strip()) < 0.05  # the p column
    runs = load_runs(uri, "known")
    best = runs.groupby("point_name")["val_accuracy"].mean().idxmax()
    assert f"{best}: the best mean val_accuracy" in md and "k3 d4 pmax" not in md.split("## Chosen")[1][:200]
    assert md.index("| depth | 4 | 8 |") < md.index("| depth | 8 | 16 |")  # numeric order
    assert "## Compared with other" in md and "paired" in md
    tags = Tracker(uri).client.get_run(written["parent"]).data.tags
    assert f"Chosen: **{best}**" in tags["mlflow.note.content"]
    artifacts = {Path(a.path).name for a in Tracker(uri).client.list_artifacts(written["parent"], "report")}
    assert {"report.html", "heatmaps.png", "note.md"} <= artifacts


@pytest.mark.slow
def test_report_over_2000_runs_in_under_30_seconds(tmp_path_factory, record_figure):
    """``sweeper report`` in a fresh process (imports included) over 2,016 runs.

    The bound is on the process's CPU time (user + system): on a machine shared by many sessions
    the wall time measures the queue for the cores (it was 5x the CPU time at a load of 30 on 2
    cores); both are recorded."""
    import resource

    from mlflow import MlflowClient

    uri = os.environ.get("REPORT_SCALE_STORE")
    if not uri:
        tmp = tmp_path_factory.mktemp("scale")
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

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
KEEP = Path(__file__).resolve().parents[2] / ".pytest_cache" / "screens"  # for a look by eye after the run
#: Counts the report's table boxes wider than their column once the page has loaded (1280 px window).
OVERFLOW = ("<script>addEventListener('load', () => { const n = [...document.querySelectorAll('div.scroll')]"
            ".filter(d => d.scrollWidth > d.clientWidth + 1).length; document.body.dataset.overflowing = n; });"
            "</script></body>")


def chromium(tmp_path, url: str, *, shot: Path | None = None, height: int = 1400) -> str:
    """The page's DOM after its scripts ran (``--dump-dom``), or a screenshot into ``shot``."""
    args = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync",
            "--disable-background-networking", "--disable-component-update", "--hide-scrollbars",
            f"--user-data-dir={tmp_path / 'chromium'}", f"--window-size=1280,{height}", "--virtual-time-budget=30000"]
    args += [f"--screenshot={shot}"] if shot else ["--dump-dom"]
    return subprocess.run([*args, url], capture_output=True, text=True, timeout=300).stdout


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")
def test_report_and_mlflow_ui_in_a_browser(small, tmp_path):
    """report.html at 1280 px needs no horizontal scrolling; the parent run's page in MLflow's UI
    shows the note, and its artifact viewer renders report/report.html."""
    from sweeper.app.report import report_command

    uri, written, _ = small
    assert report_command("known", uri, str(tmp_path / "r"), attach=True) == 0
    html = (tmp_path / "r" / "report.html").read_text()
    probe = tmp_path / "probe.html"
    probe.write_text(html.replace("</body>", OVERFLOW))
    dom = chromium(tmp_path, probe.as_uri())
    assert 'data-overflowing="0"' in dom, re.findall(r"data-overflowing=\"\d+\"", dom)
    KEEP.mkdir(parents=True, exist_ok=True)
    chromium(tmp_path, (tmp_path / "r" / "report.html").as_uri(), shot=KEEP / "report-1280.png", height=5000)

    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "sweeper.app.cli", "ui", "known", "--tracking-uri", uri,
                               "--port", str(port)], stdout=subprocess.PIPE, text=True)
    try:
        address = server.stdout.readline().split(": ", 1)[1].split()[0]
        assert address.startswith(f"http://127.0.0.1:{port}/#/experiments/")
        deadline = time.monotonic() + 240  # several minutes on a machine shared by many
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=3)
                break
            except OSError:
                assert time.monotonic() < deadline, "sweeper ui did not come up"
                time.sleep(1)
        from ledger import links

        experiment_id = address.split("#/experiments/", 1)[1].split("/", 1)[0]
        run_page = links.run_url(f"http://127.0.0.1:{port}", experiment_id, written["parent"])
        assert "Sweep report" in chromium(tmp_path, run_page)  # the note, as the run's description
        artifact_page = run_page.replace("?", "/artifacts/report/report.html?")
        assert 'class="mlflow-html-iframe"' in chromium(tmp_path, artifact_page)
        chromium(tmp_path, run_page, shot=KEEP / "mlflow-parent-run.png")
        chromium(tmp_path, artifact_page, shot=KEEP / "mlflow-report-artifact.png")
    finally:
        server.terminate()  # sweeper ui stops MLflow's process group on SIGTERM
        server.wait(60)
    time.sleep(1)
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=3)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
