"""What both clusters' tests share: the small sweep file they train, and the sweep's record read
through the MLflow server from outside (tests/cluster/test_cluster*.py on scripts/cluster.sh's
cluster, tests/cluster/test_compose_live.py on docker-compose's).

Every reader takes the server's tracking URI; MLflow's client finds the login in the environment.
"""
from __future__ import annotations

import textwrap

PER_EPOCH = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "epoch_seconds")


def sweep_text(name: str, epochs: int, train_size: int) -> str:
    """A 4-point grid (kernel size x pooling) of small networks on the bundled data, 1 CPU a trial."""
    return textwrap.dedent(f"""\
        name: {name}
        seed: 0
        method: grid
        data: {{source: bundled, train_size: {train_size}, test_size: 200, val_fraction: 0.1}}
        model: {{blocks: 2, depth: 4, kernel_size: 3, padding: same, pooling: max, dense: [32]}}
        train: {{epochs: {epochs}, batch_size: 64}}
        grid: {{kernel_size: [3, 5], pooling: [max, avg]}}
        resources: {{cpus_per_trial: 1}}
        failures: {{max_retries: 2, checkpoint_seconds: 0}}  # every epoch checkpointed: faults land between writes
    """)


def client(uri: str):
    from mlflow import MlflowClient

    return MlflowClient(uri)


def sweep_runs(uri: str, name: str) -> tuple[list, list]:
    """The sweep's parent runs and trial runs."""
    c = client(uri)
    experiment = c.get_experiment_by_name(name)
    assert experiment is not None, f"no experiment {name!r} on {uri}"
    parents = c.search_runs([experiment.experiment_id], "tags.`sweep.kind` = 'parent'")
    children = c.search_runs([experiment.experiment_id], "tags.`sweep.kind` = 'trial'")
    return parents, children


def runs_per_point(children: list) -> dict:
    """(point, repeat) -> number of FINISHED runs."""
    counts: dict = {}
    for run in children:
        key = (run.data.tags["sweep.point"], run.data.tags["sweep.repeat"])
        counts[key] = counts.get(key, 0) + (run.info.status == "FINISHED")
    return counts


def steps_lost(uri: str, children: list, epochs: int) -> int:
    """Per-epoch metric steps missing from the children: every metric must have steps 1..epochs."""
    c = client(uri)
    lost = 0
    for run in children:
        for metric in PER_EPOCH:
            steps = {m.step for m in c.get_metric_history(run.info.run_id, metric)}
            lost += len(set(range(1, epochs + 1)) - steps)
    return lost


def running(children: list, parents: list) -> list[str]:
    """Names of the runs left RUNNING or SCHEDULED."""
    return [r.info.run_name for r in children + parents if r.info.status in ("RUNNING", "SCHEDULED")]


def sweep_outcome(uri: str, name: str, epochs: int) -> tuple[list, list, dict, int, list[str]]:
    """After a sweep: its parents, children, FINISHED runs per point, metric steps lost and runs left running."""
    parents, children = sweep_runs(uri, name)
    return parents, children, runs_per_point(children), steps_lost(uri, children, epochs), running(children, parents)
