"""The executor's scheduling decisions, fast: a real SQLite store, no Ray cluster.

The Ray calls of :class:`sweeper.trials.executor.Runner` are the submission of a task and the wait for
its records (:class:`sweeper.trials.inflight.Inflight`); here the submission is captured instead
(``FakeRemote``) and the loop's steps are called one by one: filling free slots, the run created
ahead, claims lost to another submission, waiting for it, and stopping after the same error.
"""
import pytest
import yaml

from ledger.submission import Submission
from ledger.tracking import Tracker
from sweeper.plan.points import make_plan
from sweeper.trials import ending
from sweeper.trials.executor import Runner
from sweeper.trials.inflight import Inflight
from sweeper.trials.trial import TrialOutcome
from sweeper.spec.config import load_sweep


class FakeRemote:
    """Stands in for ``ray.remote(stream_trial)``: records what would be submitted."""

    def __init__(self):
        self.submitted = []

    def options(self, **options):
        return self

    def remote(self, task, coordinator, data=None):
        self.submitted.append(task)
        return object()  # the generator handle the loop keys its streams by


def runner(tmp_path, uri, name, slots=2, stop_after=3, **extra):
    data = {"name": name, "seed": 0, "data": {"source": "bundled", "train_size": 300, "test_size": 100},
            "model": {"blocks": 1, "depth": 2, "dense": [8]}, "train": {"epochs": 2, "batch_size": 50},
            "grid": {"kernel_size": [3, 5], "pooling": ["max", "avg"]}, "mlflow": {"tracking_uri": uri},
            "failures": {"max_retries": 0, "stop_after_same_error": stop_after}, **extra}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    plan = make_plan(load_sweep(path), {})
    tracker = Tracker(uri)
    exp = tracker.open_experiment(name, name)
    r = Runner(plan, Submission.start(tracker, exp, name, sweep_text=path.read_text()), stale_seconds=60)
    r.inflight = Inflight({}, remote=FakeRemote())
    r.scheduler.slots = slots
    return r


def _status(r, run_id):
    return r.submission.tracker.client.get_run(run_id).info.status


def test_fill_starts_one_trial_per_free_slot_and_creates_one_run_ahead(tmp_path, mlflow_uri):
    r = runner(tmp_path, mlflow_uri, "exec-fill")
    assert r._fill(None) is None
    assert len(r.inflight.remote.submitted) == 2 and len(r.inflight) == 2
    assert len(r.scheduler.ready) == 1 and len(r.scheduler.queue) == 1  # 4 trials: 2 running, 1 created ahead, 1 queued
    assert r.counts.state["running"] == 2 and r.counts.state["queued"] == 2
    ahead = r.scheduler.ready[0][1]
    assert _status(r, ahead) == "SCHEDULED"
    r._fill(None)  # no free slot: nothing more submitted
    assert len(r.inflight.remote.submitted) == 2
    ending.withdraw_ready(r.scheduler, r.submission)  # the command ends: the run created ahead leaves no trace
    tracker = r.submission.tracker
    assert tracker.client.get_run(ahead).info.lifecycle_stage == "deleted" and len(r.scheduler.queue) == 2


def test_a_trial_claimed_by_a_live_submission_is_waited_for_then_counted_elsewhere(tmp_path, mlflow_uri):
    first = runner(tmp_path, mlflow_uri, "exec-claims")
    first._fill(None)
    second = runner(tmp_path, mlflow_uri, "exec-claims")
    second._fill(None)
    # Both trials the first driver runs, and the one it created ahead, are its claims.
    held = {s.trial.key for s in first.inflight.streams.values()} | {first.scheduler.ready[0][0].key}
    assert set(second.scheduler.waiting) <= held and len(second.scheduler.waiting) >= 2
    assert not {t.key for t in second.inflight.remote.submitted} & held
    key, (trial, holder) = next(iter(second.scheduler.waiting.items()))
    # The holder finishes: the waiting driver counts the trial as trained elsewhere.
    first.submission.tracker.client.set_terminated(holder, "FINISHED")
    second.scheduler.next_poll = 0
    second._poll_waiting()
    assert key not in second.scheduler.waiting and second.counts.state["elsewhere"] == 1
    # The first driver is lost (its submission ended): its other claims are claimed again.
    first.submission.end({}, "KILLED")
    second.claims.owners._cache.clear()  # owners are re-read every 2 s; the test does not wait for it
    second.scheduler.next_poll = 0
    waiting = len(second.scheduler.waiting)
    second._poll_waiting()
    assert not second.scheduler.waiting and len(second.scheduler.queue) >= waiting
    second.counts.check()


def test_the_same_error_on_enough_points_stops_the_sweep(tmp_path, mlflow_uri):
    r = runner(tmp_path, mlflow_uri, "exec-stop", stop_after=2)
    r._fill(None)
    streams = list(r.inflight.streams.values())
    reasons = []
    for stream in streams:
        outcome = TrialOutcome(stream.task.key, stream.run_id, "FAILED", "FloatingPointError: nan at step 3",
                               "FloatingPointError: nan at step #")
        reasons.append(r._account(stream, outcome))
    assert reasons[0] is None and reasons[1].startswith("the same error on 2 points")
    assert r.counts.state["failed"] == 2
