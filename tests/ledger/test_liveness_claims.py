"""ledger/liveness.py, ledger/claims.py and ledger/submission.py, each state transition on a real store.

Liveness: a submission's driver is live, or lost because its record ended while its runs are
active, its pid is gone on this host, or its heartbeat is stale. Claims: the earliest live claim
wins; a FINISHED run settles the trial; a lost driver's claim does not count; a submission's own
second run is no rival. Submissions: one parent per sweep, made once, shared, settled.
"""
import json
import os
import socket
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest

from ledger.claims import Claims
from ledger.liveness import Heartbeat, Owners, owner_from_record, owner_of, take_over
from ledger.schema import ACTIVE, PARENT_RUN, REASON, SUBMISSION
from ledger.submission import Submission, records
from ledger.sweeps import find_parent
from ledger.tracking import Tracker


def trial(point="h1", repeat=0):
    point = SimpleNamespace(hash=point, name=f"p{point}", values={"kernel_size": 3},
                            config={"seed": 0, "model": {"kernel_size": 3}, "train": {"epochs": 1}, "data": {}})
    return SimpleNamespace(point=point, repeat=repeat, seed=1, run_name=f"p{point.hash} #{repeat + 1}",
                           key=(point.hash, repeat))


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.fixture
def sweep(mlflow_uri, request):
    tracker = Tracker(mlflow_uri)
    name = f"live-{request.node.name[:40]}"
    return tracker, tracker.open_experiment(name, name), name


NOW = int(time.time() * 1000)
HERE = socket.gethostname()


@pytest.mark.parametrize("record, lost, why", [
    ({"host": HERE, "pid": os.getpid(), "beat": NOW}, False, ""),
    ({"host": HERE, "pid": os.getpid(), "beat": NOW, "ended": "x", "status": "FINISHED"}, True, "ended FINISHED"),
    ({"host": HERE, "pid": "DEAD", "beat": NOW}, True, "process is gone"),
    ({"host": "elsewhere", "pid": 1, "beat": NOW - 600_000}, True, "no heartbeat for 600 s"),
    ({"host": "elsewhere", "pid": 1, "beat": NOW - 10_000}, False, ""),
])
def test_a_submissions_driver_is_live_or_lost_for_one_stated_reason(record, lost, why):
    record = {**record, "pid": dead_pid() if record["pid"] == "DEAD" else record["pid"]}
    owner = owner_from_record("s1", record, timeout=120, now_ms=NOW)
    assert owner.lost is lost and why in owner.why
    if lost:
        assert "driver lost" in owner.text() and "submission s1" in owner.text()


def test_a_schema_2_parent_run_is_judged_the_same_way():
    parent = SimpleNamespace(info=SimpleNamespace(run_id="old", status="RUNNING", start_time=NOW),
                             data=SimpleNamespace(tags={"sweep.driver.host": HERE, "sweep.driver.pid": str(dead_pid()),
                                                        "sweep.driver.heartbeat": str(NOW)}))
    assert owner_of(parent, 120, NOW).lost
    parent.data.tags["sweep.driver.pid"] = str(os.getpid())
    assert not owner_of(parent, 120, NOW).lost
    parent.info.status = "KILLED"
    assert "ended KILLED" in owner_of(parent, 120, NOW).why


def test_two_submissions_share_one_parent_and_each_is_recorded(sweep):
    tracker, exp, name = sweep
    first = Submission.start(tracker, exp, name, trials=2, sweep_text="a: 1", settings={"epochs": 2})
    second = Submission.start(tracker, exp, name, "resume", trials=1, settings={"epochs": 3})
    assert first.parent_id == second.parent_id == find_parent(tracker, exp).info.run_id
    parent = tracker.client.get_run(first.parent_id)
    assert parent.info.run_name == name and parent.info.status == "RUNNING"
    assert set(records(parent)) == {first.id, second.id}
    assert parent.data.params["epochs"] == "2" and json.loads(parent.data.tags["sweep.changed"]) == {"epochs": "3"}
    # the first ends while the second is live: the parent stays RUNNING; the second ends it
    first.end({"planned": 2, "finished": 2}, "FINISHED", exit_code=0)
    assert tracker.client.get_run(first.parent_id).info.status == "RUNNING"
    second.end({"planned": 1, "finished": 1}, "FINISHED", exit_code=0)
    parent = tracker.client.get_run(first.parent_id)
    assert parent.info.status == "FINISHED"
    ended = records(parent)
    assert ended[first.id]["exit"] == 0 and ended[second.id]["command"] == "resume"
    assert parent.data.tags["mlflow.note.content"].startswith(f"**Sweep `{name}`**")


