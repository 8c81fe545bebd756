"""What to try next, read off the report's own tables, so that the words cannot contradict them.

For each swept knob, from the *Means by value* table (:func:`dashboards.inference.level_means`),
the *Differences between values* table (:func:`dashboards.inference.level_differences`) and the
ANOVA (:func:`dashboards.inference.anova`):

* its best value: the one that beats the most others over matched points in the differences
  table, then by the best mean in the means table (by the sweep's :class:`ledger.Selection`); on
  a full grid both say the same, on a grid with skipped points the matched comparison decides;
* the values that **tie** with it: those whose paired difference to it has a 95% interval that
  holds 0 (known only with repeats);
* what to do with it (:class:`Knob` ``action``):

  ============  ===================================================================================
  ``widen``     numeric, best at an edge of the grid and its neighbour worse beyond the noise:
                the next grid is the neighbour, the edge and one step past it (:mod:`.steps`)
  ``refine``    numeric, best inside the grid with a worse neighbour and a value between them
                that the grid has not tried: the next grid adds it
  ``plateau``   numeric, best at an edge but its neighbour ties with it: no gain is in sight
  ``bracketed`` numeric, best inside the grid, nothing finer to try next to a worse neighbour
  ``bound``     numeric, best at an edge that is the field's bound (stride 1): nothing beyond
  ``tie``       no value differs from the best beyond the noise: the knob is fixed at the chosen
                point's value
  ``narrow``    categorical: the values that tie with the best are kept, the worse ones dropped
  ``keep``      not decided: one repeat (noise unknown), a knob analysed in quantile bins, or an
                effect the ANOVA finds while no two values are told apart
  ============  ===================================================================================

With one repeat nothing can be told from noise: a knob whose best mean sits at an edge above its
neighbour's is still widened (marked untested), and the next sweep asks for repeats. The advice
as a whole (:class:`Advice` ``verdict``) is *widen* if any knob widens, else *refine* if any knob
refines (or the sweep needs repeats), else *stop*.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

import numpy as np
import pandas as pd

from ledger import Selection

from . import steps
from .document import interval, number

#: Repeats the next sweep asks for when the sweep had one (intervals and ties need at least 2;
#: 3 gives a point's own interval a usable width).
REPEATS = 3


@dataclass(frozen=True)
class Knob:
    """One swept knob: its best value and ties (as labels), effect size, and the next grid list."""

    field: str
    action: str
    best: str
    tied: tuple[str, ...]
    values: Optional[tuple]  # the next grid list (raw values), None: unchanged
    effect: str  # "worst -> best: diff [interval]" as the differences table prints it
    strength: float  # the ANOVA sum of squares (the ANOVA table's order), else the range of means
    p: float  # the ANOVA's p of the main effect (NaN: untested)
    tested: str  # "partial eta² 0.88, p < 0.001" / "share of variance 0.75, untested: one repeat"
    why: str  # what the tables say, with their numbers
    act: str = ""  # what to do, for a knob that moves the grid: "widen upwards, to 9"

    @property
    def reason(self) -> str:
        return f"{self.field}: {self.why}" + (f": {self.act}." if self.act else ".")


@dataclass(frozen=True)
class Advice:
    """The verdict (widen, refine or stop), the knobs ranked by strength, and the repeats the
    next sweep needs (None: as before)."""

    verdict: str
    knobs: tuple[Knob, ...]
    repeats: Optional[int]
    noise_known: bool

    def changes(self) -> list[Knob]:
        return [k for k in self.knobs if k.values is not None]


def _numeric(values: Sequence) -> bool:
    return bool(values) and all(isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_)) for v in values)


def plain(value):
    """A raw value as YAML can write it: numpy scalars to int/float, tuples to lists."""
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    return value


class _Tables:
    """The tables the advice reads, with lookups by field and value label."""

    def __init__(self, selection: Selection, means: Mapping[str, pd.DataFrame], differences: pd.DataFrame,
                 anova: pd.DataFrame, noise_known: bool):
        self.selection, self.means, self.noise_known = selection, means, noise_known
        self.pairs = {(r.field, r.a, r.b): r for r in differences.itertuples()}
        self.anova = anova.set_index("term") if len(anova) else pd.DataFrame()

    def quote(self, field: str, a: str, b: str) -> str:
        """The differences table's row between ``a`` and ``b`` (in the table's order), as printed."""
        row = self.pairs.get((field, a, b)) or self.pairs.get((field, b, a))
        if row is None or not row.contexts:
            return f"{a} -> {b}: no matched points"
        shown = interval(row.lo, row.hi, "signed")
        return f"{row.a} -> {row.b}: {number(row.diff, 'signed')}" + ("" if shown == "–" else f" {shown}")

    def gain(self, field: str, a: str, b: str) -> Optional[float]:
        """How much better ``a`` is than ``b`` (the selection's direction) over matched points, from
        the differences table; None when no point was trained at both."""
        row = self.pairs.get((field, a, b)) or self.pairs.get((field, b, a))
        if row is None or not row.contexts or not math.isfinite(row.diff):
            return None
        diff = row.diff if row.a == b else -row.diff  # the row's diff is b - a
        return diff if self.selection.mode == "max" else -diff

    def ranking(self, field: str, labels: list[str], scores) -> list[str]:
        """The values best first: by how many others each beats over matched points (the
        differences table compares like with like, where plain means on a grid with skipped
        points mix in other knobs' effects), then by mean."""
        wins = {a: sum(1 for b in labels if b != a and (self.gain(field, a, b) or 0) > 0) for a in labels}
        sign = -1 if self.selection.mode == "max" else 1
        return sorted(labels, key=lambda a: (-wins[a], sign * scores[labels.index(a)]))

    def worse(self, field: str, best: str, other: str) -> Optional[bool]:
        """True when ``other`` is worse than ``best`` beyond the noise (interval clear of 0); False
        when they tie; None when the noise is unknown (then the means decide, untested)."""
        row = self.pairs.get((field, best, other)) or self.pairs.get((field, other, best))
        if not self.noise_known:
            return None
        if row is None or not row.contexts or any(isinstance(v, float) and math.isnan(v) for v in (row.lo, row.hi)):
            return False  # nothing tells them apart
        gain = -1 if row.b == best else 1  # sign of (other - best) in the row's diff
        lo, hi = sorted((gain * row.lo, gain * row.hi))
        return hi < 0 if self.selection.mode == "max" else lo > 0

    def tested(self, field: str) -> tuple[float, float, str]:
        """``(sum of squares, p, words)`` of the knob's row in the ANOVA table."""
        if field not in self.anova.index:
            return math.nan, math.nan, "not estimable in the ANOVA"
        row = self.anova.loc[field]
        p = float(row["p"]) if pd.notna(row["p"]) else math.nan
        if not math.isnan(p):
            return float(row["sum_sq"]), p, f"partial eta² {number(row['eta2_partial'], 'ratio')}, p {number(p, 'p')}"
        return float(row["sum_sq"]), p, f"share of variance {number(row['share'], 'ratio')}, untested: one repeat"


def _knob(t: _Tables, field: str, raw: Mapping[str, object], chosen: str, binned: bool) -> Knob:
    means = t.means[field]
    labels = list(means[field])
    scores = means["mean"].to_numpy(float)
    ranked = t.ranking(field, labels, scores)
    best, worst = ranked[0], ranked[-1]
    strength, p, tested = t.tested(field)
    if math.isnan(strength):
        strength = float(np.nanmax(scores) - np.nanmin(scores))
    effect = t.quote(field, worst, best) if worst != best else "one value"
    worse = {v: t.worse(field, best, v) for v in labels if v != best}
    tied = tuple(v for v in labels if v == best or worse[v] is False) if t.noise_known else ()
    raw = {v: plain(raw[v]) for v in labels}
    values = [raw[v] for v in labels]
    numeric = _numeric(values) and not binned
    knob = dict(field=field, best=best, tied=tied, effect=effect, strength=strength, p=p, tested=tested)

    def make(action: str, next_values, why: str, act: str = "") -> Knob:
        changed = None if next_values is None else tuple(plain(v) for v in next_values)
        if changed is not None and list(changed) == [plain(v) for v in values]:
            changed = None
        return Knob(action=action, values=changed, why=why.rstrip("."), act=act, **knob)

    if binned:
        return make("keep", None, f"analysed in {len(labels)} quantile bins; the grid is left as it is.")
    if len(labels) < 2:
        return make("keep", None, "one value tried.")
    if t.noise_known and len(tied) == len(labels) and p < 0.05:
        return make("keep", None, f"the ANOVA finds an effect ({tested}) but no two values are told apart beyond "
                                  f"the noise ({effect}); the grid is left as it is")
    if t.noise_known and len(tied) == len(labels):
        return make("tie", [raw[chosen]], f"no value differs from the best on average ({best}) beyond the noise "
                                          f"({effect}): a tie", f"fix it at {chosen}, the chosen point's value")
    if not numeric:
        if not t.noise_known:
            return make("keep", None, f"{best} is the best on average ({effect}); untested: one repeat.")
        dropped = [v for v in labels if v not in tied]
        others = [v for v in tied if v != best]
        return make("narrow", [raw[v] for v in tied],
                    f"{best} is the best on average"
                    + (f"; {', '.join(others)} tie{'s' if len(others) == 1 else ''} with it" if others else "")
                    + f"; worse beyond the noise: {', '.join(dropped)} ({effect})", f"keep {', '.join(tied)}")
    i = labels.index(best)
    untested = "" if t.noise_known else "; untested: one repeat"
    if i in (0, len(labels) - 1):
        up = i == len(labels) - 1
        inner = labels[i - 1] if up else labels[i + 1]
        edge = "largest" if up else "smallest"
        step = t.quote(field, inner, best)
        if worse[inner] is False:
            return make("plateau", [raw[v] for v in labels if v in tied],
                        f"{best} is the best on average and the {edge} value tried, but {inner} ties with it "
                        f"({step}): no gain past {best} is in sight.")
        if not t.noise_known and not (t.gain(field, best, inner) or 0) > 0:
            return make("keep", None, f"{best} is the best on average ({effect}); untested: one repeat.")
        new = steps.beyond(field, values, up)
        if new is None:
            return make("bound", None, f"{best} is the best on average and the {edge} value a sweep file "
                                           f"accepts ({step}{untested}).")
        direction = "upwards" if up else "downwards"
        return make("widen", sorted([raw[inner], raw[best], new]),
                    f"{best} is the {edge} value tried and the best on average, ahead of {inner} ({step}{untested})",
                    f"widen {direction}, to {new}")
    if not t.noise_known:
        return make("keep", None, f"{best} is the best on average, inside the grid ({effect}); untested: one repeat.")
    neighbours = [labels[i - 1], labels[i + 1]]
    finer = [steps.between(field, raw[best], raw[n], values) for n in neighbours if worse[n]]
    finer = [v for v in finer if v is not None]
    quotes = "; ".join(t.quote(field, n, best) if labels.index(n) < i else t.quote(field, best, n) for n in neighbours)
    if finer:
        return make("refine", sorted({*[raw[n] for n in neighbours], raw[best], *finer}),
                    f"{best} is the best on average, inside the grid ({quotes})",
                    f"refine around it with {', '.join(map(str, sorted(finer)))}")
    return make("bracketed", [raw[v] for v in labels if v in tied or v in neighbours],
                f"{best} is the best on average, inside the grid ({quotes}), with no untried value between it "
                f"and a worse neighbour.")


def advise(selection: Selection, fields: Sequence[str], means: Mapping[str, pd.DataFrame], differences: pd.DataFrame,
           anova: pd.DataFrame, noise_known: bool, raw: Mapping[str, Mapping[str, object]], chosen: Mapping[str, str],
           binned: Sequence[str] = (), repeats: int = 1) -> Advice:
    """The advice for ``fields`` (see the module docstring).

    ``means``: per field, :func:`~dashboards.inference.level_means`; ``differences``: the rows of
    :func:`~dashboards.inference.level_differences` for every field; ``anova``: the ANOVA table;
    ``raw``: per field, value label -> the value as the runs hold it; ``chosen``: per field, the
    chosen point's value label; ``repeats``: the most repeats any point had.
    """
    t = _Tables(selection, means, differences, anova, noise_known)
    knobs = sorted((_knob(t, f, raw[f], chosen[f], f in binned) for f in fields),
                   key=lambda k: -k.strength if not math.isnan(k.strength) else math.inf)
    actions = {k.action for k in knobs}
    more = None if noise_known or repeats >= REPEATS else REPEATS
    verdict = "widen" if "widen" in actions else "refine" if "refine" in actions or more else "stop"
    return Advice(verdict, tuple(knobs), more, noise_known)


__all__ = ["Advice", "Knob", "REPEATS", "advise", "plain"]
