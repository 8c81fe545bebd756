"""``sweeper train``: one point of a sweep, in this process, without Ray or MLflow.

The point is the sweep's base settings with ``--set FIELD=VALUE`` applied; each value is checked
exactly as a one-value grid list would be, so the same typos get the same messages.
"""
from __future__ import annotations

import sys
from typing import Optional, Sequence

from cnn.dataset import DataError
from sweeper.plan.data import data_facts
from sweeper.spec.config import parse_sweep
from sweeper.spec.overrides import apply_overrides
from sweeper.plan.points import make_plan
from sweeper.trials.records import NullRecorder
from sweeper.trials.trial import TrialTask, execute
from sweeper.spec.yamlsource import Problem, SweepFileError, load_yaml, parse_value


def _assignments(file: str, items: Sequence[str]) -> dict:
    values, problems = {}, []
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or not name.strip():
            problems.append(Problem(f"--set {item}", "expected FIELD=VALUE, e.g. kernel_size=5", None))
            continue
        try:  # YAML typing: 5 is an int, [1, 3] a pair, same a string
            values[name.strip()] = parse_value(text)
        except SweepFileError as exc:
            problems += [Problem(f"--set {name.strip()}", f"not a value: {p.message}", None) for p in exc.problems]
    if problems:
        raise SweepFileError(file, problems)
    return values


def _from_set(problem: Problem) -> Problem:
    if not problem.path.startswith("grid."):
        return problem
    name = problem.path[len("grid."):].split("[")[0]
    return Problem(f"--set {name}", problem.message.replace("unknown key", "unknown field"), None)


def train_point(file: str, assignments: Sequence[str], repeat: int = 0, save: Optional[str] = None) -> int:
    data, lines = load_yaml(file)
    # Dotted keys (data.source=npz) set the file's own settings; plain ones (kernel_size=5) the point.
    dotted = [a for a in assignments if "." in a.partition("=")[0]]
    data, lines = apply_overrides(data, lines, dotted, file)
    values = _assignments(file, [a for a in assignments if a not in dotted])
    data = {**data, "grid": {k: [v] for k, v in values.items()}, "exclude": [], "method": "grid"}
    data.pop("samples", None)
    try:
        config = parse_sweep(data, lines, file)
    except SweepFileError as exc:  # the values came from --set, not from the file's grid
        raise SweepFileError(file, [_from_set(p) for p in exc.problems]) from None
    config = config.model_copy(update={"repeats": max(config.repeats, repeat + 1)})
    facts, prepared = data_facts(config)
    if prepared is None:
        raise DataError(f"{config.data.path}: not found")
    plan = make_plan(config, flops_per_cpu=1.0, data=facts)
    if plan.infeasible:
        print(f"{file}: this point cannot work: {plan.infeasible[0].reason}", file=sys.stderr)
        return 2
    trial = next(t for t in plan.trials if t.repeat == repeat)
    print(f"training {trial.run_name} (point {trial.point.hash}, seed {trial.seed})")
    task = TrialTask(trial, cpus=config.resources.cpus_per_trial)
    recorder = NullRecorder(lambda line: print(line, flush=True))
    outcome = execute(task, prepared, recorder=recorder)
    if outcome.status != "FINISHED":
        print(f"{trial.run_name} failed: {outcome.reason}", file=sys.stderr)
        return 1
    if save:
        import cnn

        cnn.save_model(save, recorder.model)
        print(f"weights saved to {save}")
    return 0
