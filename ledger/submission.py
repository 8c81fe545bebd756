"""One submission of a sweep: the driver's records on the sweep's parent run, and the child runs it writes.

A *submission* is one ``sweeper run`` or ``resume`` command. It does not get a run of its own:
the sweep has one parent run (:mod:`ledger.sweeps`) and every submission that trains something
records itself there, under its id (12 hex digits):

* ``sweep.sub.<id>``: a JSON record: ``command``, ``started`` (UTC), ``user``, ``host``, ``pid``,
  ``trials`` (to train when it started), and at its end ``ended``, ``status``, ``exit``,
  ``message``, ``counts``; a submission whose driver was lost gets ``ended`` and ``status: lost``
  from the command that takes its runs over (:mod:`ledger.liveness`);
* ``sweep.beat.<id>``: its driver's heartbeat (epoch ms), refreshed every few seconds;
* artifacts ``submissions/<id>/sweep.yaml`` and ``plan.json`` (which points, in which state).

Every child run it creates carries ``sweep.submission = <id>``, so that its liveness can be told
and its claims recognised (:mod:`ledger.claims`). A submission with nothing to train writes nothing.
"""
from __future__ import annotations

import json
import os
import socket
import time
import uuid
from typing import Optional, Sequence

from . import links, rules, sweeps
from .schema import (ACTIVE, BEAT_PREFIX, MAX_TAG_VALUE, NOTE, PARENT_RUN, PLAN_FILE, REASON, SUB_PREFIX, SUBMISSION,
                     SWEEP_FILE, tag_filter)

#: How the description the driver writes starts (a report's own leaderboard is left alone).
NOTE_MARK = "**Sweep `"
from .source import user
from .tracking import Tracker, now_ms


def new_id() -> str:
    return uuid.uuid4().hex[:12]


def utc_now() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())


def records(parent) -> dict[str, dict]:
    """``id -> record`` of every submission recorded on ``parent`` (an MLflow ``Run``), oldest first,
    each with its heartbeat under ``beat`` (epoch ms, or None)."""
    tags = parent.data.tags
    out = {}
    for key, text in tags.items():
        if not key.startswith(SUB_PREFIX):
            continue
        sid = key[len(SUB_PREFIX):]
        try:
            record = json.loads(text)
        except ValueError:
            record = {"note": "unreadable record"}
        beat = tags.get(BEAT_PREFIX + sid)
        record["beat"] = int(beat) if beat and beat.isdigit() else None
        out[sid] = record
    return dict(sorted(out.items(), key=lambda item: str(item[1].get("started", ""))))


