"""The report's section for a sweep with several objectives: the Pareto front drawn and listed.

Which points are on the front, and which one is chosen, come from the one selection rule
(:func:`ledger.rank_points` with the objectives the parent run recorded): this module only
shows them. The chosen point is the selection metric's best among the front.
"""
from __future__ import annotations

import pandas as pd

from . import figures
from .analysis import Facts, Findings
from .document import Section


def objectives_text(objectives) -> str:
    return ", ".join(f"{metric} ({'maximize' if mode == 'max' else 'minimize'})" for metric, mode in objectives)


def front_table(ranked: pd.DataFrame, objectives, chosen) -> pd.DataFrame:
    """The non-dominated points, best by the selection metric first: name, each objective's mean
    over repeats, repeats, and which one is chosen."""
    front = ranked[ranked["front"].astype(bool)]
    table = pd.DataFrame({"point": front["point_name"], **{m: front[m] for m, _ in objectives},
                          "repeats": front["repeats"], "chosen": ["chosen" if p == chosen else "" for p in front.index]})
    return table.reset_index(drop=True)


def pareto(f: Facts, found: Findings) -> list[Section]:
    objectives = f.selection.objectives
    if not objectives or "front" not in found.ranked.columns:
        return []
    ranked = found.ranked
    section = Section("Pareto front")
    section.text(f"Objectives: {objectives_text(objectives)}. A point is on the Pareto front when no other point "
                 f"is at least as good on every objective (means over repeats) and better on one; "
                 f"{int(ranked['front'].sum())} of {len(ranked)} point(s) are. The chosen point is the best mean "
                 f"{f.selection.metric} among them (the sweep's selection rule; of equal ones, the one no other "
                 f"dominates).")
    if f.with_plots:
        figures.objective_front(ranked, objectives, f.out / "pareto.png", found.chosen)
        section.image("pareto.png", "Each pair of objectives, mean over repeats per point; red: the Pareto front of "
                                    "all objectives; ringed: the chosen point.")
    section.table(front_table(ranked, objectives, found.chosen))
    return [section]


__all__ = ["front_table", "objectives_text", "pareto"]
