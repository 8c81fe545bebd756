"""A run frame made by hand, for the dashboards' tests that need no store: four points of a kernel
size x pooling grid, two repeats each, with a run interrupted then finished, a failed one and a
duplicate (tests/dashboards/test_stats.py, test_sections.py, test_analysis.py).
"""
from __future__ import annotations

import pandas as pd


def run_frame(rows: list[tuple]) -> pd.DataFrame:
    """(name, kernel_size, pooling, repeat, status, test_accuracy, flops[, reason]) -> a run frame."""
    records = []
    for i, (name, kernel, pooling, repeat, status, accuracy, flops, *reason) in enumerate(rows):
        reason = reason[0] if reason else ""
        records.append({
            "run_id": f"r{i:02d}", "run_name": f"{name} #{repeat + 1}", "status": status, "point": name,
            "point_name": name, "repeat": repeat, "status_reason": reason,
            "duplicate": status == "KILLED" and reason.startswith("duplicate"),
            "start_time": pd.Timestamp("2025-01-01", tz="UTC") + pd.Timedelta(seconds=i),
            "kernel_size": kernel, "pooling": pooling, "dense": [64], "learning_rate": 0.001,
            "n_params": 1000 * kernel, "forward_flops": flops, "test_accuracy": accuracy,
            "val_accuracy": None if accuracy is None else accuracy - 0.01, "train_seconds": 10.0 * kernel})
    frame = pd.DataFrame(records)
    frame.attrs["swept"] = ["kernel_size", "pooling"]
    return frame


def hand_made_runs() -> pd.DataFrame:
    return run_frame([
        ("k3 max", 3, "max", 0, "FINISHED", 0.90, 100),
        ("k3 max", 3, "max", 1, "KILLED", None, 100, "interrupted: worker died"),
        ("k3 max", 3, "max", 1, "FINISHED", 0.92, 100),
        ("k3 avg", 3, "avg", 0, "FINISHED", 0.80, 100),
        ("k3 avg", 3, "avg", 1, "FINISHED", 0.84, 100),
        ("k5 max", 5, "max", 0, "FINISHED", 0.95, 300),
        ("k5 max", 5, "max", 1, "FAILED", None, 300, "FloatingPointError: NaN"),
        ("k5 avg", 5, "avg", 0, "FINISHED", 0.85, 250),
        ("k5 avg", 5, "avg", 1, "FINISHED", 0.87, 250),
        ("k5 avg", 5, "avg", 1, "KILLED", 0.10, 250, "duplicate of run r08"),
    ])