def test_a_second_parent_made_in_a_race_is_settled_into_the_first(sweep):
    tracker, exp, name = sweep
    first = Submission.start(tracker, exp, name)
    # a race lost in the other order: a later parent made and used before the first was seen
    later = tracker.client.create_run(exp, run_name=name, tags={"sweep.kind": "parent"}).info.run_id
    racer = Submission(tracker, exp, later, name)
    run_id = racer.create_trial_run(trial())
    racer.end({}, "FINISHED")
    assert racer.parent_id == first.parent_id
    assert tracker.client.get_run(run_id).data.tags[PARENT_RUN] == first.parent_id
    retired = tracker.client.get_run(later)  # set aside, never deleted: another racer may still write to it
    assert retired.info.status == "KILLED" and retired.data.tags["sweep.kind"] == "retired-parent"
    assert retired.data.tags[PARENT_RUN] == first.parent_id and find_parent(tracker, exp).info.run_id == first.parent_id


def test_claims_earliest_live_wins_finished_settles_and_a_lost_driver_does_not_count(sweep):
    tracker, exp, name = sweep
    a, b = Submission.start(tracker, exp, name), Submission.start(tracker, exp, name)
    t = trial()
    first, second = a.create_trial_run(t), b.create_trial_run(t)
    claims = Claims(tracker, exp, 120)
    assert claims.contest(t.key, first).won
    verdict = claims.contest(t.key, second)
    assert not verdict.won and verdict.held_by == first
    # a submission's own second run of a trial (a create_run retried) is no rival to its first
    again = a.create_trial_run(t)
    assert Claims(tracker, exp, 120).contest(t.key, first).won
    a.discard(again)
    # the holder's driver is lost (its submission ended while its claim is active): the waiter wins
    a.end({}, "KILLED")
    assert Claims(tracker, exp, 120).contest(t.key, second).won
    status, live = Claims(tracker, exp, 120).state_of(first)
    assert status in ACTIVE and not live
    # a FINISHED run settles the trial for every later claim
    tracker.client.set_terminated(second, "FINISHED")
    third = Submission.start(tracker, exp, name).create_trial_run(t)
    verdict = Claims(tracker, exp, 120).contest(t.key, third)
    assert not verdict.won and verdict.done_in == second


def test_take_over_kills_a_lost_submissions_runs_and_ends_its_record(sweep):
    tracker, exp, name = sweep
    lost = Submission.start(tracker, exp, name)
    run_id = lost.create_trial_run(trial())
    tracker.client.update_run(run_id, status="RUNNING")
    # its driver dies: a pid that is gone, on this host
    record = records(tracker.client.get_run(lost.parent_id))[lost.id]
    record.update(pid=dead_pid())
    record.pop("beat")
    tracker.client.set_tag(lost.parent_id, f"sweep.sub.{lost.id}", json.dumps(record))
    live = Submission.start(tracker, exp, name)
    live_run = live.create_trial_run(trial("h2"))
    assert Owners(tracker, 120).of_run(tracker.client.get_run(run_id)).lost
    stale = take_over(tracker, exp, 120)
    assert [r.info.run_id for r, _ in stale] == [run_id]
    killed = tracker.client.get_run(run_id)
    assert killed.info.status == "KILLED" and "driver lost" in killed.data.tags[REASON]
    ended = records(tracker.client.get_run(lost.parent_id))[lost.id]
    assert ended["status"] == "lost" and "process is gone" in ended["message"]
    assert tracker.client.get_run(live_run).info.status == "SCHEDULED"  # a live driver's run is never taken


def test_the_heartbeat_beats_until_stopped():
    beats = []
    with Heartbeat(lambda: beats.append(time.monotonic()), every=0.05):
        deadline = time.monotonic() + 5
        while len(beats) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
    count = len(beats)
    time.sleep(0.2)
    assert count >= 3 and len(beats) == count


def test_active_runs_are_those_of_this_submission(sweep):
    tracker, exp, name = sweep
    mine, other = Submission.start(tracker, exp, name), Submission.start(tracker, exp, name)
    run_id = mine.create_trial_run(trial())
    other.create_trial_run(trial("h9"))
    assert [r.info.run_id for r in mine.active_runs()] == [run_id]
    assert tracker.client.get_run(run_id).data.tags[SUBMISSION] == mine.id
