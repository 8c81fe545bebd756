"""The comparison report of one sweep: ``report.md`` and a self-contained ``report.html``.

:func:`build_report` reads the sweep from MLflow (:mod:`ledger.frame`), compares its points
(:mod:`dashboards.stats`) and writes into ``out_dir``:

* ``report.md`` and ``report.html``: the same sections, the HTML with inline CSS and the plots
  embedded as data URIs, so the one file can be mailed or attached to a run (no network, no JS);
* ``learning_curves.png``, ``accuracy_by_value.png``, ``pareto.png`` when matplotlib is
  installed (the report says so when it is not);
* ``runs.csv`` (:func:`~ledger.frame.load_runs`) and ``points.csv``
  (:func:`~dashboards.stats.per_point`) for anyone who wants the numbers behind the tables.

Nothing is written to MLflow here; ``sweeper report --attach`` logs the folder afterwards.
"""
from __future__ import annotations

import base64
import html
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import pandas as pd

from ledger.tracking import resolve_tracking_uri

from . import plots, stats
from ledger.frame import LECTURE_KNOBS, load_history, load_parent, load_runs

PLOT_FILES = ("learning_curves.png", "accuracy_by_value.png", "pareto.png")
#: Panels in the by-value figure: beyond this the figure is too small to read; the tables stay.
MAX_PANELS = 9


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
    if stat == "count" or metric in ("repeats", "levels", "runs", "trials", "unresolved", "epoch", "epochs_run"):
        return "int"
    if metric in ("n_params", "forward_flops", "train_images", "val_images", "test_images"):
        return "big"
    if "seconds" in metric:
        return "seconds"
    if "accuracy" in metric or "loss" in metric or metric in ("best_mean", "worst_mean", "effect"):
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
# Composition


def compose(name: str, uri: str, runs: pd.DataFrame, parent: Optional[dict], history: pd.DataFrame,
            out_dir: Path, with_plots: bool, top: int = 10) -> tuple[list[Section], pd.DataFrame]:
    """The report's sections (plots are written to ``out_dir`` on the way) and the per-point frame."""
    points = stats.per_point(runs)
    swept = stats.swept_fields(runs)
    overview = Section("Overview")
    overview.text(f"Sweep {name}: {len(runs)} trial run(s) in {uri}, report generated "
                  f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}.")
    if parent:
        overview.text(f"Latest submission: {parent['run_name']}, status {parent['status']}, parent run "
                      f"{parent['run_id']}; {parent['submissions']} submission(s) in all."
                      + (f" Reason: {parent['reason']}." if parent["reason"] else "")
                      + (" Trial counts it logged:" if parent["counts"] else ""))
        if parent["counts"]:
            overview.table(pd.DataFrame([parent["counts"]]), kind="int")
    overview.text(f"Swept fields: {', '.join(swept) or 'none'}. {len(points)} point(s) have finished trials.")
    overview.text("Statistics use FINISHED trials only: each point's repeats are averaged first, then points "
                  "are compared, so a point weighs the same however many repeats finished. Duplicates (runs "
                  "KILLED because their point finished in another run) are counted below but never averaged.")
    if not with_plots:
        overview.text("matplotlib is not installed: this report has tables only (pip install matplotlib for plots).")
    sections = [overview, _states(runs)]
    if points.empty:
        overview.text("No trial has finished yet: there is nothing to compare.")
        return sections, points

    sections.append(Section(f"Best {min(top, len(points))} points by test accuracy").table(
        stats.best_points(points, top).reset_index()).text(
        "test_accuracy is the mean over the point's finished repeats, test_accuracy_std their standard "
        "deviation (– with a single repeat); best_run_id is the repeat with the highest test accuracy."))

    effects = stats.marginal_effects(points, [*LECTURE_KNOBS, *swept])
    sections.append(Section("Marginal effects").table(effects).text(
        "For each field: the value with the highest and the lowest mean test accuracy over points, and the "
        "gap between them. levels 1 means the field is not swept (fixed at that value). Where the grid is "
        "unbalanced (excluded or infeasible points) a marginal mean also carries the other fields' effects."))

    pairs = _pivot_pairs(swept, effects)
    if pairs:
        section = Section("Two-way comparison")
        for rows, columns in pairs:
            section.text(f"Mean test accuracy over points: {rows} (rows) by {columns} (columns); – where "
                         f"no point has that pair.")
            table = stats.pivot(points, rows, columns)
            table.index.name, table.columns.name = f"{rows} \\ {columns}", None
            section.table(table, kind="metric")
        sections.append(section)

    if swept:
        section = Section("By value of each swept field")
        section.text("Per-point means grouped by the field's value: mean, std, min and max over points, and how "
                     "many points (count).")
        for field_name in swept:
            section.text(f"{field_name}:")
            section.table(stats.by_value(points, field_name))
        if with_plots:
            plots.by_value(points, swept[:MAX_PANELS], out_dir / "accuracy_by_value.png")
            section.image("accuracy_by_value.png", "Test accuracy of every point (dots) by value; the black bar "
                          "is the mean over points with one standard deviation.")
        sections.append(section)

    front = stats.pareto_front(points)
    section = Section("Accuracy per cost").text(
        "The Pareto front: points that no other point beats on both forward FLOPs per image (fewer) and "
        "mean test accuracy (higher), cheapest first.").table(front)
    if with_plots and len(front):
        plots.pareto(points, front, out_dir / "pareto.png")
        section.image("pareto.png", "Test accuracy against forward FLOPs per image; red: the Pareto front.")
    sections.append(section)

    if with_plots:
        curves = stats.learning_curves(history, runs, "val_accuracy")
        section = Section("Learning curves")
        if curves.empty:
            section.text("No per-epoch validation accuracy was logged (val_fraction 0?).")
        else:
            plots.learning_curves(curves, out_dir / "learning_curves.png")
            section.image("learning_curves.png", "Validation accuracy per epoch, mean over each point's "
                          "finished repeats.")
        sections.append(section)
    return sections, points


