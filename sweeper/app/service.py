"""The sweep commands' logic: plan, run, resume, status. The CLI only parses arguments and prints.

MLflow is the single record: the plan is re-derived from the sweep file, what is done from the
FINISHED runs (:mod:`ledger.rules`), and a resumed sweep reads its file back from the last parent
run. ``run`` and ``resume`` first take over the runs of drivers that were lost
(:mod:`ledger.liveness`), so their trials continue from their last checkpoints.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Optional

from ledger import rank_points, rules, runs_frame, selection_from_tags, selection_tags
from ledger.retry import StoreUnavailable
from ledger.liveness import Heartbeat, Owners, owner_of, stale_after, take_over
from ledger.schema import ACTIVE, OVERRIDES, REASON
from ledger.submission import Submission
from ledger.tracking import Tracker, existing_store, resolve_tracking_uri
from sweeper.app.progress import Progress, duration
from sweeper.plan.data import data_facts, min_classes, prepare_data
from sweeper.plan.points import Plan, make_plan
from sweeper.run.executor import Runner
from sweeper.exits import EXIT_OK, first_line
from sweeper.run.session import SweepResult, connect
from sweeper.spec.config import SweepConfig, load_sweep


class SweepNotFound(LookupError):
    pass


def tracker_for(config: SweepConfig, tracking_uri: Optional[str] = None) -> Tracker:
    return Tracker(resolve_tracking_uri(tracking_uri or config.mlflow.tracking_uri))


def plan_rows(plan: Plan, failed_before: dict) -> list[dict]:
    rows = [{"run_name": d.trial.run_name, "point": d.trial.point.hash, "repeat": d.trial.repeat,
             "seed": d.trial.seed, "state": "done", "run_id": d.run_id} for d in plan.done]
    rows += [{"run_name": t.run_name, "point": t.point.hash, "repeat": t.repeat, "seed": t.seed,
              "state": "failed_before" if t.key in failed_before else "pending"} for t in plan.pending]
    rows += [{"run_name": i.point.name, "point": i.point.hash, "state": "infeasible", "reason": i.reason}
             for i in plan.infeasible]
    rows += [{"run_name": e.name, "state": "excluded", "reason": f"exclude[{e.rule}]"} for e in plan.excluded]
    return rows


def plan_sweep(path, tracking_uri: Optional[str] = None, total_cpus: Optional[int] = None, overrides=()):
    """``(plan, failed_before)`` of ``path`` against what MLflow already holds; writes nothing.

    The data is read and checked when its files are there (a :class:`cnn.DataError` otherwise).
    """
    config = load_sweep(path, overrides)
    facts, _ = data_facts(config)
    tracker = tracker_for(config, tracking_uri)
    experiment_id = tracker.experiment_id(config.experiment_name, create=False) if existing_store(tracker.uri) else None
    finished = tracker.finished(experiment_id) if experiment_id else {}
    plan = make_plan(config, finished, total_cpus=total_cpus, data=facts)
    pending = {t.key for t in plan.pending}
    failed = tracker.failed(experiment_id) if experiment_id else {}
    return plan, {k: v for k, v in failed.items() if k in pending}


def run_sweep(path, *, command: str = "run", address: Optional[str] = None, quiet: bool = False,
              retry_failed: bool = False, stream=None, tracking_uri: Optional[str] = None,
              stale_seconds: Optional[float] = None, overrides=()) -> SweepResult:
    """Plan ``path`` (with ``--set`` ``overrides``) against what MLflow holds and train what is missing on Ray.

    The data is read and checked first: bad data is a :class:`cnn.DataError` before anything starts.
    """
    config = load_sweep(path, overrides)
    text = Path(path).read_text()
    data = prepare_data(config.data.model_dump(), config.seed, min_classes(config))
    tracker = tracker_for(config, tracking_uri)
    progress = Progress(stream, quiet=quiet)
    timeout = stale_after(stale_seconds)
    experiment_id = tracker.experiment_id(config.experiment_name, sweep_name=config.name)  # in the driver, before any worker
    for run, owner in take_over(tracker, experiment_id, timeout):
        progress.event(f"  taking over {run.info.run_name} (run {run.info.run_id}): {owner.text()}")
    plan = make_plan(config, tracker.finished(experiment_id), data=data.facts())
    pending_keys = {t.key for t in plan.pending}
    failed_before = {} if retry_failed else {k: v for k, v in tracker.failed(experiment_id).items() if k in pending_keys}
    resume_from = {k: v for k, v in tracker.checkpoints(experiment_id).items() if k in pending_keys}
    parent_id = tracker.start_parent(experiment_id, config.name, command, text, plan.summary(),
                                     plan_rows(plan, failed_before),
                                     tags={**selection_tags(config.selection.rule()), "sweep.method": config.method,
                                           **({OVERRIDES: json.dumps(list(overrides))} if overrides else {})})
    progress.event(f"sweep {config.name}: {len(plan.trials)} trial(s) of {len(plan.points)} point(s); "
                   f"{len(plan.done)} done before, {len(plan.pending) - len(failed_before)} to train, "
                   f"{len(failed_before)} failed before (--retry-failed to train them again), "
                   f"{len(plan.infeasible)} infeasible and {len(plan.excluded)} excluded point(s) skipped")
    for key, (run_id, reason) in failed_before.items():
        progress.event(f"  skipping {key[0]} #{key[1] + 1}: failed before in run {run_id}: {reason}")
    submission = Submission(tracker, experiment_id, parent_id, config.name)
    runner = Runner(plan, submission, skip=failed_before, resume_from=resume_from, observer=progress,
                    stale_seconds=timeout, data=data)
    if not runner.scheduler.queued:
        return _nothing_to_do(runner, progress)
    with Heartbeat(tracker, parent_id):
        try:
            started = connect(address)
        except BaseException:
            tracker.update_parent(parent_id, runner.counts.as_dict(), "FAILED", "could not start or join Ray")
            raise
        try:
            result = runner.run()
        finally:
            progress.close()
            if started:
                import ray

                ray.shutdown()
    progress.event(f"{result.message} in {duration(progress.elapsed())} ({duration(result.wall_seconds)} training): "
                   + ", ".join(f"{k} {v}" for k, v in result.counts.items() if v))
    if result.efficiency is not None:
        progress.event(f"trial time {sum(result.trial_seconds):.1f}s on {result.cpus} CPU(s): "
                       f"efficiency (sum of trial times / CPUs) / wall = {result.efficiency:.0%}")
    return result


def _nothing_to_do(runner: Runner, progress: Progress) -> SweepResult:
    result = runner.result()
    progress.event("nothing to train: every trial of the plan is done (or failed before)")
    return result


def resume_sweep(target: str, *, tracking_uri: Optional[str] = None, **kwargs) -> SweepResult:
    """Resume by sweep file, or by name: the file is read back from the sweep's last parent run."""
    if Path(target).is_file():
        return run_sweep(target, command="resume", tracking_uri=tracking_uri, **kwargs)
    tracker = Tracker(resolve_tracking_uri(tracking_uri))
    experiment_id = tracker.find_sweep(target)
    parent = tracker.latest_parent(experiment_id) if experiment_id else None
    if parent is None:
        raise SweepNotFound(f"no sweep named {target!r} in {tracker.uri} (give the sweep file instead)")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "sweep.yaml"
        try:
            text = tracker.sweep_text(parent.info.run_id)
        except StoreUnavailable:
            raise
        except Exception as exc:  # noqa: BLE001 -- the artifact (or its folder) is gone
            cause = first_line(exc, 200)
            raise SweepNotFound(
                f"the sweep file of {target!r} is missing from the store: artifact sweep.yaml of parent run "
                f"{parent.info.run_id} ({parent.info.artifact_uri}) cannot be read ({cause}); "
                f"give the file instead: `sweeper resume FILE`") from None
        path.write_text(text)
        overrides = json.loads(parent.data.tags.get(OVERRIDES, "[]"))  # the --set of that submission
        return run_sweep(path, command="resume", tracking_uri=tracking_uri, overrides=overrides, **kwargs)


