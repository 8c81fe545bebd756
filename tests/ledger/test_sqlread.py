"""The direct database reads (ledger.sqlread) return what MLflow's own search returns, for every
filter the ledger writes, on a store written by the driver's writer: SQLite, and PostgreSQL when
``SWEEPER_TEST_POSTGRES_URI`` names a database (e.g. ``postgresql+psycopg2://postgres@127.0.0.1:5432/mlflow``)."""
import math
import os

import pytest

from ledger import RunRecorder, Tracker, sqlread
from ledger.submission import Submission
from ledger.tracking import ERROR_KIND, KIND, POINT, REPEAT, SUBMISSION

pytest.importorskip("sqlalchemy")


class _Point:
    def __init__(self, h):
        self.hash, self.config = h, {"model": {"kernel_size": 3, "dense": [8]}, "train": {"epochs": 2}}
        self.name, self.values = f"p{h}", {"kernel_size": 3}


class _Trial:
    def __init__(self, h, repeat):
        self.point, self.repeat, self.seed, self.run_name = _Point(h), repeat, 7, f"p{h} #{repeat + 1}"
        self.key = (h, repeat)


STORES = ["sqlite"] + (["postgresql"] if os.environ.get("SWEEPER_TEST_POSTGRES_URI") else [])


@pytest.fixture(scope="module", params=STORES)
def store(request, mlflow_uri):
    uri = mlflow_uri if request.param == "sqlite" else os.environ["SWEEPER_TEST_POSTGRES_URI"]
    tracker = Tracker(uri)
    exp = tracker.open_experiment("sqlread-test", "sqlread-test")
    submission = Submission.start(tracker, exp, "sqlread-test", sweep_text="name: x", plan_text="plan")
    for i, status in enumerate(["FINISHED", "FINISHED", "FAILED", "KILLED", "RUNNING", "discard", "FINISHED"]):
        trial = _Trial(f"h{i % 3}", i // 3)
        run_id = submission.create_trial_run(trial)
        if status == "discard":
            tracker.discard(run_id)
            continue
        rec = RunRecorder(tracker, run_id, trial.key, exp, {"sweep.attempt": "0"})
        rec.start({"threads": 1})
        rec.log_epoch(1, {"train_loss": 1.0, "val_accuracy": 0.5 + i / 100, "seconds": 0.1})
        rec.log_epoch(2, {"train_loss": 0.5, "val_accuracy": float("nan") if i == 1 else 0.6, "seconds": 0.1})
        if status == "FINISHED":
            rec.finish_with({}, {"test_accuracy": 0.9 - i / 100, "epochs_run": 2}, False)
        elif status == "FAILED":
            rec.fail("FAILED", "NaN loss")
        elif status == "KILLED":
            tracker.client.set_tag(run_id, "sweep.checkpoint_epoch", "1")
            rec.fail("KILLED", "interrupted")
    return tracker, exp, submission


def _mlflow_search(tracker, exp, filter_string, order_by):
    return tracker.client.search_runs([exp], filter_string, max_results=1000, order_by=order_by)


FILTERS = [
    (f"tags.`{KIND}` = 'trial'", ["attributes.start_time ASC"]),
    (f"tags.`{KIND}` = 'trial' and attributes.status = 'FINISHED'", ["attributes.start_time ASC"]),
    (f"tags.`{KIND}` = 'trial' and attributes.status = 'FINISHED' and tags.`{POINT}` = 'h0' and tags.`{REPEAT}` = '0'",
     ["attributes.start_time ASC"]),
    (f"tags.`{KIND}` = 'trial' and attributes.status = 'FAILED' and tags.`{ERROR_KIND}` = 'trial'", None),
    (f"tags.`{KIND}` = 'trial' and attributes.status = 'KILLED' and tags.`sweep.checkpoint_epoch` != ''", None),
    (f"tags.`{KIND}` = 'parent'", ["attributes.start_time DESC"]),
]


@pytest.mark.parametrize("filter_string,order_by", FILTERS)
def test_search_matches_mlflow(store, filter_string, order_by):
    tracker, exp, _ = store
    fast = sqlread.search(tracker.uri, exp, filter_string, order_by)
    slow = _mlflow_search(tracker, exp, filter_string, order_by)
    assert fast is not None
    assert [r.info.run_id for r in fast] == [r.info.run_id for r in slow]
    for a, b in zip(fast, slow):
        assert (a.info.run_name, a.info.status, a.info.start_time, a.info.end_time) == \
               (b.info.run_name, b.info.status, b.info.start_time, b.info.end_time)
        assert a.data.tags == b.data.tags and a.data.params == b.data.params
        assert a.data.metrics.keys() == b.data.metrics.keys()
        for k, v in b.data.metrics.items():
            assert a.data.metrics[k] == v or (math.isnan(v) and math.isnan(a.data.metrics[k]))


def test_tracker_reads_agree_with_and_without_the_fast_path(store, monkeypatch):
    tracker, exp, submission = store
    fast = (tracker.finished(exp), tracker.failed(exp), tracker.checkpoints(exp),
            [r.info.run_id for r in submission.active_runs()])
    assert fast[0] and fast[1] and fast[2] and fast[3]
    monkeypatch.setattr(sqlread, "search", lambda *a, **k: None)
    assert fast == (tracker.finished(exp), tracker.failed(exp), tracker.checkpoints(exp),
                    [r.info.run_id for r in submission.active_runs()])


def test_metric_histories_match_get_metric_history(store):
    tracker, exp, _ = store
    ids = [r.info.run_id for r in tracker.trials(exp)]
    got = sqlread.metric_histories(tracker.uri, ids, ["val_accuracy", "train_loss", "missing"])
    for run_id in ids:
        for key in ("val_accuracy", "train_loss", "missing"):
            want = sorted((m.step, m.timestamp, m.value) for m in tracker.client.get_metric_history(run_id, key))
            assert len(got[run_id, key]) == len(want)
            for a, b in zip(got[run_id, key], want):
                assert a[:2] == b[:2] and (a[2] == b[2] or (math.isnan(a[2]) and math.isnan(b[2])))


def test_other_filters_and_stores_fall_back():
    assert sqlread.parse_filter("metrics.test_accuracy > 0.5") is None
    assert sqlread.parse_filter("tags.`a` = 'b' or tags.`c` = 'd'") is None
    assert sqlread.parse_filter("") == []
    assert sqlread.search("http://localhost:5000", "1", "") is None
    assert sqlread.search("sqlite:////nonexistent/x.db", "1", "", ["metrics.x DESC"]) is None
    assert sqlread.metric_histories("file:///tmp/mlruns", ["a"], ["b"]) is None
