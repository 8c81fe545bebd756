"""benchmarks/driver_scale.py --quick: a sweep of sleeping trials through an MLflow server, its
figures, and the section's lines (a subprocess: the section starts its own Ray)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import driver_scale

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_quick_run_gives_every_figure(tmp_path):
    out = tmp_path / "scale.json"
    proc = subprocess.run([sys.executable, "-m", "benchmarks.driver_scale", "--quick", "--trials", "6", "--cpus", "6",
                           "--json", str(out)], capture_output=True, text=True, timeout=600, cwd=tmp_path,
                          env={**__import__("os").environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    res = json.loads(out.read_text())
    assert res["trials"] == 6 and res["cpus"] == 6 and res["completions_per_s"] > 0
    assert res["metric_writes_per_s"] > res["completions_per_s"]
    assert set(res["busy90_slots"]) == {"10 s", "1 min", "10 min"}
    assert res["busy90_slots"]["10 min"] >= res["busy90_slots"]["1 min"] >= res["busy90_slots"]["10 s"]
    assert "90% busy" in "\n".join(driver_scale.markdown(res))


def test_the_90_percent_rule():
    """A cluster of S slots running trials of T s asks S / T completions per second: the driver's rate
    R keeps it 90% busy up to S = R T / 0.9."""
    rate = 0.45
    assert {k: int(rate * t / driver_scale.BUSY) for k, t in driver_scale.TRIAL_LENGTHS.items()} == \
        {"10 s": 5, "1 min": 30, "10 min": 300}
