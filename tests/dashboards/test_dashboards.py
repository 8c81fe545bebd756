"""The dashboards' report: composed from a run frame made by hand, and built from a real MLflow store.

The store is made once for the module (a fresh SQLite schema costs ~20 s of migrations) and
filled the way :mod:`ledger.tracking` and :mod:`ledger.recorder` lay a sweep out: a parent
run, one child per (point, repeat) of the quickstart plan with two repeats, plus a failed trial,
a duplicate and a run interrupted then resumed from its checkpoint.
"""
from __future__ import annotations

import shutil
import subprocess
import time
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from dashboards import stats
from tests.dashboards.hand_made import hand_made_runs

REPO = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------------------------------------
# A run frame made by hand


@pytest.fixture
def runs() -> pd.DataFrame:
    return hand_made_runs()


def _facts(runs, tmp_path, history=None):
    from dashboards.sections import Facts
    from ledger import Selection

    history = history if history is not None else pd.DataFrame(columns=["run_id", "epoch", "metric", "value"])
    return Facts("hand", "sqlite:///x.db", runs, None, Selection(), history, tmp_path, True)


def test_compose_with_list_values_and_plots(runs, tmp_path):
    from dashboards import report
    from dashboards.sections import compose

    runs = runs.copy()
    runs["dense"] = [[64] if "max" in p else [128, 64] for p in runs["point"]]
    runs.attrs["swept"] = ["kernel_size", "pooling", "dense"]
    history = pd.DataFrame({"run_id": ["r00", "r00", "r02"], "epoch": [1, 2, 1], "metric": "val_accuracy",
                            "value": [0.5, 0.8, 0.6]})
    facts = _facts(runs, tmp_path, history)
    sections, points = compose(facts)
    titles = [s.title for s in sections]
    assert titles[:5] == ["Overview", "Chosen point", "Checks", "Which knobs matter", "Differences between values"]
    assert {p.name for p in tmp_path.glob("*.png")} == {"levels.png", "heatmaps.png", "cost.png",
                                                          "learning_curves.png", "parallel.png"}
    md = report.to_markdown(sections, "hand")
    # chosen on validation: k5 max (0.94 on its one finished repeat) over k3 max (0.90 mean)
    assert "k5 max: the best mean val_accuracy over 1 repeat(s)" in md
    assert md.count("test_accuracy") == 2 and "| test_accuracy | 0.9500 |" in md  # the chosen point only
    assert "| dense | [64] |" in md and "**k5 max**" in facts.note


def test_compose_of_a_sweep_with_nothing_finished(tmp_path):
    from dashboards import report
    from dashboards.sections import compose
    from ledger.frame import runs_frame

    empty = runs_frame([])
    assert {"run_id", "kernel_size"} - set(empty.columns) == {"kernel_size"} and "test_accuracy" in empty.columns
    sections, points = compose(_facts(empty, tmp_path))
    assert [s.title for s in sections] == ["Overview", "Trial states"] and points.empty
    assert "nothing can be chosen" in report.to_html(sections, "empty", {})


# ---------------------------------------------------------------------------------------------
# A real store


