"""Session-wide fixtures and the parity report printed after the run."""
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_mnist_dir() -> Path | None:
    """Full MNIST: ``shared/data/mnist`` beside the checkout (as CI lays it), or ``CNN_MNIST_DIR``."""
    for candidate in (REPO.parent / "shared" / "data" / "mnist", os.environ.get("CNN_MNIST_DIR")):
        if candidate and (Path(candidate) / "train-images-idx3-ubyte.gz").exists():
            return Path(candidate)
    return None


#: What a user's own sweeps leave in the working folder: no test may read or write them.
USER_STATE = ("mlflow.db", "mlflow.db.lock", "mlruns", "mlartifacts", "reports")


def _state(folder: Path) -> dict:
    """Each user-state path under ``folder`` with its size and modification time (None: absent)."""
    out = {}
    for name in USER_STATE:
        path = folder / name
        out[name] = (path.stat().st_size, path.stat().st_mtime_ns) if path.exists() else None
    return out


@pytest.fixture(scope="session", autouse=True)
def own_store_and_cache(tmp_path_factory):
    """Every test gets a store and caches of its own, never the working folder's or the user's.

    MLflow's default store (``./mlflow.db``) is pointed at a session folder, and so are the caches
    (``XDG_CACHE_HOME``: downloads, the kernels' autotune). At the end the working folder's
    ``mlflow.db``, ``mlruns``, ``mlartifacts`` and ``reports`` must be as they were: a user who
    ran ``make sweep`` before ``make test`` keeps their sweep, and the tests do not see it.
    """
    home = tmp_path_factory.mktemp("session-state")
    before = _state(REPO)
    patch = pytest.MonkeyPatch()
    # A session against the plain-process cluster (.ci/cluster.sh: SWEEPER_CLUSTER=1 and the
    # cluster's MLFLOW_TRACKING_URI) keeps that tracking server: that store is what those tests
    # check. The compose tests name their server's address themselves.
    if not (os.environ.get("SWEEPER_CLUSTER") == "1" and os.environ.get("MLFLOW_TRACKING_URI")):
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{home}/mlflow.db")
    patch.setenv("XDG_CACHE_HOME", str(home / "cache"))
    yield home
    patch.undo()
    after = _state(REPO)
    assert after == before, f"the tests changed the working folder's own state: {before} -> {after}"


#: Figures measured by tests (accuracies, timings), printed after the run for the record.
FIGURES: list[str] = []


@pytest.fixture
def record_figure():
    return FIGURES.append


def pytest_terminal_summary(terminalreporter):
    if FIGURES:
        terminalreporter.write_line("Measured figures:")
        for line in FIGURES:
            terminalreporter.write_line(f"  {line}")
    from tests.faults import FAULTS, table

    if FAULTS:
        terminalreporter.write_line("Faults (tests/faults.py; target: 0 steps lost, 0 zombie runs):")
        for line in table():
            terminalreporter.write_line(f"  {line}")
    try:
        from tests.cnn.test_ops import OBSERVED
    except Exception:  # the ops tests did not run
        return
    if OBSERVED:
        terminalreporter.write_line("PyTorch parity, worst errors observed:")
        for dtype, worst in sorted(OBSERVED.items()):
            terminalreporter.write_line(f"  {dtype}: max abs {worst['abs']:.2e}, max rel {worst['rel']:.2e}")


@pytest.fixture(scope="session")
def ray_local(tmp_path_factory):
    """One local Ray for the whole test session (starting one takes several seconds).

    Yields the GCS address, so that a sweep run in a subprocess can join it with ``--address``.
    """
    ray = pytest.importorskip("ray")
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False,
                 configure_logging=False)
    address = ray.get_runtime_context().gcs_address
    yield address
    ray.shutdown()


@pytest.fixture(scope="session")
def mlflow_uri(tmp_path_factory):
    """A real MLflow SQLite store shared by the session; each test uses its own sweep names.

    Creating the schema costs ~20 s of migrations here, so it is done once.
    """
    from mlflow import MlflowClient

    folder = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{folder}/mlflow.db"
    MlflowClient(uri).search_experiments()
    return uri
