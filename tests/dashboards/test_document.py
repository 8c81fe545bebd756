"""The report as a document (:mod:`dashboards.document`): formats, Markdown and HTML."""
import math

import pandas as pd

from dashboards.document import Section, display, interval, number, to_html, to_markdown


def test_an_interval_needs_width():
    assert interval(0.91, 0.93) == "[0.9100, 0.9300]"
    assert interval(-0.0012, 0.003, "signed") == "[-0.0012, +0.0030]"
    assert interval(math.nan, math.nan) == "–" and interval(None, 0.1) == "–"
    assert interval(0.92, 0.92) == "–"  # one repeat, or repeats that agree exactly: no zero-width interval
    assert number(0.0004, "p") == "< 0.001" and number(0.0215, "signed") == "+0.0215"


def test_columns_are_formatted_by_kind():
    frame = pd.DataFrame({"field": ["kernel_size"], "diff": [0.0215], "p": [0.0312], "repeats": [3],
                          "forward_flops": [1008000], "val_accuracy": [0.92491]})
    assert display(frame).iloc[0].tolist() == ["kernel_size", "+0.0215", "0.031", "3", "1,008,000", "0.9249"]


def test_the_lead_section_comes_before_the_contents_and_lists_render_in_both_formats():
    lead = Section("Conclusion", lead=True).items(["Chosen: k5 <max>", "Next: stop."])
    other = Section("Chosen point").text("a | b").table(pd.DataFrame({"a": ["x|y"], "b": [1.0]}))
    page = to_html([lead, other], "t", {})
    assert page.index('<section id="conclusion" class="lead">') < page.index("<nav>") < page.index('id="chosen-point"')
    assert "<li>Chosen: k5 &lt;max&gt;</li>" in page and '<a href="#conclusion"' not in page
    md = to_markdown([lead, other], "t")
    assert "- Chosen: k5 <max>\n- Next: stop." in md and "| x\\|y | 1.0000 |" in md