def accuracy(kernel: int, pooling: str, repeat: int) -> float:
    return 0.90 + {3: 0.0, 5: 0.02}[kernel] + {"max": 0.03, "avg": 0.0, "l2": 0.01}[pooling] + 0.004 * repeat


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    from mlflow.entities import Metric, Param

    from sweeper.spec.config import load_sweep
    from sweeper.plan.points import make_plan
    from ledger.submission import Submission
    from ledger.tracking import Tracker

    tmp = tmp_path_factory.mktemp("dashboards")
    uri = f"sqlite:///{tmp}/mlflow.db"
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp)  # the store's default artifact root, ./mlruns, is resolved when it opens
        tracker = Tracker(uri)
        client = tracker.client
        client.search_experiments()
    config = load_sweep(REPO / "sweeps" / "quickstart.yaml").model_copy(update={"repeats": 2})
    plan = make_plan(config, flops_per_cpu=1e9)
    exp = tracker.open_experiment("quickstart", "quickstart")
    submission = Submission.start(tracker, exp, "quickstart", sweep_text=(REPO / "sweeps" / "quickstart.yaml").read_text(),
                                  plan_text=plan.summary())
    parent = submission.parent_id

    def trial_run(trial, acc, status="FINISHED", epochs=(1, 2), reason=None, tags=None):
        run_id = submission.create_trial_run(trial, tags)
        point = trial.point
        client.log_batch(run_id, params=[Param("n_params", str(point.params)),
                                         Param("forward_flops", str(point.flops))])
        client.update_run(run_id, status="RUNNING")
        now = int(time.time() * 1000)
        client.log_batch(run_id, metrics=[Metric(name, value - 0.05 * (2 - e), now, e) for e in epochs
                                          for name, value in (("val_accuracy", acc - 0.01), ("train_loss", 1 - acc))])
        if status == "FINISHED":
            final = {"test_accuracy": acc, "test_loss": 1 - acc, "val_accuracy": acc - 0.01,
                     "train_seconds": 2.0 * point.values["kernel_size"], "epochs_run": 2}
            client.log_batch(run_id, metrics=[Metric(k, v, now, 0) for k, v in final.items()])
        tracker.terminate(run_id, status, reason)
        return run_id

    kept, names = {}, {}
    for trial in plan.trials:
        k, pooling = trial.point.values["kernel_size"], trial.point.values["pooling"]
        names[trial.key] = trial.point.name
        if (k, pooling, trial.repeat) == (5, "l2", 1):
            trial_run(trial, 0.0, "FAILED", epochs=(1,), reason="FloatingPointError: loss is nan at epoch 1")
        elif (k, pooling, trial.repeat) == (5, "max", 0):  # interrupted after epoch 1, resumed
            first = trial_run(trial, accuracy(k, pooling, 0), "KILLED", epochs=(1,), reason="interrupted",
                              tags={"sweep.checkpoint_epoch": "1"})
            kept[trial.key] = resumed = trial_run(trial, accuracy(k, pooling, 0), epochs=(2,),
                                                  tags={"sweep.resumed_from": first, "sweep.resumed_at_epoch": "1"})
        else:
            kept[trial.key] = trial_run(trial, accuracy(k, pooling, trial.repeat))
    first_trial = plan.trials[0]
    duplicate = trial_run(first_trial, 0.11)
    tracker.terminate(duplicate, "KILLED", f"duplicate of run {kept[first_trial.key]}", only_if_active=False)
    submission.end({"planned": 12, "finished": 11, "failed": 1}, "FINISHED")
    return SimpleNamespace(uri=uri, tmp=tmp, parent=parent, plan=plan, kept=kept, duplicate=duplicate,
                           resumed=resumed, client=client)


def expected_points() -> dict[tuple[int, str], float]:
    """Mean test accuracy per (kernel, pooling) over the finished repeats."""
    return {(k, p): (accuracy(k, p, 0) if (k, p) == (5, "l2") else (accuracy(k, p, 0) + accuracy(k, p, 1)) / 2)
            for k in (3, 5) for p in ("max", "avg", "l2")}


def test_load_runs_types_and_states(store):
    from dashboards import load_runs

    runs = load_runs(store.uri, "quickstart")
    assert len(runs) == 12 + 2  # a duplicate and an interrupted run besides the 12 trials
    assert runs.attrs["swept"] == ["kernel_size", "pooling"]
    assert str(runs["kernel_size"].dtype) == "Int64" and str(runs["n_params"].dtype) == "Int64"
    assert runs["learning_rate"].dtype == "float64" and runs["dense"].iloc[0] == [64]
    assert runs["padding"].iloc[0] == "same" and runs["trial_seed"].notna().all()
    assert runs["duplicate"].sum() == 1 and runs.loc[runs["duplicate"], "run_id"].item() == store.duplicate
    assert set(runs["parent_run_id"]) == {store.parent}
    assert (runs["duration_s"] >= 0).all() and runs["start_time"].dt.tz is not None
    counts = stats.state_counts(runs).set_index("state")
    assert counts["runs"].to_dict() == {"FINISHED": 11, "FAILED": 1, "KILLED": 1, "DUPLICATE": 1, "total": 14}
    assert counts["trials"].to_dict() == {"FINISHED": 11, "FAILED": 1, "KILLED": 0, "DUPLICATE": 0, "total": 12}


def test_history_is_per_epoch_and_stitches_resumed_runs(store):
    from dashboards import load_history

    history = load_history(store.uri, "quickstart", [store.resumed])
    curve = history[history["metric"] == "val_accuracy"].sort_values("epoch")
    assert list(curve["epoch"]) == [1, 2]  # epoch 1 from the interrupted run; step 0 is not an epoch
    assert curve["value"].tolist() == pytest.approx([accuracy(5, "max", 0) - 0.06, accuracy(5, "max", 0) - 0.01])
    assert set(history.columns) == {"run_id", "epoch", "metric", "value"}