class Submission:
    """The ledger as one submission writes it."""

    def __init__(self, tracker: Tracker, experiment_id: str, parent_id: str, sweep_name: str,
                 submission_id: Optional[str] = None):
        self.tracker, self.experiment_id, self.parent_id = tracker, experiment_id, parent_id
        self.sweep_name = sweep_name
        self.id = submission_id or new_id()
        self.record: dict = {}
        self.dataset = None  # the sweep's data as an MLflow dataset input, logged on every child run

    @classmethod
    def start(cls, tracker: Tracker, experiment_id: str, sweep_name: str, command: str = "run", *, trials: int = 0,
              sweep_text: str = "", plan_text: str = "", plan_rows: Sequence[dict] = (),
              settings: Optional[dict] = None, dataset=None, tags: Optional[dict] = None,
              view: Optional[dict] = None) -> "Submission":
        """Record a new submission on the sweep's parent run (made if the sweep has none yet)."""
        from mlflow.entities import RunTag

        parent_id = sweeps.open_parent(tracker, experiment_id, sweep_name)
        sub = cls(tracker, experiment_id, parent_id, sweep_name)
        sub.dataset = dataset
        sub.record = {"command": command, "started": utc_now(), "started_ms": now_ms(), "user": user(),
                      "host": socket.gethostname(), "pid": os.getpid(), "trials": trials}
        client = tracker.client
        client.log_batch(parent_id, tags=[RunTag(SUB_PREFIX + sub.id, json.dumps(sub.record)),
                                          RunTag(BEAT_PREFIX + sub.id, str(now_ms())),
                                          *[RunTag(k, str(v)[:MAX_TAG_VALUE]) for k, v in (tags or {}).items()]])
        client.update_run(parent_id, status="RUNNING")
        if view is not None:  # the runs table the sweep's links open (ledger.links)
            client.set_experiment_tag(experiment_id, links.VIEW_TAG_PREFIX + links.VIEW_KEY, json.dumps(view))
        sweeps.describe_sweep(tracker, parent_id, settings or {}, dataset)
        client.log_text(parent_id, sweep_text, SWEEP_FILE)
        client.log_text(parent_id, plan_text, PLAN_FILE)
        client.log_text(parent_id, sweep_text, f"submissions/{sub.id}/{SWEEP_FILE}")
        client.log_dict(parent_id, list(plan_rows), f"submissions/{sub.id}/plan.json")
        return sub

    # -- child runs ----------------------------------------------------------------------------

    def create_trial_run(self, trial, tags: Optional[dict] = None) -> str:
        """A SCHEDULED child run for ``trial``: this submission's claim of it (``tags``: more tags)."""
        return self.tracker.create_trial_run(self.experiment_id, self.parent_id, self.id, self.sweep_name, trial,
                                             self.dataset, tags)

    def discard(self, run_id: str) -> None:
        """Delete a child run whose trial never started (a claim lost, a run created ahead)."""
        self.tracker.discard(run_id)

    def terminate(self, run_id: str, status: str, reason: Optional[str] = None) -> bool:
        """End a run still RUNNING or SCHEDULED; False if it had ended already."""
        return self.tracker.terminate(run_id, status, reason)

    def status_of(self, run_id: str) -> str:
        return self.tracker.client.get_run(run_id).info.status

    def active_runs(self) -> list:
        """This submission's child runs still RUNNING or SCHEDULED."""
        runs = self.tracker.trials(self.experiment_id, extra=tag_filter(**{SUBMISSION: self.id}), params=False)
        return [r for r in runs if r.info.status in ACTIVE]

    # -- the submission itself -------------------------------------------------------------------

    def beat(self) -> None:
        """The driver's heartbeat: one try (a failed beat is repeated by the next)."""
        self.tracker.client.once.set_tag(self.parent_id, BEAT_PREFIX + self.id, str(now_ms()))

    def end(self, counts: dict, status: str, message: Optional[str] = None, exit_code: Optional[int] = None,
            best: str = "") -> None:
        """How the submission ended, on its record; the sweep's counts on the parent, and its
        description (unless a report wrote one); the parent's status, unless another submission
        is still live on it. ``best``: the best point so far, in words."""
        from mlflow.entities import Metric, RunTag

        self.record.update(ended=utc_now(), ended_ms=now_ms(), status=status, exit=exit_code, counts=counts,
                           **({"message": message[:500]} if message else {}))
        client = self.tracker.client
        self._settle()
        tags = [RunTag(SUB_PREFIX + self.id, json.dumps(self.record)[:MAX_TAG_VALUE])]
        if message:
            tags.append(RunTag(REASON, message[:MAX_TAG_VALUE]))
        now = now_ms()
        totals = sweep_counts(self.tracker, self.experiment_id)
        note = client.get_run(self.parent_id).data.tags.get(NOTE, "")
        if not note or note.startswith(NOTE_MARK):  # a report's leaderboard stays until the next report
            tags.append(RunTag(NOTE, self._note(totals, best)))
        metrics = [Metric(f"trials_{k}", float(v), now, 0) for k, v in {"planned": counts.get("planned", 0),
                                                                          **totals}.items()]
        client.log_batch(self.parent_id, metrics=metrics, tags=tags)
        if not self.others_live():
            client.set_terminated(self.parent_id, status)

    def _note(self, totals: dict, best: str) -> str:
        """The parent run's description: what the sweep holds, the best point, the link to its trials."""
        link = links.experiment_url("", self.experiment_id, shared_view=True).lstrip("/")
        states = ", ".join(f"{v} {k.lower()}" for k, v in sorted(totals.items()))
        lines = [f"{NOTE_MARK}{self.sweep_name}`**: {states or 'no trials yet'}.",
                 *([f"Best so far: {best}."] if best else []),
                 f"[The trials, one row per point]({link}); `sweeper report {self.sweep_name}` says which knobs matter."]
        return "\n\n".join(lines)

    def _settle(self) -> None:
        """Two submissions that started together may each have made a parent run (see
        :mod:`ledger.sweeps`): the later one moves its trials and its record under the earliest."""
        from mlflow.entities import RunTag

        first = sweeps.find_parent(self.tracker, self.experiment_id)
        if first is None or first.info.run_id == self.parent_id:
            return
        mine = self.tracker.trials(self.experiment_id, extra=tag_filter(**{SUBMISSION: self.id}), params=False)
        for run in mine:
            if run.data.tags.get(PARENT_RUN) == self.parent_id:
                self.tracker.client.log_batch(run.info.run_id, tags=[RunTag(PARENT_RUN, first.info.run_id)])
        old, self.parent_id = self.parent_id, first.info.run_id
        self.tracker.client.log_batch(self.parent_id, tags=[RunTag(BEAT_PREFIX + self.id, str(now_ms()))])
        sweeps.retire_parent(self.tracker, old, self.parent_id)

    def others_live(self, timeout: Optional[float] = None) -> bool:
        """Whether another submission on the parent still runs (its driver alive, not ended)."""
        from .liveness import owner_from_record, stale_after

        parent = self.tracker.client.get_run(self.parent_id)
        limit = stale_after(timeout)
        return any(not owner_from_record(sid, record, limit).lost
                   for sid, record in records(parent).items() if sid != self.id)

    def close_once(self, run_ids: list[str], reason: str, submission: bool = True) -> None:
        """The store may be gone: mark ``run_ids`` KILLED (and, with ``submission``, this submission
        ended FAILED), one try each; the first write that fails ends it (the next command repairs)."""
        from mlflow.entities import RunTag

        once = self.tracker.client.once
        reason = reason[:MAX_TAG_VALUE]
        try:
            for run_id in run_ids:
                once.set_tag(run_id, REASON, reason)
                once.set_terminated(run_id, "KILLED")
            if submission:
                self.record.update(ended=utc_now(), status="FAILED", message=reason[:500])
                once.log_batch(self.parent_id, tags=[RunTag(SUB_PREFIX + self.id, json.dumps(self.record))])
        except Exception:  # noqa: BLE001 -- the store failed again: the next command repairs
            pass


def sweep_counts(tracker: Tracker, experiment_id: str) -> dict[str, int]:
    """Trials of the whole sweep by the state their deciding (else latest) run shows: lower-cased statuses."""
    current = rules.current_runs(tracker.trials(experiment_id, params=False))
    out: dict[str, int] = {}
    for run in current.values():
        state = run.info.status.lower()
        out[state] = out.get(state, 0) + 1
    return out
