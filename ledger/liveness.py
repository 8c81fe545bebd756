"""Whose driver is alive: submissions' heartbeats on the sweep's parent run, and the runs a lost driver left.

A driver (the process running ``sweeper run`` or ``resume``) owns its submission and every child
run tagged with it (``sweep.submission``). While it runs, a thread refreshes the submission's
heartbeat (``sweep.beat.<id>`` on the parent run) every :data:`BEAT_SECONDS`. A driver is *lost* when

* its submission has ended (its record says so) while one of its child runs is still RUNNING
  or SCHEDULED (it died between marking the two), or
* it runs on this host and its pid is gone (``kill -9``: no need to wait), or
* its last heartbeat is older than the stale timeout (default :data:`STALE_AFTER` s,
  ``SWEEPER_STALE_AFTER`` or ``--stale-after``): another host, a frozen VM, a lost network.

A RUNNING or SCHEDULED child run of a lost driver is *stale*: ``status`` shows it so, and ``run``
or ``resume`` takes it over (:func:`take_over`): KILLED with the reason ``driver lost``, its
submission's record ended as ``lost``, and its trial continues from the run's last checkpoint as
the next attempt. A live driver's runs are never taken over: a heartbeat is at most
``BEAT_SECONDS`` old while its driver runs, and the timeout is many beats long.

Stores written before submissions were records (schema 2) had a parent run per submission, whose
run id was the submission's id: :meth:`Owners.of` reads those too.
"""
from __future__ import annotations

import json
import os
import socket
import threading
import time
from dataclasses import dataclass
from typing import Callable, Optional

from .retry import StoreUnavailable
from .schema import ACTIVE, DRIVER_HOST, DRIVER_PID, HEARTBEAT, KIND, MAX_TAG_VALUE, PARENT, PARENT_RUN, SUB_PREFIX, SUBMISSION
from .tracking import Tracker

BEAT_SECONDS = 5.0
STALE_AFTER = 120.0


def stale_after(value: Optional[float] = None) -> float:
    """The stale timeout in seconds: ``value``, else ``SWEEPER_STALE_AFTER``, else :data:`STALE_AFTER`."""
    if value is not None:
        return float(value)
    text = os.environ.get("SWEEPER_STALE_AFTER")
    try:
        return float(text) if text else STALE_AFTER
    except ValueError:
        return STALE_AFTER


@dataclass(frozen=True)
class Owner:
    """A submission's driver as the ledger sees it."""

    submission: str
    host: str
    pid: int
    last_beat_ms: int
    lost: bool
    why: str = ""

    def text(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.last_beat_ms / 1000))
        return f"driver lost at {when} ({self.host} pid {self.pid}, submission {self.submission}): {self.why}"


def _pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OSError):
        return False
    return False


def _judge(submission: str, host: str, pid: int, beat: int, ended: Optional[str], timeout: float,
           now_ms: Optional[int]) -> Owner:
    now = int(time.time() * 1000) if now_ms is None else now_ms
    if ended:
        return Owner(submission, host, pid, beat, True, f"its submission ended {ended}")
    if host and host == socket.gethostname() and pid and _pid_gone(pid):
        return Owner(submission, host, pid, beat, True, "its process is gone")
    if now - beat > timeout * 1000:
        return Owner(submission, host, pid, beat, True, f"no heartbeat for {(now - beat) / 1000:.0f} s")
    return Owner(submission, host, pid, beat, False)


def owner_from_record(submission: str, record: dict, timeout: float, now_ms: Optional[int] = None) -> Owner:
    """The state of the driver of a submission's record (``ledger.submission.records``)."""
    try:
        pid = int(record.get("pid") or 0)
    except (TypeError, ValueError):
        pid = 0
    ended = (record.get("status") or "ended") if record.get("ended") else None
    return _judge(submission, str(record.get("host", "")), pid, int(record.get("beat") or 0), ended, timeout, now_ms)


def owner_of(parent, timeout: float, now_ms: Optional[int] = None) -> Owner:
    """The state of the driver of a schema-2 parent run (one parent run per submission)."""
    tags = parent.data.tags
    try:
        pid = int(tags.get(DRIVER_PID, "0"))
    except ValueError:
        pid = 0
    try:
        beat = int(tags.get(HEARTBEAT) or parent.info.start_time or 0)
    except ValueError:
        beat = int(parent.info.start_time or 0)
    ended = parent.info.status if parent.info.status not in ACTIVE else None
    return _judge(parent.info.run_id, tags.get(DRIVER_HOST, ""), pid, beat, ended, timeout, now_ms)


