"""The report of one sweep: ``report.md`` and a self-contained ``report.html``.

:func:`build_report` reads the sweep through :mod:`ledger` (runs, the last parent run and its
selection rule, validation curves of the best points, the chosen run's ``kernels.png``), lets
:mod:`dashboards.sections` say what it finds and writes into ``out_dir``:

* ``report.md`` and ``report.html``: the same sections, the HTML with inline CSS and the plots
  embedded as data URIs, so the one file can be mailed or opened in MLflow's artifact viewer
  (no network, no JS);
* the plots as PNG files (when matplotlib is installed; the report says so when it is not);
* ``note.md``: the short Markdown leaderboard for the parent run's description;
* ``runs.csv`` (:func:`~ledger.frame.load_runs`) and ``points.csv``
  (:func:`~dashboards.stats.per_point`) for anyone who wants the numbers behind the tables.

Nothing is written to MLflow here; ``sweeper report`` attaches the folder afterwards (ledger.reports).
"""
from __future__ import annotations

import base64
import html
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import pandas as pd
from threadpoolctl import threadpool_limits

from ledger.tracking import resolve_tracking_uri

from . import plots, stats
from ledger import Selection, fetch_artifact, load_history, load_parent, load_runs, rank_points



@dataclass
class Section:
    """A titled part of the report: blocks of ``("text", str)``, ``("table", DataFrame of text,
    positions of text columns)`` or ``("image", file name, caption)``, rendered alike in both formats."""

    title: str
    blocks: list = field(default_factory=list)

    def text(self, text: str) -> "Section":
        self.blocks.append(("text", text))
        return self

    def table(self, frame: pd.DataFrame, kind: Optional[str] = None) -> "Section":
        """Add ``frame`` (its index as the first column when it is named) formatted as text."""
        if frame.index.name is not None:
            frame = frame.reset_index()
        # Text columns are left-aligned in HTML, numbers right-aligned (see to_html).
        text = [i for i, (_, col) in enumerate(frame.items())
                if not pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col)]
        self.blocks.append(("table", display(frame, kind), text))
        return self

    def image(self, name: str, caption: str) -> "Section":
        self.blocks.append(("image", name, caption))
        return self

    @property
    def anchor(self) -> str:
        return "".join(c if c.isalnum() else "-" for c in self.title.lower())


# ---------------------------------------------------------------------------------------------
# Number formats: the frames keep raw numbers; only what is printed is rounded.


def _kind(column) -> str:
    metric, stat = (column[0], column[-1]) if isinstance(column, tuple) else (str(column), "")
    if stat == "count" or metric in ("repeats", "levels", "runs", "trials", "unresolved", "epoch", "epochs_run", "df",
                                     "contexts", "pairs", "points", "n_a", "n_b", "rank"):
        return "int"
    if metric == "p":
        return "p"
    if metric in ("eta2_partial", "omega2_partial", "share", "F", "sum_sq"):
        return "ratio"
    if metric in ("n_params", "forward_flops", "train_images", "val_images", "test_images"):
        return "big"
    if "seconds" in metric:
        return "seconds"
    if "accuracy" in metric or "loss" in metric or metric in ("best_mean", "worst_mean", "effect", "mean", "diff",
                                                                 "lo", "hi", "se", "a", "b"):
        return "metric"
    return "other"


def _format(value, kind: str) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return stats.label(value)
    if kind == "int":
        return f"{int(value)}"
    if kind == "big":
        return f"{value:,.0f}"
    if kind == "seconds":
        return f"{value:.1f}"
    if kind == "metric":
        return f"{value:.4f}"
    if kind == "p":
        return "< 0.001" if value < 0.001 else f"{value:.3f}"
    if kind == "ratio":
        return f"{value:.3g}"
    return f"{value:g}" if isinstance(value, float) else str(value)


def display(frame: pd.DataFrame, kind: Optional[str] = None) -> pd.DataFrame:
    """A copy of ``frame`` as text, each column in its format (``kind`` forces one for all)."""
    out = pd.DataFrame(index=frame.index.map(stats.label), columns=frame.columns, dtype="object")
    out.index.name, out.columns.names = frame.index.name, frame.columns.names
    for i, column in enumerate(frame.columns):
        numeric = pd.api.types.is_numeric_dtype(frame.iloc[:, i])
        kind_i = (kind if numeric else None) or _kind(column)
        out.iloc[:, i] = [_format(v, kind_i) for v in frame.iloc[:, i].tolist()]
    return out


# ---------------------------------------------------------------------------------------------
# Rendering


def _cells(frame: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    header = [" ".join(str(p) for p in c if str(p)) if isinstance(c, tuple) else str(c) for c in frame.columns]
    return header, [[str(v) for v in row] for row in frame.itertuples(index=False)]


def to_markdown(sections: list[Section], title: str) -> str:
    lines = [f"# {title}", ""]
    for section in sections:
        lines += [f"## {section.title}", ""]
        for block in section.blocks:
            if block[0] == "text":
                lines += [block[1], ""]
            elif block[0] == "table":
                header, rows = _cells(block[1])
                escape = lambda cell: cell.replace("|", "\\|")  # noqa: E731 - a pipe would split the cell
                lines.append("| " + " | ".join(map(escape, header)) + " |")
                lines.append("|" + "|".join("---" for _ in header) + "|")
                lines += ["| " + " | ".join(map(escape, row)) + " |" for row in rows]
                lines.append("")
            else:
                lines += [f"![{block[2]}]({block[1]})", "", f"*{block[2]}*", ""]
    return "\n".join(lines)


CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #222; margin: 2em auto;
       max-width: 1150px; padding: 0 1em; line-height: 1.45; }