def test_report_tables_match_the_runs(store, tmp_path):
    from dashboards import build_report

    html_path = build_report(store.uri, "quickstart", tmp_path / "out")
    out = html_path.parent
    for name in ("report.md", "report.html", "runs.csv", "points.csv", "note.md", "learning_curves.png",
                 "levels.png", "heatmaps.png", "cost.png", "parallel.png"):
        assert (out / name).stat().st_size > 0, name
    points = pd.read_csv(out / "points.csv")
    got = {(k, p): a for k, p, a in zip(points["kernel_size"], points["pooling"], points["test_accuracy"])}
    assert got == pytest.approx(expected_points())
    expected = {key: value - 0.01 for key, value in expected_points().items()}  # val = test - 0.01 here
    md = (out / "report.md").read_text()
    best = max(expected, key=expected.get)
    first_row = md.split("## Leaderboard")[1].split("\n")[4]
    assert first_row.startswith(f"| 1 | k{best[0]} {best[1]} | 2 | {expected[best]:.4f} |"), first_row
    tables = HtmlTables.of(html_path.read_text())
    anova = next(t for t in tables if t[0][:2] == ["term", "df"])
    assert [r[0] for r in anova if r[0] in ("kernel_size", "pooling")] and anova[-1][0] == "residual"
    text = html_path.read_text()
    assert text.count('src="data:image/png;base64,') == 5  # no kernels.png in this hand-written store
    assert "<script" not in text and 'src="http' not in text and "href=\"http" not in text


def test_report_without_matplotlib_is_tables_only(store, tmp_path, monkeypatch):
    from dashboards import plots
    from dashboards.report import build_report

    monkeypatch.setattr(plots, "available", lambda: False)
    html_path = build_report(store.uri, "quickstart", tmp_path)
    assert "tables only" in html_path.read_text() and not list(tmp_path.glob("*.png"))


def test_report_command_attaches_to_the_sweeps_parent(store, tmp_path, capsys):
    from sweeper.app.report import report_command

    assert report_command("quickstart", store.uri, str(tmp_path / "r"), attach=True) == 0
    names = {Path(f.path).name for f in store.client.list_artifacts(store.parent, "report")}
    assert {"report.html", "report.md", "cost.png", "note.md"} <= names
    assert store.parent in capsys.readouterr().out
    tags = store.client.get_run(store.parent).data.tags
    assert tags["mlflow.note.content"].startswith("**Sweep report** (chosen by mean val_accuracy")
    assert tags["sweep.selection.metric"] == "val_accuracy"


def test_report_command_unknown_sweep_or_store(store, tmp_path, capsys):
    from sweeper.app.cli import main

    assert main(["report", "nope", "--tracking-uri", store.uri, "--out", str(tmp_path / "a"), "--no-attach"]) == 2
    missing = tmp_path / "missing.db"
    assert main(["report", "quickstart", "--tracking-uri", f"sqlite:///{missing}", "--out", str(tmp_path / "b"),
                 "--no-attach"]) == 2
    assert not missing.exists()  # no empty store left behind
    assert "no sweep named 'nope'" in capsys.readouterr().err


def test_report_through_sweeper_cli(store, tmp_path):
    from sweeper.app import cli

    assert cli.main(["report", "quickstart", "--tracking-uri", store.uri, "--out", str(tmp_path), "--no-attach"]) == 0
    assert (tmp_path / "report.html").exists()
    assert cli.main(["report", "nope", "--tracking-uri", store.uri]) == 2


CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
def test_report_renders_in_a_headless_browser(store, tmp_path):
    from dashboards import build_report

    html_path = build_report(store.uri, "quickstart", tmp_path / "out")
    shot = tmp_path / "report.png"
    subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--no-first-run",
                    f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1200,1600",
                    html_path.resolve().as_uri()], check=True, capture_output=True, timeout=120)
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 50_000  # a blank page is a few kB
    keep = REPO / ".pytest_cache" / "dashboards-report.png"  # for a look by eye after the run
    keep.parent.mkdir(exist_ok=True)
    keep.write_bytes(data)


class HtmlTables(HTMLParser):
    """Every <table> of a page as rows of cell texts (the stdlib has no read_html backend)."""

    def __init__(self):
        super().__init__()
        self.tables, self.row, self.cell = [], None, None

    @classmethod
    def of(cls, text: str) -> list[list[list[str]]]:
        parser = cls()
        parser.feed(text)
        return parser.tables

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.row = []
        elif tag in ("td", "th"):
            self.cell = ""

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self.row is not None:
            self.row.append(self.cell.strip())
            self.cell = None
        elif tag == "tr":
            self.tables[-1].append(self.row)
            self.row = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell += data
