"""The Python API (sweeper/api.py): what the CLI does, as data; errors carry the CLI's messages."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

import sweeper
from cnn.dataset import DataError
from ledger.tracking import SweepNotFound
from sweeper.spec.yamlsource import SweepFileError
from tests.sweeper.test_sweep_e2e import sweep_file

REPO = Path(__file__).resolve().parents[2]


def test_load_config_validates_and_applies_overrides(tmp_path):
    config = sweeper.load_config(REPO / "sweeps" / "quickstart.yaml", ["train.epochs=1", "grid.kernel_size=[3]"])
    assert config.train.epochs == 1 and dict(config.grid.axes())["kernel_size"] == [3]


def test_errors_are_exceptions_with_the_messages_the_cli_prints(tmp_path, mlflow_uri, capsys):
    from sweeper.app.cli import main

    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ngrid: {stride: [1, 0]}\n")
    with pytest.raises(SweepFileError) as raised:
        sweeper.load_config(bad)
    assert main(["validate", str(bad)]) == 2
    assert str(raised.value).strip() in capsys.readouterr().err
    with pytest.raises(SweepNotFound, match="no sweep named 'nowhere'"):
        sweeper.status("nowhere", tracking_uri=mlflow_uri)
    missing = sweep_file(tmp_path, "api-missing", mlflow_uri, data={"source": "npz", "path": str(tmp_path / "x.npz")})
    with pytest.raises(DataError, match="x.npz"):
        sweeper.run(missing)


def test_run_returns_trials_chosen_and_status_as_data(tmp_path, ray_local, mlflow_uri):
    path = sweep_file(tmp_path, "api-run", mlflow_uri, grid={"kernel_size": [3, 5]}, repeats=2)
    result = sweeper.run(path)
    assert result.exit_code == 0 and result.counts["finished"] == 4
    trials = result.trials
    assert len(trials) == 4 and set(trials["status"]) == {"FINISHED"}
    assert {"kernel_size", "val_accuracy", "test_accuracy", "run_id", "point_name"} <= set(trials.columns)
    chosen = result.chosen
    means = trials.groupby("point_name")["val_accuracy"].mean()
    assert chosen["point"] == means.idxmax() and chosen["repeats"] == 2  # on validation, averaged over repeats
    assert chosen["kernel_size"] in (3, 5) and len(chosen["run_ids"]) == 2
    assert result.champion == "models:/api-run@champion"  # one of the chosen point's runs, registered
    from ledger.tracking import Tracker

    assert Tracker(mlflow_uri).client.get_model_version_by_alias("api-run", "champion").run_id in chosen["run_ids"]
    status = sweeper.status("api-run", tracking_uri=mlflow_uri)
    assert status.states == {"FINISHED": 4} and status.chosen["point"] == chosen["point"]
    assert [s["state"] for s in status.submissions] == ["FINISHED"]
    again = sweeper.run(path)  # nothing to train: nothing written, said so
    assert again.exit_code == 0 and again.message == "nothing to train" and again.champion is None
    folder = result.report(tmp_path / "report", attach=False)
    assert (folder / "report.html").exists()


@pytest.mark.slow
def test_the_notebook_example_runs(tmp_path):
    """examples/notebook.py as a user runs it: prints the trials and the chosen point."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = subprocess.run([sys.executable, str(REPO / "examples" / "notebook.py"), uri], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "chosen: " in out.stdout and "test accuracy" in out.stdout and "run_id" in out.stdout
    assert "'FINISHED': 6" in out.stdout