def _states(runs: pd.DataFrame) -> Section:
    section = Section("Trial states").table(stats.state_counts(runs)).text(
        "runs: MLflow child runs in each state; trials: (point, repeat) pairs, each counted once by its "
        "deciding run (FINISHED if any run of it finished, else its latest run).")
    fails = stats.failures(runs)
    if fails.empty:
        section.text("No failed or killed runs.")
    else:
        section.text("Failed and killed runs by reason (unresolved: the trial has not finished since):")
        section.table(fails)
    return section


def _pivot_pairs(swept: list[str], effects: pd.DataFrame) -> list[tuple[str, str]]:
    """kernel_size x pooling (the lecture's question) when both are swept, and the two fields
    with the largest marginal effects when they are another pair."""
    pairs = []
    if "kernel_size" in swept and "pooling" in swept:
        pairs.append(("kernel_size", "pooling"))
    strongest = [f for f in effects.dropna(subset=["effect"])["field"] if f in swept][:2]
    if len(strongest) == 2 and set(strongest) != {"kernel_size", "pooling"}:
        pairs.append(tuple(strongest))
    return pairs


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


def build_report(tracking_uri: Optional[str], sweep_name: str, out_dir, top: int = 10) -> Path:
    """Write the report of ``sweep_name`` into ``out_dir`` (created); returns ``report.html``'s path.

    Raises :class:`ledger.frame.SweepNotFound` when the store has no such sweep.
    """
    uri = resolve_tracking_uri(tracking_uri)
    runs = load_runs(uri, sweep_name)
    parent = load_parent(uri, sweep_name)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name in PLOT_FILES:  # a plot from an earlier build must not outlive the data it showed
        (out / name).unlink(missing_ok=True)
    with_plots = plots.available()
    done = stats.finished_trials(runs)
    history = (load_history(uri, sweep_name, done["run_id"], metrics=["val_accuracy"]) if with_plots and len(done)
               else pd.DataFrame(columns=["run_id", "epoch", "metric", "value"]))
    sections, points = compose(sweep_name, uri, runs, parent, history, out, with_plots, top)
    title = f"Sweep report: {sweep_name}"
    (out / "report.md").write_text(to_markdown(sections, title), encoding="utf-8")
    images = {name: (out / name).read_bytes() for name in PLOT_FILES if (out / name).exists()}
    (out / "report.html").write_text(to_html(sections, title, images), encoding="utf-8")
    runs.to_csv(out / "runs.csv", index=False)
    points.to_csv(out / "points.csv", index=False)
    return out / "report.html"


__all__ = ["Section", "build_report", "compose", "display", "to_html", "to_markdown"]
