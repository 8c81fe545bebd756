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


def pytest_terminal_summary(terminalreporter):
    try:
        from tests.test_ops import OBSERVED
    except Exception:  # the ops tests did not run
        return
    if OBSERVED:
        terminalreporter.write_line("PyTorch parity, worst errors observed:")
        for dtype, worst in sorted(OBSERVED.items()):
            terminalreporter.write_line(f"  {dtype}: max abs {worst['abs']:.2e}, max rel {worst['rel']:.2e}")
