"""``sweeper report`` and ``sweeper ui`` (:mod:`sweeper.app.report` over :mod:`dashboards`) on real stores (conftest.py).

* the report attaches itself to the sweep's parent run, with the conclusion as its description,
  and records the selection rule; unknown sweeps and stores exit 2 without leaving a store behind;
* it compares two sweeps (``--against``), and runs through the ``sweeper`` command line;
* in a browser (slow): report.html needs no horizontal scrolling at 1280 px, and MLflow's UI shows
  the note and renders the attached report (screenshots in .ci/artifacts/).
"""
from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.dashboards.test_report import ARTIFACTS, CHROMIUM, chromium

#: Counts the report's table boxes wider than their column once the page has loaded (1280 px window).
OVERFLOW = ("<script>addEventListener('load', () => { const n = [...document.querySelectorAll('div.scroll')]"
            ".filter(d => d.scrollWidth > d.clientWidth + 1).length; document.body.dataset.overflowing = n; });"
            "</script></body>")


def test_report_command_attaches_to_the_sweeps_parent(store, tmp_path, capsys):
    from sweeper.app.report import report_command

    assert report_command("quickstart", store.uri, str(tmp_path / "r"), attach=True) == 0
    names = {Path(f.path).name for f in store.client.list_artifacts(store.parent, "report")}
    assert {"report.html", "report.md", "cost.png", "note.md"} <= names
    assert store.parent in capsys.readouterr().out
    tags = store.client.get_run(store.parent).data.tags
    note = tags["mlflow.note.content"]
    assert note.startswith("**Sweep report** (chosen by mean val_accuracy")
    conclusion = (tmp_path / "r" / "report.md").read_text().split("## Conclusion")[1].split("## ")[0]
    assert [line for line in conclusion.splitlines() if line.startswith("- ")] == \
        [line for line in note.splitlines() if line.startswith("- ")]  # the conclusion is the run's description
    assert tags["sweep.selection.metric"] == "val_accuracy"


def test_report_command_compares_two_sweeps_and_names_the_next_file(known, tmp_path, capsys):
    from sweeper.app.report import report_command

    uri, written, _ = known
    assert report_command("rising", uri, str(tmp_path), attach=True, against="other") == 0
    md = (tmp_path / "report.md").read_text()
    assert "## Compared with other" in md and "paired" in md
    assert f"sweeper run {tmp_path / 'next.yaml'}" in capsys.readouterr().out
    from ledger import Tracker

    names = {Path(a.path).name for a in Tracker(uri).client.list_artifacts(written["rising"]["parent"], "report")}
    assert {"report.html", "next.yaml", "note.md"} <= names


def test_report_command_unknown_sweep_or_store(store, tmp_path, capsys):
    from sweeper.app.cli import main

    assert main(["report", "nope", "--tracking-uri", store.uri, "--out", str(tmp_path / "a"), "--no-attach"]) == 2
    missing = tmp_path / "missing.db"
    assert main(["report", "quickstart", "--tracking-uri", f"sqlite:///{missing}", "--out", str(tmp_path / "b"),
                 "--no-attach"]) == 2
    assert not missing.exists()  # no empty store left behind
    assert "no sweep named 'nope'" in capsys.readouterr().err


def test_report_through_sweeper_cli(store, tmp_path):
    from sweeper.app import cli

    assert cli.main(["report", "quickstart", "--tracking-uri", store.uri, "--out", str(tmp_path), "--no-attach"]) == 0
    assert (tmp_path / "report.html").exists()
    assert cli.main(["report", "nope", "--tracking-uri", store.uri]) == 2


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")
def test_report_and_mlflow_ui_in_a_browser(known, tmp_path):
    """report.html at 1280 px needs no horizontal scrolling; the parent run's page in MLflow's UI
    shows the note, and its artifact viewer renders report/report.html."""
    from sweeper.app.report import report_command

    uri, stores, _ = known
    written = stores["known"]
    assert report_command("known", uri, str(tmp_path / "r"), attach=True) == 0
    html = (tmp_path / "r" / "report.html").read_text()
    probe = tmp_path / "probe.html"
    probe.write_text(html.replace("</body>", OVERFLOW))
    dom = chromium(tmp_path, probe.as_uri())
    assert 'data-overflowing="0"' in dom, re.findall(r"data-overflowing=\"\d+\"", dom)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    chromium(tmp_path, (tmp_path / "r" / "report.html").as_uri(), shot=ARTIFACTS / "report-known-1280.png", height=5000)

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
        chromium(tmp_path, run_page, shot=ARTIFACTS / "mlflow-parent-run.png")
        chromium(tmp_path, artifact_page, shot=ARTIFACTS / "mlflow-report-artifact.png")
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
