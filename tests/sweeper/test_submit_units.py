"""`sweeper run --cluster` without a cluster: what travels with the job, the job's command, the exit
status of each outcome, the Ctrl-C question, and an unreachable or refusing dashboard (exit 4)."""
from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

from sweeper.app import submit
from sweeper.exits import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_TERMINATED, EXIT_UNAVAILABLE
from sweeper.spec.config import load_sweep

REPO = Path(__file__).resolve().parents[2]


def _args(**kw) -> argparse.Namespace:
    base = dict(tracking_uri=None, retry_failed=False, stale_after=None, quiet=False, address=None, overrides=[],
                cluster="http://127.0.0.1:1", token_env="RAY_AUTH_TOKEN", verbose=False)
    return argparse.Namespace(**{**base, **kw})


def _npz_sweep(folder: Path, data_path: str) -> Path:
    path = folder / "s.yaml"
    path.write_text(textwrap.dedent(f"""\
        name: staged
        data: {{source: npz, path: {data_path}}}
        model: {{blocks: 1, depth: 2, dense: [8]}}
        train: {{epochs: 1}}
        grid: {{kernel_size: [3]}}
    """))
    return path


def test_the_sweep_file_and_its_data_travel(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "d").mkdir()
    np.savez(tmp_path / "d" / "x.npz", x=np.zeros((4, 1, 8, 8), np.uint8), y=np.arange(4))
    outside = tmp_path / "abs.npz"
    np.savez(outside, x=np.zeros((4, 1, 8, 8), np.uint8), y=np.arange(4))
    staged = tmp_path / "staged"
    staged.mkdir()
    relative = _npz_sweep(tmp_path, "d/x.npz")
    name, overrides = submit.stage(str(relative), ["train.epochs=2"], load_sweep(relative), staged)
    assert name == "s.yaml" and (staged / "s.yaml").is_file() and (staged / "d" / "x.npz").is_file()
    assert overrides == ["train.epochs=2"]  # a relative path stays valid in the job's folder
    staged2 = tmp_path / "staged2"
    staged2.mkdir()
    absolute = _npz_sweep(tmp_path, str(outside))
    _, overrides = submit.stage(str(absolute), [], load_sweep(absolute), staged2)
    assert overrides == ["data.path=data/abs.npz"] and (staged2 / "data" / "abs.npz").is_file()


def test_the_jobs_command_quotes_what_it_passes():
    command = submit.entrypoint("my sweep.yaml", ["train.epochs=3", "model.dense=[8, 4]"],
                                _args(tracking_uri="http://mlflow:5000", retry_failed=True, quiet=True))
    assert command == ("python -m sweeper run 'my sweep.yaml' --set train.epochs=3 --set 'model.dense=[8, 4]' "
                       "--tracking-uri http://mlflow:5000 --retry-failed --quiet")


def test_exit_status_follows_the_job():
    assert submit.outcome_code({"status": "SUCCEEDED", "code": 0}) == EXIT_OK
    assert submit.outcome_code({"status": "FAILED", "code": 1}) == EXIT_FAILED
    assert submit.outcome_code({"status": "FAILED", "code": None}) == EXIT_UNAVAILABLE  # never ran
    assert submit.outcome_code({"status": "FAILED", "code": -9}) == EXIT_UNAVAILABLE
    assert submit.outcome_code({"status": "STOPPED", "code": None}) == EXIT_TERMINATED


def test_ctrl_c_without_a_terminal_stops(monkeypatch):
    monkeypatch.setattr(sys, "stdin", None)
    assert submit.ask_stop(lambda _: "d") is True


def test_ctrl_c_on_a_terminal_asks(monkeypatch):
    class Tty:
        def isatty(self):
            return True

    monkeypatch.setattr(sys, "stdin", Tty())
    assert submit.ask_stop(lambda _: "d") is False
    assert submit.ask_stop(lambda _: "") is True

    def eof(_):
        raise EOFError

    assert submit.ask_stop(eof) is True


def test_an_unreachable_cluster_is_exit_4_in_one_line(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens once closed
    out = subprocess.run([sys.executable, "-m", "sweeper", "run", str(REPO / "sweeps" / "quickstart.yaml"),
                          "--cluster", f"http://127.0.0.1:{port}"], capture_output=True, text=True, timeout=120,
                         cwd=tmp_path)
    assert out.returncode == EXIT_UNAVAILABLE, out.stderr
    assert "could not be reached" in out.stderr and "Traceback" not in out.stderr, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr


def test_cluster_and_address_exclude_each_other(tmp_path):
    out = subprocess.run([sys.executable, "-m", "sweeper", "run", str(REPO / "sweeps" / "quickstart.yaml"),
                          "--cluster", "http://127.0.0.1:1", "--address", "127.0.0.1:6379"],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert out.returncode == 2 and "exclude each other" in out.stderr, out.stderr
