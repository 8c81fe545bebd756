"""The report's first section: what the sweep found, in words, every number quoted from a table below.

* **Chosen**: the point the sweep's selection rule chose (on validation) with its validation and
  test metric and their 95% intervals, as the *Chosen point* table prints them (with one repeat:
  none, and why);
* **Ties**: the points within the seed noise of it (the *Leaderboard*'s "vs chosen" column);
* **Early stopping**: how many trials ran to the end and where the others stopped, and the epoch
  every trial reached, at which the knobs are compared (:mod:`dashboards.budget`);
* **Knobs**: those that matter, in the ANOVA table's order, each with its best value (the *Means
  by value* table) and the difference between its worst and best value as the *Differences
  between values* table prints it; the knobs whose values tie, named as ties;
* **Next**: widen, refine or stop (:mod:`dashboards.advice`, read off the same tables), and the
  next sweep file when there is one.
"""
from __future__ import annotations

import math
from typing import Optional

from . import budget
from .analysis import TOP, Facts, Findings
from .document import Section, interval, number
from .nextsweep import changes
from .stats import label

#: Points named as ties at most (the rest counted).
NAMED = 3


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _shown(found: Findings, metric: str) -> Optional[str]:
    rows = found.choice.metrics.set_index("metric")
    if metric not in rows.index:
        return None
    row = rows.loc[metric]
    width = interval(row["lo"], row["hi"])
    return f"{metric} {number(row['mean'])}" + ("" if width == "–" else f" {width}")


def chosen(facts: Facts, found: Findings) -> tuple[str, str]:
    row = found.chosen_row
    values = ", ".join(f"{s} {label(row[s])}" for s in found.swept)
    metrics = ", ".join(m for m in (_shown(found, facts.selection.metric), _shown(found, "test_accuracy")) if m)
    n = int(row["repeats"])
    how = (f"95% intervals over {n} repeats." if n > 1 else
           "One run per point: intervals need repeats, so none is shown.")
    return ("Chosen:", f"{row['point_name']}" + (f" ({values})" if values else "")
            + f", the best on {facts.selection.text}: {metrics}. {how} The test set was looked at for this point only.")


def ties(found: Findings) -> tuple[str, str]:
    names, scores = found.ranked["point_name"], found.ranked["score"]
    if not found.noise_known:
        same = [names[p] for p in found.ranked.index[1:] if scores[p] == scores[found.chosen]]
        return ("Ties:", "cannot be named with one repeat per point: how much a run varies with its seed is unknown"
                + (f"; {', '.join(same)} scored exactly the same as the chosen point (the tie-break, fewer FLOPs "
                   f"then the earlier start, chose)." if same else "."))
    versus = found.choice.versus
    compared = [p for p in found.ranked.index[1:TOP] if p in versus.index and _finite(versus.loc[p, "lo"])]
    tied = [p for p in compared if versus.loc[p, "lo"] <= 0 <= versus.loc[p, "hi"]]

    def quoted(p):
        v = versus.loc[p]
        return f"{names[p]} {number(v['diff'], 'signed')} {interval(v['lo'], v['hi'], 'signed')}"

    if tied:
        more = f" and {len(tied) - NAMED} more" if len(tied) > NAMED else ""
        return ("Ties:", f"within the seed noise of the chosen point (difference to it, paired by repeat, as in the "
                         f"Leaderboard): {'; '.join(quoted(p) for p in tied[:NAMED])}{more}: which of these is best "
                         f"is not settled.")
    if compared:
        return ("Ties:", f"none: the runner-up, {quoted(compared[0])}, is worse beyond the seed noise.")
    return ("Ties:", "no other point to compare the chosen point with.")


def stopping(found: Findings) -> list[tuple[str, str]]:
    """Where early stopping ended the trials, and the epoch the knobs are compared at (none: no stopping)."""
    said = budget.describe(found.stopping) if found.stopping is not None else None
    if said is None:
        return []
    epoch = found.effects.epoch if found.effects else None
    return [("Early stopping:", said[0].upper() + said[1:] + (
        f" The knobs below are compared at epoch {epoch}, the epoch every trial reached." if epoch else ""))]


