"""``sweeper report`` and ``sweeper ui``: the commands' logic, kept here so that the sweeper CLI stays argparse only.

Registered in :mod:`sweeper.app.cli` (``report NAME [--out DIR] [--against OTHER] [--no-attach]``
and ``ui [NAME] [--port N]``), the only link between ``sweeper`` and ``dashboards``.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Optional

EXIT_OK, EXIT_INVALID = 0, 2
#: Where reports go unless ``--out`` says otherwise: ``reports/<sweep name>/``.
DEFAULT_ROOT = Path("reports")
#: The folder under the parent run's artifacts that the report is attached to.
ARTIFACT_PATH = "report"


def report_command(name: str, tracking_uri: Optional[str] = None, out_dir: Optional[str] = None,
                   attach: bool = True, against: Optional[str] = None) -> int:
    """Write the report of sweep ``name``; with ``attach`` (the default), log the folder to its
    latest parent run (``report/report.html`` renders in MLflow's artifact viewer), make the
    short leaderboard that run's description and record the selection rule on it.

    Prints where the report is; exit 2 with one line on stderr when a sweep is not in the store.
    """
    from ledger import SweepNotFound, attach_report, load_parent, resolve_tracking_uri, selection_tags, set_note, set_tags

    from .report import build_report

    uri = resolve_tracking_uri(tracking_uri)
    folder = Path(out_dir) if out_dir else DEFAULT_ROOT / name
    try:
        html = build_report(uri, name, folder, against=against)
        parent = load_parent(uri, name) if attach else None
    except SweepNotFound as exc:
        print(f"sweeper report: {exc}", file=sys.stderr)
        return EXIT_INVALID
    print(f"report of sweep {name}: {html} (and {html.with_suffix('.md').name}, plots and CSVs beside it)")
    if attach:
        if parent is None:
            print(f"sweeper report: sweep {name} has no parent run to attach the report to", file=sys.stderr)
            return EXIT_INVALID
        attach_report(uri, parent["run_id"], html.parent, ARTIFACT_PATH)
        set_note(uri, parent["run_id"], (html.parent / "note.md").read_text(encoding="utf-8"))
        set_tags(uri, parent["run_id"], selection_tags(parent["selection"]))
        print(f"attached to parent run {parent['run_id']} ({parent['run_name']}) under {ARTIFACT_PATH}/; "
              f"its description holds the leaderboard (`sweeper ui {name}` to browse)")
    return EXIT_OK


def ui_command(name: Optional[str], tracking_uri: Optional[str] = None, port: int = 5000) -> int:
    """Serve MLflow's UI on the sweep's store at 127.0.0.1:``port`` until Ctrl-C; with ``name``, print
    the address of that sweep's experiment. Exit 2 when the store or the sweep is not there."""
    from ledger import SweepNotFound, experiment_for, resolve_tracking_uri

    uri = resolve_tracking_uri(tracking_uri)
    address = f"http://127.0.0.1:{port}/"
    try:
        if name:
            _, experiment_id = experiment_for(uri, name)
            address += f"#/experiments/{experiment_id}"
        elif uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///"):]).exists():
            raise SweepNotFound(f"no MLflow store at {uri}")
    except SweepNotFound as exc:
        print(f"sweeper ui: {exc}", file=sys.stderr)
        return EXIT_INVALID
    print(f"MLflow UI on {uri}: {address}  (Ctrl-C to stop)", flush=True)
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", "127.0.0.1",
               "--port", str(port), "--workers", "1"]
    # One worker and no job executor: 2 processes and ~0.5 GB instead of 10-15 and 2-3 GB, enough to browse.
    # Its own process group: mlflow runs uvicorn as a child, and stopping must reach both.
    server = subprocess.Popen(command, env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
                              start_new_session=True)
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        return server.wait()
    except KeyboardInterrupt:
        return EXIT_OK
    finally:
        signal.signal(signal.SIGTERM, previous)
        _stop(server)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _stop(server: subprocess.Popen) -> None:
    """SIGTERM to the server's process group, SIGKILL after 15 s."""
    for sig, grace in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
        try:
            os.killpg(server.pid, sig)
        except ProcessLookupError:
            return
        try:
            server.wait(grace)
            return
        except subprocess.TimeoutExpired:
            continue


__all__ = ["ARTIFACT_PATH", "DEFAULT_ROOT", "report_command", "ui_command"]
