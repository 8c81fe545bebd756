"""Stores the report tests share: each is written once per session (a fresh SQLite schema costs ~20 s
of migrations here), in its own folder, whose ./mlruns holds the artifacts."""
from __future__ import annotations

import pytest

from tests.dashboards.quickstart_store import write_quickstart_store
from tests.dashboards.synthetic_store import write_store

#: The known-effects grid (synthetic_store.py): 3 kernels x 3 depths x 2 poolings, 3 repeats.
SMALL = {"kernel_size": [3, 5, 7], "depth": [4, 8, 16], "pooling": ["max", "avg"], "stride": [1], "padding": [0]}
#: Kernel effects of the store "rising": the best kernel is the largest tried.
RISING = {3: 0.0, 5: 0.01, 7: 0.02}


def stop_kernel_5(values: dict, repeat: int) -> int:
    """The store "stopped": the best kernel (5) stopped at epoch 3 of 9, the others trained to the end."""
    return 3 if values["kernel_size"] == 5 else 9


def _store(tmp_path_factory, name: str):
    from mlflow import MlflowClient

    tmp = tmp_path_factory.mktemp(name)
    uri = f"sqlite:///{tmp}/mlflow.db"
    patch = pytest.MonkeyPatch()
    patch.chdir(tmp)  # the store's default artifact root, ./mlruns, is resolved when it opens
    MlflowClient(uri).search_experiments()
    return uri, tmp, patch


@pytest.fixture(scope="session")
def store(tmp_path_factory):
    """The quickstart with two repeats, a failure, a duplicate and a resumed run (quickstart_store.py)."""
    uri, tmp, patch = _store(tmp_path_factory, "quickstart-store")
    try:
        written = write_quickstart_store(uri)
    finally:
        patch.undo()
    written.tmp = tmp
    return written


@pytest.fixture(scope="session")
def known(tmp_path_factory):
    """Sweeps with known effects (synthetic_store.py): "known" (the best kernel inside the grid),
    "other" (the same grid, other seeds), "rising" (the best kernel the largest tried) and "stopped"
    (one repeat, the best kernel stopped early: :func:`stop_kernel_5`)."""
    uri, tmp, patch = _store(tmp_path_factory, "known-store")
    try:
        written = {"known": write_store(uri, "known", 3, SMALL, seed=1), "other": write_store(uri, "other", 3, SMALL,
                                                                                             seed=2),
                   "rising": write_store(uri, "rising", 3, SMALL, seed=3, kernel=RISING),
                   "stopped": write_store(uri, "stopped", 1, SMALL, seed=4, epochs=9, stop=stop_kernel_5)}
    finally:
        patch.undo()
    return uri, written, tmp
