"""``sweeper status``: a sweep's state from MLflow alone, as data (:class:`SweepStatus`) and as text.

Trials by the state their deciding (else latest) run shows (:mod:`ledger.rules`); runs whose driver
is lost as STALE; every submission with who ran it, when, and how it ended; failures with reasons;
the best points by the sweep's selection rule (on validation; test accuracy only for the chosen
one); and what to run next.

A submission's state is told from its record and its runs, never from its record alone:

=============  =====================================================================================
running        its driver beats (a heartbeat within the stale timeout)
stale          no heartbeat for longer than the stale timeout, its process not seen gone (another
               host, a frozen VM, a lost network): its runs are taken over by the next command
lost           its process is gone (this host) or a later command took its runs over
interrupted    it ended on Ctrl-C or SIGTERM (KILLED, exit 130 or 143)
FINISHED, ...  it ended on its own (its record's status and exit code)
=============  =====================================================================================

Beside it, what it did: its runs by state, from the runs themselves (a driver lost before it wrote
its counts still shows them), and how many of its trials no later run has finished ("left").
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from ledger import links, rank_points, rules, runs_frame, selection_from_tags
from ledger.liveness import Owners, owner_from_record, stale_after
from ledger.schema import ACTIVE, REASON, SUBMISSION
from ledger.submission import records
from ledger.sweeps import find_parent
from ledger.tracking import SweepNotFound, Tracker, resolve_tracking_uri, shown_uri


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
        raise SweepNotFound(f"no sweep named {name!r} in {shown_uri(tracker.uri)}")
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
    submissions = _submissions(parent, runs, timeout) if parent is not None else []
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


def _state(record: dict, owner) -> str:
    if record.get("ended"):
        status = str(record.get("status") or "ended")
        if status == "KILLED" or record.get("exit") in (130, 143):
            return "interrupted"
        return status
    if not owner.lost:
        return "running"
    return "stale" if owner.why.startswith("no heartbeat") else "lost"


def _submissions(parent, runs: list, timeout: float) -> list[dict]:
    """Each submission's record, its state (see the module's table), its runs by state (RUNNING
    and SCHEDULED runs of a stale or lost driver as STALE) and the trials it left unfinished."""
    current = rules.current_runs(runs)
    mine: dict[str, list] = {}
    for run in runs:
        mine.setdefault(run.data.tags.get(SUBMISSION, ""), []).append(run)
    out = []
    for sid, record in records(parent).items():
        owner = owner_from_record(sid, record, timeout)
        state = _state(record, owner)
        did: dict[str, int] = {}
        for run in mine.get(sid, []):
            shown = "STALE" if run.info.status in ACTIVE and state != "running" else run.info.status
            did[shown] = did.get(shown, 0) + 1
        left = {rules.key(r) for r in mine.get(sid, [])
                if current[rules.key(r)].info.status not in ("FINISHED", "FAILED")}
        out.append({"id": sid, **{k: v for k, v in record.items() if k != "beat"}, "state": state, "runs": did,
                    "left": len(left) if state != "running" else 0,
                    **({"why": owner.why} if state in ("lost", "stale") and not record.get("ended") else {})})
    return out


def _next_step(name: str, states: dict, submissions: list[dict]) -> str:
    if any(s["state"] == "running" for s in submissions):
        return "a submission is running; `sweeper status` again to follow it"
    left = sum(s.get("left", 0) for s in submissions if s["state"] in ("lost", "stale", "interrupted"))
    if states.get("STALE") or states.get("KILLED") or left or any(
            s["state"] in ("lost", "stale", "interrupted") for s in submissions[-1:]):
        what = f"the {left} trial(s) left by lost or interrupted submissions" if left else "the interrupted trials"
        return f"`sweeper resume {name}` finishes {what} from their last checkpoints"
    if states.get("FAILED"):
        return "see the failures above; `sweeper run FILE --retry-failed` trains them again"
    return f"`sweeper report {name}` says which knobs matter"


def status_text(status: SweepStatus) -> str:
    lines = [f"sweep {status.name} ({shown_uri(status.uri)}): {status.trials} trial(s) recorded in {status.runs} run(s)",
             "states: " + ", ".join(f"{k} {v}" for k, v in sorted(status.states.items()))]
    if status.submissions:
        lines.append(f"submissions ({len(status.submissions)}):")
        for s in status.submissions:
            exit_text = f", exit {s['exit']}" if s.get("exit") is not None else ""
            why = s.get("why") or s.get("message") or ""
            planned = s.get("trials")
            planned = f"{planned} to train" if planned else "trials not recorded"  # lost before its plan was written
            did = ", ".join(f"{k} {v}" for k, v in sorted(s.get("runs", {}).items())) or "no runs"
            left = f", {s['left']} left unfinished" if s.get("left") else ""
            lines.append(f"  {s.get('started', '?')}  {s.get('command', '?'):<6} {s.get('user', '?')}@{s.get('host', '?')}"
                         f" pid {s.get('pid', '?')}: {planned}, {s['state']}{exit_text}" + (f": {why}" if why else "")
                         + f" [runs: {did}{left}]")
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