h1 { font-size: 1.6em; border-bottom: 2px solid #2a6fb0; padding-bottom: .2em; }
h2 { font-size: 1.25em; margin-top: 1.8em; color: #2a6fb0; }
nav { font-size: .9em; } nav a { margin-right: 1em; color: #2a6fb0; }
div.scroll { overflow-x: auto; }
table.data { border-collapse: collapse; margin: .6em 0 1.2em; font-size: .85em; }
table.data th, table.data td { border: 1px solid #d0d7de; padding: .25em .6em; }
table.data th { background: #eef3f8; text-align: center; }
table.data td { text-align: right; font-variant-numeric: tabular-nums; }
table.data tbody tr:nth-child(even) { background: #f7f9fb; }
table.data tbody th { text-align: left; background: #f3f6f9; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #d0d7de; }
figcaption { font-size: .85em; color: #555; }
p { margin: .5em 0; }
"""


def to_html(sections: list[Section], title: str, images: dict[str, bytes]) -> str:
    """One HTML page; ``images`` maps file names to PNG bytes, embedded as data URIs."""
    tables = 0
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>",
             "<nav>" + "".join(f'<a href="#{s.anchor}">{html.escape(s.title)}</a>' for s in sections) + "</nav>"]
    for section in sections:
        parts.append(f'<h2 id="{section.anchor}">{html.escape(section.title)}</h2>')
        for block in section.blocks:
            if block[0] == "text":
                parts.append(f"<p>{html.escape(block[1])}</p>")
            elif block[0] == "table":
                tables += 1
                # to_html cannot class a column, so a rule per table left-aligns its text columns.
                left = ", ".join(f"#t{tables} td:nth-child({i + 1})" for i in block[2])
                parts.append((f"<style>{left} {{ text-align: left; }}</style>" if left else "")
                             + '<div class="scroll">'
                             + block[1].to_html(index=False, border=0, classes="data", escape=True,
                                                table_id=f"t{tables}") + "</div>")
            elif block[1] in images:
                data = base64.b64encode(images[block[1]]).decode("ascii")
                parts.append(f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(block[2])}">'
                             f"<figcaption>{html.escape(block[2])}</figcaption></figure>")
    parts.append("</body></html>")
    return "\n".join(parts)


def build_report(tracking_uri: Optional[str], sweep_name: str, out_dir, against: Optional[str] = None,
                 selection: Optional[Selection] = None) -> Path:
    """Write the report of ``sweep_name`` into ``out_dir`` (created); returns ``report.html``'s path.

    ``against``: another sweep of the same store to compare with. ``selection``: the rule that
    chooses (default: the one the sweep's last parent run recorded, else ``val_accuracy``).
    Also writes ``note.md``, the short leaderboard for the parent run's description.
    Raises :class:`ledger.frame.SweepNotFound` when the store has no such sweep (or no ``against``).
    """
    from .sections import TOP, Facts, compose

    uri = resolve_tracking_uri(tracking_uri)
    runs = load_runs(uri, sweep_name)
    other = (against, load_runs(uri, against)) if against else None
    parent = load_parent(uri, sweep_name)
    selection = selection or (parent["selection"] if parent else Selection())
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.png"):  # a plot from an earlier build must not outlive the data it showed
        old.unlink()
    with_plots = plots.available()
    ranked = rank_points(runs, selection)
    done = stats.finished_trials(runs)
    top = done[done["point"].isin(ranked.index[:TOP])]  # curves of the best points only: fast on 2,000 runs
    history = (load_history(uri, sweep_name, top["run_id"], metrics=["val_accuracy"], runs=runs)
               if with_plots and len(top)
               else pd.DataFrame(columns=["run_id", "epoch", "metric", "value"]))
    kernels = None
    if with_plots and len(ranked):
        mine = top[top["point"] == ranked.index[0]].dropna(subset=[selection.metric])
        best = mine.sort_values(selection.metric, ascending=selection.mode == "min")["run_id"].iloc[0]
        with tempfile.TemporaryDirectory() as tmp:
            found = fetch_artifact(uri, best, "kernels.png", tmp)
            if found is not None:
                kernels = out / "kernels.png"
                kernels.write_bytes(found.read_bytes())
    facts = Facts(sweep_name, uri, runs, parent, selection, history, out, with_plots, kernels, other)
    # One BLAS thread: the fits are small, and on a loaded machine two OpenBLAS threads spinning
    # against each other made each SVD 20x slower.
    with threadpool_limits(1):
        sections, points = compose(facts)
    title = f"Sweep report: {sweep_name}"
    (out / "report.md").write_text(to_markdown(sections, title), encoding="utf-8")
    images = {p.name: p.read_bytes() for p in out.glob("*.png")}
    (out / "report.html").write_text(to_html(sections, title, images), encoding="utf-8")
    (out / "note.md").write_text(facts.note, encoding="utf-8")
    runs.to_csv(out / "runs.csv", index=False)
    points.to_csv(out / "points.csv", index=False)
    return out / "report.html"


__all__ = ["Section", "build_report", "display", "to_html", "to_markdown"]