def status_report(name: str, tracking_uri: Optional[str] = None, top: int = 5,
                  stale_seconds: Optional[float] = None) -> str:
    """Counts per state, stale runs, failures with reasons, best points: from MLflow alone."""
    tracker = Tracker(resolve_tracking_uri(tracking_uri))
    experiment_id = tracker.find_sweep(name)
    if experiment_id is None:
        raise SweepNotFound(f"no sweep named {name!r} in {tracker.uri}")
    runs = tracker.trials(experiment_id)
    current = rules.current_runs(runs)
    owners = Owners(tracker, stale_after(stale_seconds))
    states: dict[str, int] = {}
    stale = []
    for run in current.values():
        state = run.info.status
        if state in ACTIVE:
            owner = owners.of_run(run)
            if owner is None or owner.lost:
                state = "STALE"
                stale.append((run, owner))
        states[state] = states.get(state, 0) + 1
    parent = tracker.latest_parent(experiment_id)
    lines = [f"sweep {name} ({tracker.uri}): {len(current)} trial(s) recorded in {len(runs)} run(s)"]
    if parent is not None:
        planned = int(float(parent.data.metrics.get("trials_planned", 0)))
        state = parent.info.status
        if state in ACTIVE and owner_of(parent, owners.timeout).lost:
            state = "STALE"
        lines.append(f"last submission: {parent.info.run_name}, {state}, {planned} trial(s) planned"
                     + (f": {parent.data.tags[REASON]}" if REASON in parent.data.tags else ""))
    lines.append("states: " + ", ".join(f"{k} {v}" for k, v in sorted(states.items())))
    if stale:
        lines.append("stale (their driver was lost; `sweeper resume` takes them over):")
        lines += [f"  {r.info.run_name} (run {r.info.run_id}): "
                  + (o.text() if o is not None else "its parent run is gone") for r, o in stale]
    failed = [r for r in current.values() if r.info.status == "FAILED"]
    if failed:
        lines.append("failures:")
        lines += [f"  {r.info.run_name}: {r.data.tags.get(REASON, '?')}" for r in failed]
    frame = runs_frame(runs)
    done = frame["status"].eq("FINISHED") & ~frame["duplicate"]
    selection = selection_from_tags(parent.data.tags if parent is not None else {})
    ranked = rank_points(frame, selection)
    if len(ranked):
        # Chosen on validation, as the report does; test accuracy only for the chosen point.
        lines.append(f"best {min(top, len(ranked))} point(s) by mean {selection.text} over repeats:")
        finished = frame[done]
        for rank, (point, row) in enumerate(ranked.head(top).iterrows()):
            mine = finished[finished["point"] == point]
            test = f"  chosen: test accuracy {mine['test_accuracy'].mean():.4f}" if rank == 0 else ""
            lines.append(f"  {row['point_name']:<28} {selection.metric} {row['score']:.4f}  {row['repeats']} "
                         f"repeat(s)  {mine['train_seconds'].mean():.1f}s{test}")
    elif done.any():
        lines.append(f"no finished trial logged {selection.metric}: no point can be chosen (data.val_fraction 0?)")
    return "\n".join(lines)


__all__ = ["run_sweep", "resume_sweep", "status_report", "SweepNotFound", "EXIT_OK"]