def knobs(found: Findings) -> list[tuple[str, str]]:
    advice = found.advice
    if advice is None:
        return [("Knobs:", "nothing was swept.")]
    if not advice.noise_known:
        return [("Knobs:", "by their share of the variance (the ANOVA's order; untested: one repeat per point): "
                 + "; ".join(f"{i}. {k.field}: best on average {k.best}, {k.effect} ({k.tested.split(',')[0]})"
                             for i, k in enumerate(advice.knobs, 1)) + ".")]
    matter = [k for k in advice.knobs if k.p < 0.05 and k.action != "tie"]
    tie = [k for k in advice.knobs if k.action == "tie"]
    rest = [k for k in advice.knobs if k not in matter and k not in tie]
    lines = [("Knobs that matter:", "largest effect first (the ANOVA's order): " + "; ".join(
        f"{i}. {k.field}: best {k.best}, {k.effect} ({k.tested})" for i, k in enumerate(matter, 1)) + ".")
             if matter else ("Knobs that matter:", "none is significant at 5% in the ANOVA.")]
    if tie:
        lines.append(("Ties within noise:", "; ".join(
            f"{k.field} (its values {', '.join(k.tied)} tie; {k.effect}; {k.tested})" for k in tie) + "."))
    if rest:
        lines.append(("Not significant as a whole:", "; ".join(
            f"{k.field}: best {k.best}, {k.effect} ({k.tested}); {', '.join(k.tied)} tie" for k in rest) + "."))
    return lines


def _state(knob) -> str:
    """Where a knob stands, in a few words (its full reason is in the Next sweep section)."""
    others = [v for v in knob.tied if v != knob.best]
    return {"bracketed": f"best at {knob.best}, inside the grid",
            "bound": f"best at {knob.best}, the bound of what a sweep file accepts",
            "plateau": f"best at {knob.best}, level with {', '.join(others)}",
            "tie": "its values tie",
            "narrow": f"best {knob.best}" + (f", {', '.join(others)} level with it" if others else ""),
            }.get(knob.action, f"best {knob.best}, left as it is")


def next_step(facts: Facts, found: Findings) -> tuple[str, str]:
    advice = found.advice
    if advice is None:
        return ("Next:", "sweep a knob: this sweep varied nothing.")
    if advice.verdict == "stop":
        states = "; ".join(f"{k.field}: {_state(k)}" for k in advice.knobs)
        return ("Next: stop.", "No knob has its best value at an edge of the grid ahead of its neighbour beyond the "
                               f"noise, nor an untried value between its best and a worse neighbour ({states}; see "
                               f"Next sweep): this grid has found what it can.")
    moves = [k for k in advice.knobs if k.action in ("widen", "refine")]
    text = " ".join(f"{k.field}: {k.act}: {k.why}." for k in moves)
    if advice.repeats:
        text += (f"{' ' if moves else ''}Repeat every point {advice.repeats} times, so that the next report can "
                 f"tell effects from noise.")
    if not found.next_yaml:
        return (f"Next: {advice.verdict}.", text + f" No next sweep file: {found.next_problem}.")
    path = facts.out / "next.yaml"
    changed = ", ".join(c.rsplit(" (", 1)[0] for c in changes(found.next_yaml))
    return (f"Next: {advice.verdict}.", text + f" The next sweep file, {path}, has {changed}: sweeper run {path}")


def conclusion(facts: Facts, found: Findings) -> list[Section]:
    section = Section("Conclusion", lead=True)
    if found.chosen is None:
        finished = facts.runs["status"].eq("FINISHED").any()
        return [section.items([("Nothing to conclude:", f"no finished trial has {facts.selection.metric}"
                                + (" (set data.val_fraction > 0)." if finished else "."))])]
    items = [chosen(facts, found), ties(found), *stopping(found), *knobs(found), next_step(facts, found)]
    if found.warnings:
        items.append(("Checks:", f"{len(found.warnings)} warning(s), see Checks below."))
    return [section.items(items)]


__all__ = ["conclusion"]
