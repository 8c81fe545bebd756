"""``sweeper report``: the command's logic, kept here so that ``sweeper/cli.py`` stays argparse only.

Registered in :mod:`sweeper.app.cli` as::

    @command("report", "write a comparison report of a sweep (Markdown, HTML, plots)", arg("name", metavar="NAME"),
             TRACKING, arg("--out", metavar="DIR", default=None, help="folder to write into (default: reports/NAME)"),
             arg("--attach", action="store_true", help="also log it to the sweep's latest parent run, under report/"))
    def _report(args: argparse.Namespace) -> int:
        from dashboards.cli import report_command
        return report_command(args.name, args.tracking_uri, args.out, args.attach)
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

EXIT_OK, EXIT_INVALID = 0, 2
#: Where reports go unless ``--out`` says otherwise: ``reports/<sweep name>/``.
DEFAULT_ROOT = Path("reports")
#: The folder under the parent run's artifacts that ``--attach`` fills.
ARTIFACT_PATH = "report"


def report_command(name: str, tracking_uri: Optional[str] = None, out_dir: Optional[str] = None,
                   attach: bool = False) -> int:
    """Write the report of sweep ``name``; with ``attach``, log the folder to its latest parent run.

    Prints where the report is (and the parent run it was attached to); exit 2 with one line on
    stderr when the sweep is not in the store.
    """
    from ledger.tracking import Tracker, resolve_tracking_uri

    from ledger.frame import SweepNotFound, load_parent
    from .report import build_report

    uri = resolve_tracking_uri(tracking_uri)
    folder = Path(out_dir) if out_dir else DEFAULT_ROOT / name
    try:
        html = build_report(uri, name, folder)
        parent = load_parent(uri, name) if attach else None
    except SweepNotFound as exc:
        print(f"sweeper report: {exc}", file=sys.stderr)
        return EXIT_INVALID
    print(f"report of sweep {name}: {html} (and {html.with_suffix('.md').name}, plots and CSVs beside it)")
    if attach:
        if parent is None:
            print(f"sweeper report: sweep {name} has no parent run to attach the report to", file=sys.stderr)
            return EXIT_INVALID
        # The one write: through the Tracker's client, the same store the sweep logs to.
        Tracker(uri).client.log_artifacts(parent["run_id"], str(html.parent), ARTIFACT_PATH)
        print(f"attached to parent run {parent['run_id']} ({parent['run_name']}) under {ARTIFACT_PATH}/")
    return EXIT_OK


__all__ = ["report_command", "DEFAULT_ROOT", "ARTIFACT_PATH"]
