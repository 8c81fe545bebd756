"""The sweep commands' logic: plan, run, resume. The CLI and the Python API only parse and print.

MLflow is the single record: the plan is re-derived from the sweep file, what is done from the
FINISHED runs (:mod:`ledger.rules`), and a resumed sweep reads its file back from the sweep's
parent run. ``run`` and ``resume`` first take over the runs of drivers that were lost
(:mod:`ledger.liveness`), so their trials continue from their last checkpoints. A submission with
nothing to train writes nothing and says so in one line.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Optional

from ledger import links
from ledger.liveness import Heartbeat, stale_after, take_over
from ledger.retry import StoreUnavailable
from ledger.schema import DATA_PREFIX, METHOD, OVERRIDES, knob_params
from ledger.selection import selection_tags
from ledger.submission import Submission
from ledger.sweeps import dataset_entity, find_parent
from ledger.tracking import SweepNotFound, Tracker, resolve_tracking_uri, shown_uri
from sweeper.exits import EXIT_FAILED, EXIT_OK, first_line
from sweeper.plan.cost import duration
from sweeper.plan.data import PreparedData, data_facts, min_classes, prepare_data
from sweeper.plan.points import Plan, make_plan
from sweeper.trials.counts import Counts
from sweeper.trials.executor import Runner
from sweeper.trials.observer import Silent
from sweeper.trials.session import SweepResult, connect
from sweeper.spec.config import SweepConfig, canonical_json, load_sweep


def tracker_for(config: SweepConfig, tracking_uri: Optional[str] = None) -> Tracker:
    return Tracker(resolve_tracking_uri(tracking_uri or config.mlflow.tracking_uri))


def plan_rows(plan: Plan, failed_before: dict, too_big: Optional[dict] = None) -> list[dict]:
    """Every trial of the plan with its state, and the points left out with why (a submission's record)."""
    too_big = too_big or {}
    rows = [{"run_name": d.trial.run_name, "point": d.trial.point.hash, "repeat": d.trial.repeat,
             "seed": d.trial.seed, "state": "done", "run_id": d.run_id} for d in plan.done]
    rows += [{"run_name": t.run_name, "point": t.point.hash, "repeat": t.repeat, "seed": t.seed,
              "state": "failed_before" if t.key in failed_before else "too_big" if t.key in too_big else "pending",
              **({"reason": too_big[t.key]} if t.key in too_big else {})} for t in plan.pending]
    rows += [{"run_name": i.point.name, "point": i.point.hash, "state": "infeasible", "reason": i.reason}
             for i in plan.infeasible]
    rows += [{"run_name": e.name, "state": "excluded", "reason": f"exclude[{e.rule}]"} for e in plan.excluded]
    return rows


def search_history(tracker: Tracker, experiment_id: Optional[str], config: SweepConfig) -> Optional[list]:
    """Methods tpe and nsga2: the ledger's trial runs as the search reads them, each finished one
    with its value of every objective (None for the other methods, whose points do not depend on
    results)."""
    from sweeper.spec.config import MODEL_METHODS

    if config.method not in MODEL_METHODS:
        return None
    from sweeper.plan.search import objective_metrics, objective_values
    from sweeper.plan.search.feed import Recorded

    if experiment_id is None:
        return []
    names = [metric for metric, _ in objective_metrics(config)]
    return [Recorded(tuple(r["key"]), r["values"], r["status"], objective_values(r["metrics"], names), r["failed"])
            for r in tracker.trial_records(experiment_id, names)]


def plan_sweep(config: SweepConfig, tracking_uri: Optional[str] = None, total_cpus: Optional[int] = None):
    """``(plan, failed_before)`` of ``config`` against what MLflow already holds; writes nothing.

    The data is read and checked when its files are there (a :class:`cnn.DataError` otherwise).
    """
    facts, _ = data_facts(config)
    tracker = tracker_for(config, tracking_uri)
    experiment_id = tracker.find_experiment(config.experiment_name)
    finished = tracker.finished(experiment_id) if experiment_id else {}
    plan = make_plan(config, finished, total_cpus=total_cpus, data=facts,
                     history=search_history(tracker, experiment_id, config))
    pending = {t.key for t in plan.pending}
    failed = tracker.failed(experiment_id) if experiment_id else {}
    return plan, {k: v for k, v in failed.items() if k in pending}


def sweep_settings(config: SweepConfig) -> dict[str, object]:
    """What the sweep's parent run holds as params: the fixed settings under their names in the
    sweep file, the grid as ``grid.<knob>`` lists, the repeats and the method."""
    base = json.loads(canonical_json({"seed": config.seed, "data": config.data.model_dump(),
                                      "model": config.model.model_dump(), "train": config.train.model_dump()}))
    axes = dict(config.grid.axes())
    knobs = config.grid.knobs()
    fixed = {k: v for k, v in knob_params(base).items() if k not in knobs and not k.startswith(f"{DATA_PREFIX}path")}
    return {**fixed, **{f"grid.{k}": json.loads(canonical_json(list(v))) for k, v in axes.items()},
            **{f"grid.{k}": knob.describe() for k, knob in config.grid.ranges().items()},
            "repeats": config.repeats, "method": config.method}


def too_big_here(plan: Plan, address: Optional[str]) -> dict:
    """Pending trials whose estimated memory exceeds what a worker of this run has: this machine's
    memory for a local Ray, ``SWEEPER_WORKER_MEMORY`` when set (a cluster's workers). A run-time
    check (the plan never reads the machine); the trials stay pending, named, for bigger workers."""
    import os

    from sweeper.plan.memory import ENV, memory_problem, worker_memory

    if (address or os.environ.get("RAY_ADDRESS")) and not os.environ.get(ENV):
        return {}  # a cluster's workers are not this machine: only the sweep file or the variable says
    have, source = worker_memory()
    sizes = plan.sizes()
    out = {}
    for trial in plan.pending:
        problem = memory_problem(trial.point, sizes, have, source)
        if problem is not None:
            out[trial.key] = problem
    return out


def dataset_of(config: SweepConfig, data: PreparedData):
    """The sweep's data as an MLflow dataset input (name, digest, source, schema)."""
    d = config.data
    source = str(Path(d.path).expanduser().resolve()) if d.path else (
        "cnn/datasets/mnist-subset" if d.source == "bundled" else d.source)
    name = {"bundled": "mnist-subset", "mnist": "mnist"}.get(d.source) or Path(d.path or d.source).name
    shapes = {"train": data.train.x.shape, "test": data.test.x.shape,
              **({"validation": data.val.x.shape} if data.val is not None else {})}
    rows = sum(shape[0] for shape in shapes.values())
    return dataset_entity(name, data.digest(), source, shapes, str(data.train.x.dtype), rows)


def run_sweep(config: SweepConfig, sweep_text: str, *, command: str = "run", address: Optional[str] = None,
              observer=None, retry_failed: bool = False, tracking_uri: Optional[str] = None,
              stale_seconds: Optional[float] = None, overrides=()) -> SweepResult:
    """Plan ``config`` against what MLflow holds and train what is missing on Ray.

    ``sweep_text``: the sweep file as given (recorded with the submission); ``overrides``: the
    ``--set`` assignments already applied to ``config``, recorded so that a resume by name applies
    them again. The data is read and checked first: bad data is a :class:`cnn.DataError` before
    anything starts.
    """
    observer = observer or Silent()
    data = prepare_data(config.data.model_dump(), config.seed, min_classes(config))
    tracker = tracker_for(config, tracking_uri)
    timeout = stale_after(stale_seconds)
    experiment_id = tracker.find_experiment(config.experiment_name)
    if experiment_id is not None:
        for run, owner in take_over(tracker, experiment_id, timeout):
            observer.event(f"  taking over {run.info.run_name} (run {run.info.run_id}): {owner.text()}")
    plan = make_plan(config, tracker.finished(experiment_id) if experiment_id else {}, data=data.facts(),
                     history=search_history(tracker, experiment_id, config))
    pending_keys = {t.key for t in plan.pending}
    failed = tracker.failed(experiment_id) if experiment_id else {}
    failed_before = {} if retry_failed else {k: v for k, v in failed.items() if k in pending_keys}
    too_big = too_big_here(plan, address)
    for key, reason in too_big.items():
        observer.event(f"  not training {key[0]} #{key[1] + 1} on these workers: {reason}")
    skip = {**failed_before, **too_big}
    to_train = len(plan.pending) - len(skip) + (plan.feed.left or 0) * config.repeats if plan.feed else \
        len(plan.pending) - len(skip)
    where = links.sweep_url(tracker, experiment_id) if experiment_id else None
    if to_train == 0:
        counts = Counts(len(plan.trials), {"done_before": len(plan.done), "failed_before": len(skip)})
        more = f" ({len(failed_before)} failed before: --retry-failed trains them again)" if failed_before else ""
        more += f" ({len(too_big)} too big for these workers)" if too_big else ""
        observer.event(f"sweep {config.name}: nothing to train, all {len(plan.trials) - len(skip)} trial(s) are done{more}"
                       + (f"; {where}" if where else ""))
        result = SweepResult(counts.as_dict(), EXIT_OK, "nothing to train")
        parent = find_parent(tracker, experiment_id) if experiment_id and plan.done else None
        if parent is not None:  # a sweep finished before its champion was registered (an older store)
            champion = champion_of(config, tracker, experiment_id, parent.info.run_id, data, observer)
            if champion is not None and champion.created:
                observer.event(champion.line())
        return result
    experiment_id = tracker.open_experiment(config.experiment_name, config.name)
    if plan.feed is not None:  # every draw reads the ledger again: other submissions' points count too
        plan.feed.refresh = lambda: search_history(tracker, experiment_id, config)
    resume_from = {k: v for k, v in tracker.checkpoints(experiment_id).items() if k in pending_keys}
    tags = {**selection_tags(config.rule()), METHOD: config.method, OVERRIDES: json.dumps(list(overrides))}
    submission = Submission.start(tracker, experiment_id, config.name, command, trials=to_train, sweep_text=sweep_text,
                                  plan_text=plan.summary(), plan_rows=plan_rows(plan, failed_before, too_big),
                                  settings=sweep_settings(config), dataset=dataset_of(config, data), tags=tags,
                                  view=links.view_state(list(config.grid.knobs()), config.selection.metric,
                                                        config.selection.mode))
    if plan.feed is not None:
        observer.event(f"search {config.method}: rebuilt from the ledger: {len(plan.points)} point(s) known, "
                       f"{len(plan.feed.history()) - sum(o.value is None for o in plan.feed.history())} with a result; "
                       f"up to {plan.feed.left} more to draw")
    observer.event(f"sweep {config.name}: {len(plan.trials)} trial(s) of {len(plan.points)} point(s); "
                   f"{len(plan.done)} done before, {to_train} to train"
                   + (f", {len(failed_before)} failed before (--retry-failed trains them again)" if failed_before else "")
                   + (f", {len(plan.infeasible)} infeasible and {len(plan.excluded)} excluded point(s) skipped"
                      if plan.infeasible or plan.excluded else ""))
    for key, (run_id, reason) in failed_before.items():
        observer.event(f"  skipping {key[0]} #{key[1] + 1}: failed before in run {run_id}: {reason}")
    runner = Runner(plan, submission, skip=skip, resume_from=resume_from, observer=observer,
                    stale_seconds=timeout, data=data)
    with Heartbeat(submission.beat):
        try:
            started = connect(address)
        except BaseException:
            submission.end(runner.counts.as_dict(), "FAILED", "could not start or join Ray")
            raise
        try:
            result = runner.run()
        finally:
            observer.close()
            if started:
                import ray

                ray.shutdown()
    result.experiment_id = experiment_id
    if result.exit_code in (EXIT_OK, EXIT_FAILED):  # not after a stop, an interrupt or a lost store
        result.champion = champion_of(config, tracker, experiment_id, submission.parent_id, data, observer)
    return result


def champion_of(config: SweepConfig, tracker: Tracker, experiment_id: str, parent_id: str, data: PreparedData,
                observer):
    """The chosen point's model registered as ``models:/<sweep>@champion`` (:mod:`ledger.models`),
    or None: nothing finished, or the store refused (said in one line; the sweep's result stands)."""
    from ledger.models import register_champion

    try:
        return register_champion(tracker.uri, experiment_id, config.name, parent_id, config.rule(),
                                 data.test.x[:2])
    except StoreUnavailable:
        raise
    except Exception as exc:  # noqa: BLE001 -- the trials are recorded; the model can be registered later
        observer.event(f"champion of {config.name} not registered: {first_line(exc, 200)}")
        return None


def summary_lines(result: SweepResult, elapsed: float, uri: str) -> list[str]:
    """The block printed when a submission ends: what happened, how long, where to look."""
    # The message first, on a line of its own: it may end in a command to run next.
    lines = [result.message,
             f"this submission: {duration(elapsed)} ({duration(result.wall_seconds)} training); "
             + ", ".join(f"{k} {v}" for k, v in result.counts.items() if v)]
    if result.efficiency is not None:
        lines.append(f"trial time {sum(result.trial_seconds):.1f}s on {result.cpus} CPU(s): "
                     f"efficiency (sum of trial times / CPUs) / wall = {result.efficiency:.0%}")
    if result.experiment_id is not None:
        url = links.experiment_url(links.ui_address(uri), result.experiment_id, shared_view=True)
        local = not uri.startswith(("http://", "https://"))
        lines.append(f"browse the runs: {url}" + ("  (start the UI with `sweeper ui`)" if local else ""))
    if result.champion is not None:
        lines.append(result.champion.line())
    return lines


def sweep_source(tracking_uri: Optional[str], target: str) -> tuple[str, list[str]]:
    """The sweep file of sweep ``target`` as its last submission gave it, and that submission's ``--set``."""
    tracker = Tracker(resolve_tracking_uri(tracking_uri))
    experiment_id = tracker.find_sweep(target)
    parent = find_parent(tracker, experiment_id) if experiment_id else None
    if parent is None:
        raise SweepNotFound(f"no sweep named {target!r} in {shown_uri(tracker.uri)} (give the sweep file instead)")
    try:
        text = tracker.sweep_text(parent.info.run_id)
    except StoreUnavailable:
        raise
    except Exception as exc:  # noqa: BLE001 -- the artifact (or its folder) is gone
        raise SweepNotFound(
            f"the sweep file of {target!r} is missing from the store: artifact sweep.yaml of parent run "
            f"{parent.info.run_id} ({parent.info.artifact_uri}) cannot be read ({first_line(exc, 200)}); "
            f"give the file instead: `sweeper resume FILE`") from None
    return text, json.loads(parent.data.tags.get(OVERRIDES, "[]"))


def load_text(text: str, overrides=()) -> SweepConfig:
    """A sweep file's text (read back from the store) validated as if it were a file."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "sweep.yaml"
        path.write_text(text)
        return load_sweep(path, overrides)


__all__ = ["run_sweep", "plan_sweep", "sweep_source", "summary_lines", "SweepNotFound", "EXIT_OK"]
