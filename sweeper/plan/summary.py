"""The text ``sweeper plan`` prints for a :class:`~sweeper.plan.points.Plan` (its ``summary()``).

Counts, the infeasible, merged and excluded points with their reasons, the points to train with
their size and estimated time per trial, and the estimated cost of what is pending. Only reads
the plan; what goes into it is :mod:`sweeper.plan.points`'s.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from sweeper.plan.cost import duration, rung_epochs
from sweeper.spec.config import canonical_json

if TYPE_CHECKING:
    from sweeper.plan.points import Plan


def _table(header: tuple[str, ...], rows: list[tuple], indent: str = "  ") -> list[str]:
    """Left-aligned text columns, the last one left ragged (reasons can be long)."""
    rows = [tuple(str(c) for c in row) for row in [header, *rows]]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    return [indent + "  ".join([c.ljust(w) for c, w in zip(row, widths)] + [row[-1]]).rstrip() for row in rows]


def _space_text(plan: Plan) -> str:
    knobs = plan.config.grid.knobs()
    if not knobs:
        return "no grid: 1 point"
    product = " x ".join(f"{name} ({size if (size := _knob_size(k)) is not None else 'range'})"
                         for name, k in knobs.items())
    if plan.space is None:
        return f"{product}: a continuous space"
    return f"{product} = {plan.space} points" + (" (at most: conditions collapse some)"
                                                 if plan.config.grid.conditions() else "")


def _knob_size(knob):
    from sweeper.spec.space import knob_size

    return knob_size(knob)


def search_lines(plan: Plan) -> list[str]:
    """Methods random, sobol, tpe, nsga2: the space knob by knob, its size where finite, the budget, what
    the ledger holds of the search, and the ETA of the budget."""
    import dataclasses

    from sweeper.plan.cost import estimate_cost
    from sweeper.spec.space import Knob

    config, budget, feed = plan.config, plan.config.budget, plan.feed
    lines = ["", f"Search space ({config.method}):"]
    for name, knob in config.grid.knobs().items():
        text = knob.describe() if isinstance(knob, Knob) else f"{len(knob)} values"
        values = knob.values if isinstance(knob, Knob) else knob
        lines.append(f"  {name}: {text}" + (f" {canonical_json(list(values))}" if values is not None else ""))
    lines.append(f"  size: {plan.space} points" if plan.space is not None else
                 "  size: infinite (a continuous range)")
    if config.objectives:
        lines.append("  objectives: " + ", ".join(f"{o.metric} ({o.direction})" for o in config.objectives)
                     + f"; chosen: the best {config.selection.metric} on their Pareto front")
    limit = config.samples or budget.max_trials
    lines.append("  budget: " + ", ".join(
        ([f"{config.samples} points (samples)"] if config.samples else []) +
        ([f"max_trials {budget.max_trials}"] if budget.max_trials else []) +
        ([f"time_budget {duration(budget.time_budget)} per submission"] if budget.time_budget else []))
        if limit or budget.time_budget else "  budget: -")
    preview = plan.points
    budget_trials = len(plan.pending)
    if feed is not None:
        lines.append(f"  the ledger holds {len(feed.values)} point(s) of this search "
                     f"({sum(1 for h in feed.values if len(feed.scores.get(h, {})) >= config.repeats)} finished); "
                     f"{feed.left} more to draw, one at a time as trials end")
        preview = tuple(feed.preview) or plan.points
        budget_trials += (feed.left or 0) * config.repeats
    if not preview or not budget_trials:
        return lines
    trials = [t for p in preview for t in plan.make_trials(p)]
    ghost = dataclasses.replace(plan, points=tuple(preview), trials=tuple(trials), pending=tuple(trials), done=())
    cost = estimate_cost(ghost, plan.flops_per_cpu)
    per_trial = cost.cpu_seconds / len(trials) / config.resources.cpus_per_trial
    slots = max(1, plan.total_cpus // config.resources.cpus_per_trial)
    if config.resources.max_concurrent:
        slots = min(slots, config.resources.max_concurrent)
    wall = per_trial * budget_trials / min(slots, budget_trials)
    eta = f"  ETA of the budget: {budget_trials} trial(s) x about {duration(per_trial)} " \
          f"({'estimated on ' + str(len(preview)) + ' sampled points' if feed is not None else 'the drawn points'})" \
          f" on {min(slots, budget_trials)} slot(s) = about {duration(wall)}"
    if budget.time_budget is not None and budget.time_budget < wall:
        eta += f"; the time budget ends it at {duration(budget.time_budget)}"
    lines.append(eta)
    return lines


def format_summary(plan: Plan) -> str:
    config = plan.config
    repeats = config.repeats
    lines = [f"Sweep {config.name!r} (method {config.method}, seed {config.seed}): {_space_text(plan)}"]
    if plan.feed is not None:
        lines.append(f"  points of the search so far: {len(plan.points)}; left out on the way: excluded "
                     f"{len(plan.excluded)}, infeasible {len(plan.infeasible)}")
    else:
        lines.append(f"  excluded {len(plan.excluded)}, infeasible {len(plan.infeasible)}, feasible {plan.candidates}"
                     + (f" (and {len(plan.merged)} merged: the same network as another point)" if plan.merged else ""))
    if config.method == "random" and plan.feed is None and plan.space is not None and config.samples \
            and not config.grid.conditions():
        short = " (fewer feasible points than samples: all taken)" if plan.candidates < config.samples else ""
        lines.append(f"  random draw: {len(plan.points)} of {plan.candidates} feasible points{short}")
    lines.append(f"  to train: {len(plan.points)} points x {repeats} repeat{'s' * (repeats > 1)} = "
                 f"{len(plan.trials)} trials: {len(plan.done)} done, {len(plan.pending)} pending")
    train, val, test = plan.sizes()
    lines.append(f"  data: {plan.data.describe(config.data.source)}")
    if plan.unmatched:
        lines.append(f"  {len(plan.unmatched)} finished run(s) match no trial of this plan (ignored)")

    if config.method != "grid":
        lines += search_lines(plan)
    if plan.infeasible:
        lines += ["", f"Infeasible points ({len(plan.infeasible)}):"]
        lines += _table(("point", "reason"), [(i.point.name, i.reason) for i in plan.infeasible])
    if plan.merged:
        lines += ["", f"Merged points, trained once as the point they equal ({len(plan.merged)}):"]
        lines += _table(("point", "same network as", "why"), [(m.point.name, m.into.name, m.reason)
                                                               for m in plan.merged])
    if plan.excluded:
        lines += ["", f"Excluded points ({len(plan.excluded)}):"]
        lines += _table(("point", "rule"), [(e.name, f"exclude[{e.rule}] {canonical_json(e.entry)}")
                                            for e in plan.excluded])
    if plan.points:
        cost = plan.cost
        done = {}
        for d in plan.done:
            done[d.trial.point.hash] = done.get(d.trial.point.hash, 0) + 1
        lines += ["", f"Points to train ({len(plan.points)}):"]
        lines += _table(("point", "hash", "MFLOP/img", "params", "done", "est./trial"), [
            (p.name, p.hash, f"{p.flops / 1e6:.2f}", p.params, f"{done.get(p.hash, 0)}/{repeats}",
             duration(cost.trial_seconds[p.hash])) for p in plan.points])
        unseen = [p for p in plan.points if p.unseen]
        if unseen:
            lines.append(f"  ({len(unseen)} of them leave input rows/columns unseen, "
                         f"as feasibility.unseen_inputs is allow)")
        if plan.done:
            lines += ["", f"Done trials ({len(plan.done)}):"]
            lines += _table(("trial", "run id"), [(d.trial.run_name, d.run_id) for d in plan.done])

        cpus = config.resources.cpus_per_trial
        max_epochs = max(t.point.config["train"]["epochs"] for t in plan.trials)
        lines += ["", "Estimated cost of the pending trials"
                  + (" (an upper bound: early stopping ends some trials sooner)" if config.early_stopping else "")
                  + ":"]
        lines.append(f"  {cost.pending_flops:.3g} FLOPs: 3 x forward x {train} train images x epochs, "
                     f"+ forward on {val} validation images per epoch and {test} test images")
        lines.append(f"  at {cost.flops_per_cpu / 1e9:.1f} GFLOP/s per CPU (float32 matmul, measured) "
                     f"x {cost.efficiency:.3f} efficiency ({cost.efficiency_source}) x {cpus} CPU{'s' * (cpus > 1)} "
                     "per trial")
        lines.append(f"  CPU time {duration(cost.cpu_seconds)}; wall about {duration(cost.wall_seconds)} "
                     f"running {cost.concurrency} trial{'s' * (cost.concurrency > 1)} at a time on "
                     f"{plan.total_cpus} CPUs")
        if cost.asha_share is not None:
            rule = config.early_stopping
            lines.append(f"  with early stopping, expected: CPU time {duration(cost.asha_cpu_seconds)}; wall about "
                         f"{duration(cost.asha_wall_seconds)} ({100 * cost.asha_share:.0f}% of the epochs: ASHA keeps "
                         f"the best 1/{rule.reduction_factor} at epochs "
                         f"{', '.join(map(str, rung_epochs(rule.grace_epochs, rule.reduction_factor, max_epochs)))}"
                         f"; more pass while a rung has few values)")
        if cpus > plan.total_cpus:
            lines.append(f"  warning: cpus_per_trial {cpus} exceeds the {plan.total_cpus} CPUs available")
    elif plan.feed is None or not plan.feed.can_draw():
        lines += ["", "Nothing to train: every point is excluded or infeasible."]
    return "\n".join(lines)
