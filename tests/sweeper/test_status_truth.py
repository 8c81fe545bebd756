"""``sweeper status`` tells the truth about lost, stale and interrupted submissions: each one's state
from its record and its heartbeat, what it did from its runs, what it left, and what to run next."""
import json

from ledger.submission import Submission, records
from ledger.tracking import Tracker
from sweeper.app.status import status_text, sweep_status
from tests.ledger.test_liveness_claims import dead_pid, trial


def _rewrite(tracker, sub, **fields):
    record = records(tracker.client.get_run(sub.parent_id))[sub.id]
    record.pop("beat")
    record.update(fields)
    tracker.client.set_tag(sub.parent_id, f"sweep.sub.{sub.id}", json.dumps(record))


def test_lost_stale_and_interrupted_submissions(mlflow_uri):
    tracker = Tracker(mlflow_uri)
    name = "status-truth"
    exp = tracker.open_experiment(name, name)
    # 1. interrupted (Ctrl-C): one trial finished, one KILLED
    first = Submission.start(tracker, exp, name, trials=2)
    done = first.create_trial_run(trial("a"))
    tracker.client.set_terminated(done, "FINISHED")
    killed = first.create_trial_run(trial("b"))
    tracker.client.set_terminated(killed, "KILLED")
    first.end({}, "KILLED", "interrupted", 130)
    # 2. lost: its process is gone, its run left RUNNING; it died before its plan was recorded
    lost = Submission.start(tracker, exp, name, trials=0)
    running = lost.create_trial_run(trial("c"))
    tracker.client.update_run(running, status="RUNNING")
    _rewrite(tracker, lost, pid=dead_pid())
    # 3. stale: another host, no heartbeat for an hour, one run SCHEDULED
    stale = Submission.start(tracker, exp, name, trials=1)
    stale.create_trial_run(trial("d"))
    _rewrite(tracker, stale, host="elsewhere", pid=1)
    tracker.client.set_tag(stale.parent_id, f"sweep.beat.{stale.id}", "1")

    status = sweep_status(name, mlflow_uri, stale_seconds=120)
    by_id = {s["id"]: s for s in status.submissions}
    assert by_id[first.id]["state"] == "interrupted" and by_id[first.id]["runs"] == {"FINISHED": 1, "KILLED": 1}
    assert by_id[first.id]["left"] == 1
    assert by_id[lost.id]["state"] == "lost" and by_id[lost.id]["runs"] == {"STALE": 1}
    assert "process is gone" in by_id[lost.id]["why"]
    assert by_id[stale.id]["state"] == "stale" and by_id[stale.id]["runs"] == {"STALE": 1}
    assert "no heartbeat" in by_id[stale.id]["why"]
    assert status.states == {"FINISHED": 1, "KILLED": 1, "STALE": 2}
    assert status.next_step == f"`sweeper resume {name}` finishes the 3 trial(s) left by lost or interrupted " \
                               "submissions from their last checkpoints"
    text = status_text(status)
    assert "trials not recorded, lost: its process is gone [runs: STALE 1, 1 left unfinished]" in text
    assert "0 to train" not in text
    assert "interrupted, exit 130: interrupted [runs: FINISHED 1, KILLED 1, 1 left unfinished]" in text
