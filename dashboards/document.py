"""The report as a document: :class:`Section` blocks, number formats, and Markdown and HTML renderers.

A section is a title and blocks (text, a bulleted list, a table, an image); :func:`to_markdown`
and :func:`to_html` render the same blocks, the HTML with inline CSS and images embedded as data
URIs, so the one file can be mailed or opened in MLflow's artifact viewer (no network, no JS).
Tables keep raw numbers until :func:`display` formats each column by its kind.
"""
from __future__ import annotations

import base64
import html
import math
from dataclasses import dataclass, field
from typing import Optional

import pandas as pd

from .stats import label


@dataclass
class Section:
    """A titled part of the report: blocks of ``("text", str)``, ``("items", [str or (head, str), ...])``
    (a bulleted list; a head is set in bold), ``("table", DataFrame of text, positions of text columns)`` or ``("image",
    file name, caption)``, rendered alike in both formats. A ``lead`` section (the conclusion) is
    drawn as a box above the table of contents."""

    title: str
    blocks: list = field(default_factory=list)
    lead: bool = False

    def text(self, text: str) -> "Section":
        self.blocks.append(("text", text))
        return self

    def items(self, items) -> "Section":
        self.blocks.append(("items", [tuple(i) if isinstance(i, (tuple, list)) else ("", i) for i in items]))
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
    if metric in ("diff", "vs chosen"):
        return "signed"
    if "accuracy" in metric or "loss" in metric or metric in ("mean", "lo", "hi", "se", "a", "b"):
        return "metric"
    return "other"


def _format(value, kind: str) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return label(value)
    if kind == "int":
        return f"{int(value)}"
    if kind == "big":
        return f"{value:,.0f}"
    if kind == "seconds":
        return f"{value:.1f}"
    if kind == "metric":
        return f"{value:.4f}"
    if kind == "signed":
        return f"{value:+.4f}"
    if kind == "p":
        return "< 0.001" if value < 0.001 else f"{value:.3f}"
    if kind == "ratio":
        return f"{value:.3g}"
    return f"{value:g}" if isinstance(value, float) else str(value)


def number(value, kind: str = "metric") -> str:
    """One number as the tables print it (``kind``: metric, signed, p, ratio, int, big, seconds)."""
    return _format(value, kind)


def interval(lo, hi, kind: str = "metric") -> str:
    """``[lo, hi]`` as the tables print it; "–" when there is none, and when it has no width: an
    interval needs repeats, and one repeat (or repeats that agree exactly) measures no spread."""
    missing = any(v is None or v is pd.NA or (isinstance(v, float) and not math.isfinite(v)) for v in (lo, hi))
    if missing or not hi > lo:
        return "–"
    return f"[{_format(lo, kind)}, {_format(hi, kind)}]"


def display(frame: pd.DataFrame, kind: Optional[str] = None) -> pd.DataFrame:
    """A copy of ``frame`` as text, each column in its format (``kind`` forces one for all)."""
    out = pd.DataFrame(index=frame.index.map(label), columns=frame.columns, dtype="object")
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


def markdown_item(head: str, text: str) -> str:
    return f"**{head}** {text}" if head else text


def to_markdown(sections: list[Section], title: str) -> str:
    lines = [f"# {title}", ""]
    for section in sections:
        lines += [f"## {section.title}", ""]
        for block in section.blocks:
            if block[0] == "text":
                lines += [block[1], ""]
            elif block[0] == "items":
                lines += [f"- {markdown_item(head, item)}" for head, item in block[1]] + [""]
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
p { margin: .5em 0; } li { margin: .25em 0; }
section.lead { background: #f3f8fd; border: 1px solid #9cc3e6; border-radius: 6px; padding: .2em 1.2em .6em;
               margin: 1em 0 1.4em; }
section.lead h2 { margin-top: .6em; }
"""


def _html_block(block, table_id: str, images: dict[str, bytes]) -> str:
    if block[0] == "text":
        return f"<p>{html.escape(block[1])}</p>"
    if block[0] == "items":
        heads = [f"<strong>{html.escape(head)}</strong> " if head else "" for head, _ in block[1]]
        return "<ul>" + "".join(f"<li>{h}{html.escape(item)}</li>" for h, (_, item) in zip(heads, block[1])) + "</ul>"
    if block[0] == "table":
        # to_html cannot class a column, so a rule per table left-aligns its text columns.
        left = ", ".join(f"#{table_id} td:nth-child({i + 1})" for i in block[2])
        return ((f"<style>{left} {{ text-align: left; }}</style>" if left else "") + '<div class="scroll">'
                + block[1].to_html(index=False, border=0, classes="data", escape=True, table_id=table_id) + "</div>")
    if block[1] in images:
        data = base64.b64encode(images[block[1]]).decode("ascii")
        return (f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(block[2])}">'
                f"<figcaption>{html.escape(block[2])}</figcaption></figure>")
    return ""


def to_html(sections: list[Section], title: str, images: dict[str, bytes]) -> str:
    """One HTML page; ``images`` maps file names to PNG bytes, embedded as data URIs. Lead
    sections come first, boxed, then the table of contents of the others."""
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>"]
    ordered = [s for s in sections if s.lead] + [s for s in sections if not s.lead]
    tables = 0
    for i, section in enumerate(ordered):
        if i == sum(s.lead for s in sections):
            parts.append("<nav>" + "".join(f'<a href="#{s.anchor}">{html.escape(s.title)}</a>'
                                           for s in ordered if not s.lead) + "</nav>")
        parts.append(f'<section id="{section.anchor}"' + (' class="lead">' if section.lead else ">"))
        parts.append(f"<h2>{html.escape(section.title)}</h2>")
        for block in section.blocks:
            tables += block[0] == "table"
            parts.append(_html_block(block, f"t{tables}", images))
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts)


__all__ = ["Section", "display", "interval", "number", "to_html", "to_markdown"]
