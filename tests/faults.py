"""Counting what a fault cost a sweep, from the store alone (tests/sweeper/test_store_faults.py,
tests/cluster/test_cluster_faults.py), and the fault table CI prints (tests/conftest.py).

* **metric steps lost**: per trial ``(point, repeat)``, the epochs 1..E (E: the FINISHED run's
  ``epochs_run``, else the sweep's epochs) that no run of the trial logged ``train_loss`` for;
  a trial continued from a checkpoint in a new run counts the old run's steps too;
* **zombie runs**: parent and child runs still RUNNING or SCHEDULED when the sweep is over;
* **duplicate steps**: steps logged twice within one run (must be none).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

#: Rows of the fault table: (fault, load held, faults survived, metric steps lost, zombie runs).
FAULTS: list[tuple[str, str, str, int, int]] = []


@dataclass
class Cost:
    trials: int  # (point, repeat) pairs with a FINISHED run
    finished_per_trial: dict  # (point, repeat) -> FINISHED runs
    steps_lost: int
    zombies: list  # run names
    duplicate_steps: list  # (run name, steps)
    runs: list


def cost(client, experiment_id: str, epochs: int) -> Cost:
    """What the store holds of one sweep's experiment, counted (``client``: an MlflowClient)."""
    runs = []
    token = None
    while True:
        page = client.search_runs([experiment_id], "", max_results=1000, page_token=token)
        runs += list(page)
        token = page.token
        if not token:
            break
    trials = [r for r in runs if r.data.tags.get("sweep.kind") == "trial"]
    zombies = [r.info.run_name for r in runs if r.info.status in ("RUNNING", "SCHEDULED")]
    finished = Counter((r.data.tags["sweep.point"], r.data.tags["sweep.repeat"]) for r in trials
                       if r.info.status == "FINISHED")
    steps: dict = {}
    duplicates = []
    for run in trials:
        logged = [m.step for m in client.get_metric_history(run.info.run_id, "train_loss")]
        if len(logged) != len(set(logged)):
            duplicates.append((run.info.run_name, sorted(logged)))
        key = (run.data.tags["sweep.point"], run.data.tags["sweep.repeat"])
        steps.setdefault(key, set()).update(logged)
    lost = 0
    for run in trials:
        if run.info.status != "FINISHED":
            continue
        key = (run.data.tags["sweep.point"], run.data.tags["sweep.repeat"])
        last = int(run.data.metrics.get("epochs_run", epochs))
        lost += len(set(range(1, last + 1)) - steps.get(key, set()))
    return Cost(len(finished), dict(finished), lost, zombies, duplicates, runs)


def add_row(fault: str, load: str, survived: str, steps_lost: int, zombies: int) -> None:
    FAULTS.append((fault, load, survived, steps_lost, zombies))


def table() -> list[str]:
    """The fault table as Markdown lines (the README's table has the same columns)."""
    head = ("fault", "load held", "faults survived", "metric steps lost", "zombie runs")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in FAULTS]
    return lines
