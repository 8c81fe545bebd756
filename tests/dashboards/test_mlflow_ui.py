"""What a person sees: a sweep in MLflow's own UI, served by ``sweeper ui`` and opened in headless Chromium.

The link ``sweeper ui NAME`` prints must land on the sweep's training runs (not MLflow's GenAI
pages), grouped by point, with the trials' names; the registered model's page must show the
chosen point's version with the alias ``champion``; screenshots go to ``.ci/artifacts/``.
"""
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ledger import links
from sweeper.app.cli import main
from tests.sweeper.test_sweep_e2e import parents, sweep_file

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(__file__).resolve().parents[2] / ".ci" / "artifacts"
pytestmark = [pytest.mark.slow, pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def chromium(url: str, tmp_path, *outputs: str, size: str = "1600,1000", budget: int = 30000) -> str:
    """The page's text after ``budget`` ms of virtual time (``--dump-dom``), or ``--screenshot=PATH``.

    A fresh profile each time; a browser that came back with nothing (it happens on a machine
    loaded by many) is tried again, twice."""
    for attempt in range(3):
        profile = tmp_path / f"chromium-{time.monotonic_ns()}"
        cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               f"--user-data-dir={profile}", f"--window-size={size}", f"--virtual-time-budget={budget}",
               *(outputs or ("--dump-dom",)), url]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        if outputs or done.stdout.strip():
            break
    html = re.sub(r"<(script|style)[^>]*>.*?</\1>", " ", done.stdout, flags=re.S)
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


def serve(name: str, uri: str, port: int) -> tuple[subprocess.Popen, str]:
    """``sweeper ui NAME`` in its own process group; returns it and the link it printed once healthy."""
    proc = subprocess.Popen([sys.executable, "-m", "sweeper", "ui", name, "--tracking-uri", uri, "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    line = proc.stdout.readline()
    link = re.search(r"(http://\S+)", line)
    assert link, line + proc.stderr.read() if proc.poll() is not None else line
    import urllib.request

    deadline = time.monotonic() + 180
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
            return proc, link.group(1)
        except OSError:
            assert proc.poll() is None and time.monotonic() < deadline, "sweeper ui did not come up in 180 s"
            time.sleep(0.5)


def test_the_printed_link_opens_the_training_runs_grouped_by_point(tmp_path, ray_local, mlflow_uri):
    name = "ui-check"
    path = sweep_file(tmp_path, name, mlflow_uri, grid={"kernel_size": [3, 5]}, repeats=2)
    assert main(["run", str(path), "-q"]) == 0
    (parent,) = parents(mlflow_uri, name)
    port = _free_port()
    proc, link = serve(name, mlflow_uri, port)
    try:
        assert "workflowType=machine_learning" in link and "viewStateShareKey=sweeper" in link
        text = chromium(link, tmp_path)
        (tmp_path / "mlflow-ui.txt").write_text(text)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        chromium(link, tmp_path, f"--screenshot={ARTIFACTS / 'mlflow-ui-runs.png'}")
        run_page = link.replace("/runs?", f"/runs/{parent.info.run_id}?")
        chromium(run_page, tmp_path, f"--screenshot={ARTIFACTS / 'mlflow-ui-parent-run.png'}")
        # The registered model's page (ledger.links.model_url): the chosen point's version, alias champion.
        model_page = links.model_url(link.split("/#/")[0], name)
        model_text = chromium(model_page, tmp_path)
        (tmp_path / "mlflow-ui-model.txt").write_text(model_text)
        chromium(model_page, tmp_path, f"--screenshot={ARTIFACTS / 'mlflow-ui-model.png'}")
        # printed while serving: the project's line only (no access log, no MLflow notices)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "Model training" in text and "Runs" in text  # the training-runs view, not the GenAI pages
    assert "Group by: point" in text
    for point in ("k3", "k5"):
        assert f"Group: {point} 2" in text and f"{point} #1" in text and f"{point} #2" in text, text[-3000:]
    assert "(average)" in text and "val_accuracy" in text  # repeats averaged per point, the metric a column
    assert re.search(r"\b5 matching runs", text), text[-2000:]  # the one parent and its four trials
    assert name in model_text and "Version 1" in model_text and "champion" in model_text, model_text[-3000:]
    assert "GET /" not in out + err and "INFO" not in out + err, out + err
