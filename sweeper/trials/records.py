"""What a trial records, on the worker's side: the recorder protocol, and what a finished trial sends.

A trial talks to a *recorder* (:class:`Recorder`): in a sweep a
:class:`~sweeper.trials.relay.RelayRecorder` that turns each call into a message for the driver, which
writes it through :class:`ledger.recorder.RunRecorder`; in ``sweeper train`` a :class:`NullRecorder`
that echoes to the terminal. Nothing here imports MLflow.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Optional, Protocol

import cnn

from sweeper.trials.pictures import kernels_png


class Recorder(Protocol):
    """What a trial tells as it trains (:func:`sweeper.trials.trial.execute` calls these in order)."""

    def start(self, info: dict) -> int:
        """The trial starts on this worker (``info``: host, pid, threads); returns the attempt."""

    def load_checkpoint(self, optimizer) -> Optional[tuple]:
        """``(model, meta)`` to continue from, or None to start at epoch 1."""

    def describe(self, model, n_train: int, n_val: int, n_test: int) -> None:
        """The model built and the images it trains on."""

    def log_epoch(self, epoch: int, metrics: dict) -> None:
        """One epoch's metrics."""

    def save_checkpoint(self, path: Path, epoch: int) -> None:
        """The checkpoint file written after ``epoch``."""

    def finish(self, model, metrics: dict, stopped_early: bool) -> tuple[str, str]:
        """Training ended; returns ``(status, reason)``."""

    def fail(self, status: str, reason: str, tb: Optional[str] = None) -> None:
        """The trial failed (its own error, with the traceback) or was stopped."""


class NullRecorder:
    """``sweeper train``: nothing is recorded in MLflow; epochs are echoed to the terminal."""

    def __init__(self, echo=None):
        self.echo = echo or (lambda line: None)

    def start(self, info: dict) -> int:
        return 1

    def load_checkpoint(self, optimizer):
        return None

    def describe(self, model, n_train, n_val, n_test):
        self.echo(cnn.describe(model.spec))
        self.echo(f"images: {n_train} train, {n_val} validation, {n_test} test")

    def log_epoch(self, epoch, metrics):
        self.echo(f"epoch {epoch}: " + "  ".join(f"{k} {v:.4g}" if k == "learning_rate" else f"{k} {v:.4f}"
                                                  for k, v in metrics.items()))

    def save_checkpoint(self, path, epoch):
        pass

    def finish(self, model, metrics, stopped_early):
        self.model = model
        self.echo("final: " + "  ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
        return "FINISHED", ""

    def fail(self, status, reason, tb=None):
        self.echo(f"{status}: {reason}")


def model_params(model, n_train, n_val, n_test) -> dict:
    """What a run records about its model and data, as MLflow params."""
    return {"n_params": model.n_params, "forward_flops": model.flops, "train_images": n_train,
            "val_images": n_val, "test_images": n_test}


def final_artifacts(config: dict, model) -> dict[str, bytes]:
    """A finished run's files: its config, the trained model and a picture of the first kernels."""
    with tempfile.TemporaryDirectory() as tmp:
        cnn.save_model(Path(tmp) / "model.npz", model)
        weights = (Path(tmp) / "model.npz").read_bytes()
    first = next(layer for layer in model.layers if "W" in layer.params)
    return {"config.json": json.dumps(config, indent=2, sort_keys=True).encode(), "model.npz": weights,
            "kernels.png": kernels_png(first.params["W"])}


def load_checkpoint_bytes(data: bytes, optimizer):
    """``cnn.load_checkpoint`` of a checkpoint held in memory: ``(model, meta)``."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "checkpoint.npz"
        path.write_bytes(data)
        return cnn.load_checkpoint(path, optimizer)
