"""``sweeper status``: a sweep's state from MLflow alone, as data (:class:`SweepStatus`) and as text.

Trials by the state their deciding (else latest) run shows (:mod:`ledger.rules`); runs whose driver
is lost as STALE; every submission with who ran it, when, and how it ended (running, ended, or
lost: its driver died without ending it); failures with reasons; the best points by the sweep's
selection rule (on validation; test accuracy only for the chosen one); and what to run next.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from ledger import links, rank_points, rules, runs_frame, selection_from_tags
from ledger.liveness import Owners, owner_from_record, stale_after
from ledger.schema import ACTIVE, REASON
from ledger.submission import records
from ledger.sweeps import find_parent
from ledger.tracking import SweepNotFound, Tracker, resolve_tracking_uri


@dataclass(frozen=True)
class SweepStatus:
    """What ``sweeper status`` knows of a sweep."""

    name: str
    uri: str
    url: str  # the sweep's experiment in MLflow's UI, training-runs view
    states: dict  # state -> trials (FINISHED, FAILED, KILLED, RUNNING, SCHEDULED, STALE)
    runs: int  # child runs recorded (a trial may have several: attempts, duplicates)
    submissions: list = field(default_factory=list)  # dicts: id, command, started, user, host, state, ...
    stale: list = field(default_factory=list)  # (run name, run id, why)
    failures: list = field(default_factory=list)  # (run name, reason)
    best: list = field(default_factory=list)  # dicts: point, score, repeats, seconds (best first)
    chosen: Optional[dict] = None  # the best point, with its mean test accuracy
    metric: str = "val_accuracy"
    rule: str = "val_accuracy (higher is better)"  # the selection rule, in words
    next_step: str = ""

    @property
    def trials(self) -> int:
        return sum(self.states.values())


def sweep_status(name: str, tracking_uri: Optional[str] = None, top: int = 5,
                 stale_seconds: Optional[float] = None) -> SweepStatus:
    """The state of sweep ``name``; :class:`SweepNotFound` if the store has none."""
    tracker = Tracker(resolve_tracking_uri(tracking_uri))
    experiment_id = tracker.find_sweep(name)
    if experiment_id is None:
        raise SweepNotFound(f"no sweep named {name!r} in {tracker.uri}")
    timeout = stale_after(stale_seconds)
    runs = tracker.trials(experiment_id)
    owners = Owners(tracker, timeout)
    states: dict[str, int] = {}
    stale = []
    for run in rules.current_runs(runs).values():
        state = run.info.status
        if state in ACTIVE:
            owner = owners.of_run(run)
            if owner is None or owner.lost:
                state = "STALE"
                stale.append((run.info.run_name, run.info.run_id,
                              owner.text() if owner is not None else "nothing records its submission"))
        states[state] = states.get(state, 0) + 1
    parent = find_parent(tracker, experiment_id)
    submissions = _submissions(parent, timeout) if parent is not None else []
    failures = [(r.info.run_name, r.data.tags.get(REASON, "?")) for r in rules.current_runs(runs).values()
                if r.info.status == "FAILED"]
    frame = runs_frame(runs)
    selection = selection_from_tags(parent.data.tags if parent is not None else {})
    ranked = rank_points(frame, selection)
    best, chosen = [], None
    if len(ranked):
        done = frame[frame["status"].eq("FINISHED") & ~frame["duplicate"]]
        for rank, (point, row) in enumerate(ranked.head(top).iterrows()):
            mine = done[done["point"] == point]
            best.append({"point": row["point_name"], "score": float(row["score"]), "repeats": int(row["repeats"]),
                         "seconds": float(mine["train_seconds"].mean())})
            if rank == 0:
                chosen = {**best[0], "test_accuracy": float(mine["test_accuracy"].mean())}
    url = links.sweep_url(tracker, experiment_id)
    return SweepStatus(name, tracker.uri, url, states, len(runs), submissions, stale, failures, best, chosen,
                       selection.metric, selection.text, _next_step(name, states, submissions))


def _submissions(parent, timeout: float) -> list[dict]:
    out = []
    for sid, record in records(parent).items():
        owner = owner_from_record(sid, record, timeout)
        state = record.get("status") if record.get("ended") else ("lost" if owner.lost else "running")
        out.append({"id": sid, **{k: v for k, v in record.items() if k != "beat"}, "state": state,
                    **({"why": owner.why} if state == "lost" and not record.get("ended") else {})})
    return out


def _next_step(name: str, states: dict, submissions: list[dict]) -> str:
    if any(s["state"] == "running" for s in submissions):
        return "a submission is running; `sweeper status` again to follow it"
    if states.get("STALE") or states.get("KILLED") or any(s["state"] in ("lost", "KILLED") for s in submissions[-1:]):
        return f"`sweeper resume {name}` finishes the interrupted trials from their last checkpoints"
    if states.get("FAILED"):
        return f"see the failures above; `sweeper run FILE --retry-failed` trains them again"
    return f"`sweeper report {name}` says which knobs matter"


def status_text(status: SweepStatus) -> str:
    lines = [f"sweep {status.name} ({status.uri}): {status.trials} trial(s) recorded in {status.runs} run(s)",
             f"states: " + ", ".join(f"{k} {v}" for k, v in sorted(status.states.items()))]
    if status.submissions:
        lines.append(f"submissions ({len(status.submissions)}):")
        for s in status.submissions:
            exit_text = f", exit {s['exit']}" if s.get("exit") is not None else ""
            why = s.get("why") or s.get("message") or ""
            lines.append(f"  {s.get('started', '?')}  {s.get('command', '?'):<6} {s.get('user', '?')}@{s.get('host', '?')}"
                         f" pid {s.get('pid', '?')}: {s.get('trials', '?')} to train, {s['state']}{exit_text}"
                         + (f": {why}" if why else ""))
    if status.stale:
        lines.append("stale (their driver was lost; `sweeper resume` takes them over):")
        lines += [f"  {name} (run {run_id}): {why}" for name, run_id, why in status.stale]
    if status.failures:
        lines.append("failures:")
        lines += [f"  {name}: {reason}" for name, reason in status.failures]
    if status.best:
        lines.append(f"best {len(status.best)} point(s) by mean {status.rule} over repeats:")
        for rank, row in enumerate(status.best):
            test = f"  chosen: test accuracy {status.chosen['test_accuracy']:.4f}" if rank == 0 and status.chosen else ""
            lines.append(f"  {row['point']:<28} {status.metric} {row['score']:.4f}  {row['repeats']} repeat(s)  "
                         f"{row['seconds']:.1f}s{test}")
    elif status.states.get("FINISHED"):
        lines.append(f"no finished trial logged {status.metric}: no point can be chosen (data.val_fraction 0?)")
    lines.append(f"next: {status.next_step}")
    lines.append(f"browse: {status.url}")
    return "\n".join(lines)
