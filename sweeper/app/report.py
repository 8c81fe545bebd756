"""``sweeper report`` and ``sweeper ui``: the commands' logic (the CLI and the Python API call these).

The only link between ``sweeper`` and ``dashboards``: the report is built by :mod:`dashboards` from
what the ledger reads, and attached to the sweep's parent run through :mod:`ledger.reports`.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Optional

from ledger import links
from ledger.tracking import shown_uri
from sweeper.exits import EXIT_OK, EXIT_UNAVAILABLE
#: Where reports go unless ``--out`` says otherwise: ``reports/<sweep name>/``.
DEFAULT_ROOT = Path("reports")
#: The folder under the parent run's artifacts that the report is attached to.
ARTIFACT_PATH = "report"


def write_report(name: str, tracking_uri: Optional[str] = None, out_dir=None, attach: bool = True,
                 against: Optional[str] = None, echo=None) -> Path:
    """Write the report of sweep ``name`` into ``out_dir`` (default ``reports/NAME``); with ``attach``
    (the default), log the folder to the sweep's parent run (``report/report.html`` renders in
    MLflow's artifact viewer), make the short leaderboard that run's description and record the
    selection rule on it. Returns the report's folder; :class:`ledger.SweepNotFound` if there is
    no such sweep. ``echo``: where to say what was written (default: nowhere)."""
    from dashboards.report import build_report
    from ledger import attach_report, load_parent, resolve_tracking_uri, selection_tags, set_note, set_tags

    echo = echo or (lambda line: None)
    uri = resolve_tracking_uri(tracking_uri)
    folder = Path(out_dir) if out_dir else DEFAULT_ROOT / name
    html = build_report(uri, name, folder, against=against)
    echo(f"report of sweep {name}: {html} (and {html.with_suffix('.md').name}, plots and CSVs beside it)")
    if (html.parent / "next.yaml").exists():
        echo(f"next sweep, as the report advises: sweeper run {html.parent / 'next.yaml'}")
    if attach:
        parent = load_parent(uri, name)
        if parent is None:
            from ledger import SweepNotFound

            raise SweepNotFound(f"sweep {name} has no parent run to attach the report to")
        attach_report(uri, parent["run_id"], html.parent, ARTIFACT_PATH)
        set_note(uri, parent["run_id"], (html.parent / "note.md").read_text(encoding="utf-8"))
        set_tags(uri, parent["run_id"], selection_tags(parent["selection"]))
        url = links.run_url(links.ui_address(uri), parent["experiment_id"], parent["run_id"])
        echo(f"attached to the sweep's parent run under {ARTIFACT_PATH}/, its description the leaderboard: {url}")
    return html.parent


def report_command(name: str, tracking_uri: Optional[str] = None, out_dir: Optional[str] = None,
                   attach: bool = True, against: Optional[str] = None) -> int:
    """``sweeper report``: :func:`write_report`, saying where; a missing sweep is exit 2 (raised)."""
    write_report(name, tracking_uri, out_dir, attach, against, echo=print)
    return EXIT_OK


def ui_command(name: Optional[str], tracking_uri: Optional[str] = None, port: int = 5000,
               verbose: bool = False) -> int:
    """Serve MLflow's UI on the sweep's store at 127.0.0.1:``port`` until Ctrl-C; with ``name``, print
    the address of that sweep's experiment in the training-runs view. :class:`ledger.SweepNotFound`
    (exit 2) when the store or the sweep is not there. The server's own output (notices, the
    access log) is kept in a log file and shown only if it fails, or with ``verbose``."""
    import tempfile

    from ledger import SweepNotFound, experiment_for, resolve_tracking_uri

    uri = resolve_tracking_uri(tracking_uri)
    base = links.ui_address(None, port)
    address = base + "/"
    if name:
        tracker, experiment_id = experiment_for(uri, name)
        address = links.sweep_url(tracker, experiment_id, base)
    elif uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///"):]).exists():
        raise SweepNotFound(f"no MLflow store at {shown_uri(uri)}")
    print(f"MLflow UI on {shown_uri(uri)}: {address}  (Ctrl-C to stop)", flush=True)
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", "127.0.0.1",
               "--port", str(port), "--workers", "1"]
    if not verbose:
        command += ["--uvicorn-opts", "--no-access-log --log-level warning"]
    # One worker and no job executor: 2 processes and ~0.5 GB instead of 10-15 and 2-3 GB, enough to browse.
    # Its own process group: mlflow runs uvicorn as a child, and stopping must reach both.
    with tempfile.TemporaryFile("w+") as log:
        output = None if verbose else log
        server = subprocess.Popen(command, env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
                                  start_new_session=True, stdout=output, stderr=output)
        previous = signal.signal(signal.SIGTERM, _interrupt)
        try:
            code = server.wait()
        except KeyboardInterrupt:
            return EXIT_OK
        finally:
            signal.signal(signal.SIGTERM, previous)
            _stop(server)
        log.seek(0)
        tail = log.read()[-3000:]
    print(f"sweeper ui: MLflow's server ended with exit {code}:\n{tail}", file=sys.stderr)
    return EXIT_UNAVAILABLE


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


__all__ = ["ARTIFACT_PATH", "DEFAULT_ROOT", "report_command", "ui_command", "write_report"]
