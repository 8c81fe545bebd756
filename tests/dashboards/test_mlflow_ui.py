"""What a person sees: the sweep in MLflow's own UI, rendered by headless Chromium.

Acceptance of the quickstart: ``mlflow ui`` shows one parent run with all its children.
"""
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from sweeper.app.cli import main
from ledger.tracking import Tracker
from tests.sweeper.test_sweep_e2e import parents, sweep_file

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [pytest.mark.slow, pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _dom(url: str, tmp_path) -> str:
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'chromium'}", "--window-size=1400,900", "--virtual-time-budget=20000",
           "--dump-dom", url]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120).stdout


def test_mlflow_ui_lists_one_parent_with_its_children(tmp_path, ray_local, mlflow_uri):
    path = sweep_file(tmp_path, "ui-check", mlflow_uri, grid={"kernel_size": [3, 5]})
    assert main(["run", str(path), "-q"]) == 0
    (parent,) = parents(mlflow_uri, "ui-check")
    experiment_id = Tracker(mlflow_uri).experiment_id("ui-check", create=False)
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", mlflow_uri,
                               "--host", "127.0.0.1", "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError("mlflow ui did not come up in 90 s")
                time.sleep(0.5)
        dom = _dom(f"http://127.0.0.1:{port}/#/experiments/{experiment_id}/runs", tmp_path)
    finally:
        server.terminate()
        server.wait(30)
    text = " ".join(re.sub(r"<[^>]+>", " ", dom).split())
    (tmp_path / "mlflow-ui.txt").write_text(text)
    assert parent.info.run_name in text          # the parent is listed, its children folded under it
    assert re.search(r"\b3 matching runs", text), text[-2000:]  # one parent + two children