class Owners:
    """Looks up the owners of child runs, each parent run read once per ``ttl`` seconds."""

    def __init__(self, tracker: Tracker, timeout: float, ttl: float = 2.0):
        self.tracker, self.timeout, self.ttl = tracker, timeout, ttl
        self._cache: dict[str, tuple[float, object]] = {}

    def _parent(self, run_id: str):
        hit = self._cache.get(run_id)
        if hit and time.monotonic() - hit[0] < self.ttl:
            return hit[1]
        try:
            run = self.tracker.client.get_run(run_id)
        except StoreUnavailable:  # no answer is not an answer: the caller stops
            raise
        except Exception:  # noqa: BLE001 -- the run was deleted: nobody owns its children
            run = None
        self._cache[run_id] = (time.monotonic(), run)
        return run

    def of(self, submission: str, parent_id: Optional[str]) -> Optional[Owner]:
        """The driver of ``submission`` (recorded on ``parent_id``), or None: nothing records it."""
        from .submission import records

        parent = self._parent(parent_id) if parent_id else None
        if parent is not None:
            found = records(parent).get(submission)
            if found is not None:
                return owner_from_record(submission, found, self.timeout)
        old = self._parent(submission)  # schema 2: the submission was a parent run of its own
        if old is not None and old.data.tags.get(KIND) == PARENT:
            return owner_of(old, self.timeout)
        return None

    def of_run(self, run) -> Optional[Owner]:
        submission = run.data.tags.get(SUBMISSION)
        return self.of(submission, run.data.tags.get(PARENT_RUN)) if submission else None

    def is_live(self, run) -> bool:
        """True for an active run whose driver is alive."""
        if run.info.status not in ACTIVE:
            return False
        owner = self.of_run(run)
        return owner is not None and not owner.lost


def stale_runs(tracker: Tracker, experiment_id: str, timeout: float) -> list[tuple[object, Owner]]:
    """Active child runs whose driver is lost, with that driver."""
    owners = Owners(tracker, timeout)
    found = []
    for run in tracker.active_trials(experiment_id):
        owner = owners.of_run(run)
        if owner is None:
            owner = Owner(run.data.tags.get(SUBMISSION, "?"), "", 0, int(run.info.start_time or 0), True,
                          "nothing records its submission")
        if owner.lost:
            found.append((run, owner))
    return found


def take_over(tracker: Tracker, experiment_id: str, timeout: float) -> list[tuple[object, Owner]]:
    """Mark every stale child run KILLED ("driver lost"), and end the records of lost submissions."""
    from mlflow.entities import RunTag

    from .submission import records, utc_now

    stale = stale_runs(tracker, experiment_id, timeout)
    for run, owner in stale:
        tracker.terminate(run.info.run_id, "KILLED", owner.text())
    for parent in tracker.parents(experiment_id):
        lost = []
        for sid, record in records(parent).items():
            owner = owner_from_record(sid, record, timeout)
            if not record.get("ended") and owner.lost:
                record = {k: v for k, v in record.items() if k != "beat"}
                record.update(ended=utc_now(), status="lost", message=owner.text())
                lost.append(RunTag(SUB_PREFIX + sid, json.dumps(record)[:MAX_TAG_VALUE]))
        if lost:
            tracker.client.log_batch(parent.info.run_id, tags=lost)
        if not any(k.startswith(SUB_PREFIX) for k in parent.data.tags) and parent.info.status in ACTIVE:  # schema 2
            owner = owner_of(parent, timeout)
            if owner.lost:
                tracker.terminate(parent.info.run_id, "KILLED", owner.text())
    return stale


class Heartbeat:
    """A daemon thread calling ``beat`` every ``every`` seconds until stopped (a submission's heartbeat).

    A failing write is retried at the next beat: a store down for a moment must not stop the sweep.
    """

    def __init__(self, beat: Callable[[], None], every: float = BEAT_SECONDS):
        self.beat, self.every = beat, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sweeper heartbeat", daemon=True)
        self.failures = 0

    def __enter__(self) -> "Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self.beat()
            except Exception:  # noqa: BLE001 -- retried at the next beat
                self.failures += 1

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.every + 30)
