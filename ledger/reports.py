"""What a report writes back into MLflow, and the artifacts it reads: the ledger stays the only writer.

* :func:`attach_report`: a report folder (``report.html`` with its images, CSVs) logged under
  ``report/`` of a run; MLflow's artifact viewer renders ``report.html`` in place;
* :func:`set_note`: the run's description, the ``mlflow.note.content`` tag the UI shows as
  Markdown on the run's page;
* :func:`set_tags`: plain tags (the selection rule the report used);
* :func:`fetch_artifact`: one artifact of a run downloaded into a folder (a trial's
  ``model.npz``), or None when the run has none;
* :func:`submitted_sweep`: the sweep file a parent run was submitted with, and its ``--set``
  overrides (the report writes the next sweep file from them).
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Optional

from ledger.schema import NOTE
from ledger.tracking import Tracker

#: The tag MLflow's UI shows as a run's description (Markdown).
NOTE_TAG = NOTE
#: Where :func:`attach_report` puts the folder among the run's artifacts.
REPORT_PATH = "report"
#: MLflow keeps tag values up to this many characters (8000 in recent stores; be safe).
NOTE_LIMIT = 5000


def attach_report(uri: str, run_id: str, folder, artifact_path: str = REPORT_PATH) -> str:
    """Log every file of ``folder`` under ``artifact_path`` of ``run_id``; returns the artifact path."""
    Tracker(uri).client.log_artifacts(run_id, str(Path(folder)), artifact_path)
    return artifact_path


def set_note(uri: str, run_id: str, markdown: str) -> None:
    """Make ``markdown`` the run's description (cut to :data:`NOTE_LIMIT` characters)."""
    if len(markdown) > NOTE_LIMIT:
        markdown = markdown[: NOTE_LIMIT - 2].rsplit("\n", 1)[0] + "\n…"
    Tracker(uri).client.set_tag(run_id, NOTE_TAG, markdown)


def set_tags(uri: str, run_id: str, tags: Mapping[str, str]) -> None:
    from mlflow.entities import RunTag

    Tracker(uri).client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])


def fetch_artifact(uri: str, run_id: str, path: str, dest) -> Optional[Path]:
    """Download artifact ``path`` of ``run_id`` into folder ``dest``; None if the run has no such file."""
    client = Tracker(uri).client
    folder, _, name = path.rpartition("/")
    if name not in {Path(f.path).name for f in client.list_artifacts(run_id, folder or None)}:
        return None
    Path(dest).mkdir(parents=True, exist_ok=True)
    return Path(client.download_artifacts(run_id, path, str(dest)))


def submitted_sweep(uri: str, run_id: str) -> Optional[tuple[str, tuple[str, ...]]]:
    """``(sweep file text, --set overrides)`` of parent run ``run_id``; None when it has no ``sweep.yaml``."""
    import json
    import tempfile

    from ledger.schema import OVERRIDES

    with tempfile.TemporaryDirectory() as tmp:
        found = fetch_artifact(uri, run_id, "sweep.yaml", tmp)
        if found is None:
            return None
        text = found.read_text(encoding="utf-8", errors="replace")
    try:
        overrides = json.loads(Tracker(uri).client.get_run(run_id).data.tags.get(OVERRIDES) or "[]")
    except ValueError:
        overrides = []
    return text, tuple(str(o) for o in overrides) if isinstance(overrides, list) else ()


__all__ = ["NOTE_LIMIT", "NOTE_TAG", "REPORT_PATH", "attach_report", "fetch_artifact", "set_note", "set_tags",
           "submitted_sweep"]
