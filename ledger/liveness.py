"""Whose driver is alive: heartbeats on parent runs, and the runs a lost driver left behind.

A driver (the process running ``sweeper run`` or ``resume``) owns its parent run and every child
run tagged with it (``sweep.submission``). While it runs, a thread refreshes the parent's
``sweep.driver.heartbeat`` tag every :data:`BEAT_SECONDS`. A driver is *lost* when

* its parent run has ended (FINISHED, FAILED, KILLED) while a child is still RUNNING or
  SCHEDULED (it died between marking the two), or
* it runs on this host and its pid is gone (``kill -9``: no need to wait), or
* its last heartbeat is older than the stale timeout (default :data:`STALE_AFTER` s,
  ``SWEEPER_STALE_AFTER`` or ``--stale-after``): another host, a frozen VM, a lost network.

A RUNNING or SCHEDULED child run of a lost driver is *stale*: ``status`` shows it so, and ``run``
or ``resume`` takes it over (:func:`take_over`): KILLED with the reason ``driver lost``, and its
trial continues from the run's last checkpoint as the next attempt. A live driver's runs are
never taken over: a heartbeat is at most ``BEAT_SECONDS`` old while its driver runs, and the
timeout is many beats long.
"""
from __future__ import annotations

import os
import socket
import threading
import time
from dataclasses import dataclass
from typing import Optional

from .retry import StoreUnavailable
from .schema import ACTIVE, DRIVER_HOST, DRIVER_PID, HEARTBEAT, SUBMISSION
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
    """A parent run's driver as the ledger sees it."""

    parent_id: str
    host: str
    pid: int
    last_beat_ms: int
    lost: bool
    why: str = ""

    def text(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.last_beat_ms / 1000))
        return f"driver lost at {when} ({self.host} pid {self.pid}, parent run {self.parent_id}): {self.why}"


def _pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OSError):
        return False
    return False


def owner_of(parent, timeout: float, now_ms: Optional[int] = None) -> Owner:
    """The state of the driver of ``parent`` (an MLflow parent ``Run``)."""
    tags = parent.data.tags
    host = tags.get(DRIVER_HOST, "")
    try:
        pid = int(tags.get(DRIVER_PID, "0"))
    except ValueError:
        pid = 0
    try:
        beat = int(tags.get(HEARTBEAT) or parent.info.start_time or 0)
    except ValueError:
        beat = int(parent.info.start_time or 0)
    now = int(time.time() * 1000) if now_ms is None else now_ms
    if parent.info.status not in ACTIVE:
        return Owner(parent.info.run_id, host, pid, beat, True, f"its submission ended {parent.info.status}")
    if host and host == socket.gethostname() and pid and _pid_gone(pid):
        return Owner(parent.info.run_id, host, pid, beat, True, "its process is gone")
    if now - beat > timeout * 1000:
        return Owner(parent.info.run_id, host, pid, beat, True, f"no heartbeat for {(now - beat) / 1000:.0f} s")
    return Owner(parent.info.run_id, host, pid, beat, False)


class Owners:
    """Looks up the owners of child runs, each parent read once per ``ttl`` seconds."""

    def __init__(self, tracker: Tracker, timeout: float, ttl: float = 2.0):
        self.tracker, self.timeout, self.ttl = tracker, timeout, ttl
        self._cache: dict[str, tuple[float, Owner]] = {}

    def of_parent(self, parent_id: str) -> Optional[Owner]:
        hit = self._cache.get(parent_id)
        if hit and time.monotonic() - hit[0] < self.ttl:
            return hit[1]
        try:
            parent = self.tracker.client.get_run(parent_id)
        except StoreUnavailable:  # no answer is not an answer: the caller stops
            raise
        except Exception:  # the parent run was deleted: nobody owns its children
            return None
        owner = owner_of(parent, self.timeout)
        self._cache[parent_id] = (time.monotonic(), owner)
        return owner

    def of_run(self, run) -> Optional[Owner]:
        parent_id = run.data.tags.get(SUBMISSION)
        return self.of_parent(parent_id) if parent_id else None

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
                          "its parent run is gone")
        if owner.lost:
            found.append((run, owner))
    return found


def take_over(tracker: Tracker, experiment_id: str, timeout: float) -> list[tuple[object, Owner]]:
    """Mark every stale child run, and the parent runs of lost drivers, KILLED ("driver lost")."""
    stale = stale_runs(tracker, experiment_id, timeout)
    for run, owner in stale:
        tracker.terminate(run.info.run_id, "KILLED", owner.text())
    for parent in tracker.parents(experiment_id, active_only=True):
        owner = owner_of(parent, timeout)
        if owner.lost:
            tracker.terminate(parent.info.run_id, "KILLED", owner.text())
    return stale


class Heartbeat:
    """A daemon thread refreshing a parent run's heartbeat every ``every`` seconds until stopped.

    A failing write is retried at the next beat: a store down for a moment must not stop the sweep.
    """

    def __init__(self, tracker: Tracker, parent_id: str, every: float = BEAT_SECONDS):
        self.tracker, self.parent_id, self.every = tracker, parent_id, every
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
                self.tracker.beat(self.parent_id)
            except Exception:
                self.failures += 1

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.every + 30)
