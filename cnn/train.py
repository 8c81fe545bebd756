"""Mini-batch training with per-epoch metrics, callbacks, early stopping and divergence checks.

Epochs are numbered from 1. Epoch ``e`` shuffles with ``default_rng([seed, e])``, augments with
``default_rng([seed, e, 1])`` and draws dropout masks from ``default_rng([seed, e, 2])``; its
learning rate is ``schedule(e)``, a closed form. So a run resumed at epoch ``e`` from a checkpoint
sees exactly the batches, masks and rates an uninterrupted run would have seen.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import numpy as np

from .dataset import Dataset
from .losses import log_softmax, softmax_cross_entropy
from .model import evaluating


class DivergenceError(FloatingPointError):
    """The training loss became NaN or infinite."""

    def __init__(self, epoch: int, step: int, loss: float):
        self.epoch, self.step, self.loss = epoch, step, loss
        super().__init__(f"loss is {loss} at epoch {epoch}, step {step}: training diverged "
                         f"(try a lower learning rate)")


@dataclass
class EpochReport:
    """What a callback sees after each epoch. Return ``True`` from the callback to stop training."""

    epoch: int
    metrics: dict
    model: object
    optimizer: object
    history: list


@dataclass
class FitResult:
    history: list = field(default_factory=list)  # one metrics dict per epoch
    stopped_early: bool = False
    epochs_run: int = 0


Callback = Callable[[EpochReport], Optional[bool]]


def evaluate(model, data: Dataset, batch_size: int = 1000) -> tuple[float, float]:
    """``(mean loss, accuracy)`` of ``model`` on ``data``, in evaluation mode."""
    if len(data) == 0:
        return float("nan"), float("nan")
    total_loss, correct = 0.0, 0
    with evaluating(model):
        for i in range(0, len(data), batch_size):
            logits = model.forward(_prepare(model, data.x[i : i + batch_size], getattr(data, "normalized", None)))
            y = data.y[i : i + batch_size]
            total_loss -= float(log_softmax(logits)[np.arange(len(y)), y].sum())
            correct += int((logits.argmax(axis=1) == y).sum())
    return total_loss / len(data), correct / len(data)


def _prepare(model, x, normalized=None):
    """A batch as the network's input: the model's own normalisation of raw pixels, if it has one
    (``normalized``: the standardisation the batch already carries, undone first; never twice)."""
    prepare = getattr(model, "prepare", None)
    return x if prepare is None else prepare(x, normalized)


def fit(model, optimizer, train: Dataset, val: Optional[Dataset] = None, *, epochs: int, batch_size: int,
        seed: int = 0, callbacks: Sequence[Callback] = (), start_epoch: int = 1,
        history: Optional[list] = None, augment: Optional[Callable] = None,
        schedule: Optional[Callable[[int], float]] = None) -> FitResult:
    """Train ``model`` for epochs ``start_epoch .. epochs``; returns every epoch's metrics.

    Metrics per epoch: ``train_loss`` and ``train_accuracy`` (averaged over the epoch's batches as
    they were trained, in training mode), ``val_loss`` and ``val_accuracy`` (when ``val`` is given;
    evaluation mode), ``learning_rate`` and ``seconds``. ``schedule(e)`` (e.g.
    :class:`cnn.schedules.Schedule`) sets the optimizer's learning rate for epoch ``e``; without
    it the rate stays the optimizer's.
    Raises :class:`DivergenceError` as soon as a batch loss is not finite. ``augment(x, rng)``
    (e.g. :class:`cnn.augment.Augment`) transforms each raw training batch with epoch ``e``'s
    ``default_rng([seed, e, 1])`` before the model standardises it.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if len(train) == 0:
        raise ValueError("the training set is empty")
    result = FitResult(history=list(history or []), epochs_run=start_epoch - 1)
    with np.errstate(over="ignore", invalid="ignore"):  # a non-finite loss is reported below, once
        _epochs(model, optimizer, train, val, epochs, batch_size, seed, callbacks, start_epoch, result, augment,
                schedule)
    return result


def _epochs(model, optimizer, train, val, epochs, batch_size, seed, callbacks, start_epoch, result, augment,
            schedule):
    n = len(train)
    for epoch in range(start_epoch, epochs + 1):
        t0 = time.perf_counter()
        if schedule is not None:
            optimizer.lr = float(schedule(epoch))
        if hasattr(model, "train"):
            model.train(np.random.default_rng([seed, epoch, 2]))
        order = np.random.default_rng([seed, epoch]).permutation(n)
        rng = np.random.default_rng([seed, epoch, 1]) if augment else None
        loss_sum, correct = 0.0, 0
        for step, i in enumerate(range(0, n, batch_size), start=1):
            idx = order[i : i + batch_size]
            xb, yb = train.x[idx], train.y[idx]
            if rng is not None:
                xb = augment(xb, rng)
            logits = model.forward(_prepare(model, xb, getattr(train, "normalized", None)))
            loss, dlogits = softmax_cross_entropy(logits, yb)
            if not np.isfinite(loss):
                raise DivergenceError(epoch, step, loss)
            model.backward(dlogits)
            optimizer.step(model)
            loss_sum += loss * len(idx)
            correct += int((logits.argmax(axis=1) == yb).sum())
        metrics = {"train_loss": loss_sum / n, "train_accuracy": correct / n}
        if hasattr(optimizer, "lr"):
            metrics["learning_rate"] = float(optimizer.lr)
        if val is not None and len(val):
            # In training batches: evaluation then needs no more memory than a training step.
            metrics["val_loss"], metrics["val_accuracy"] = evaluate(model, val, batch_size)
        metrics["seconds"] = time.perf_counter() - t0
        result.history.append({"epoch": epoch, **metrics})
        result.epochs_run = epoch
        report = EpochReport(epoch, metrics, model, optimizer, result.history)
        stop = [bool(cb(report)) for cb in callbacks]
        if any(stop):
            result.stopped_early = epoch < epochs
            break


def early_stopping(metric: str = "val_loss", patience: int = 2, mode: str = "min",
                   min_delta: float = 0.0) -> Callback:
    """A callback that stops after ``patience`` epochs without improving ``metric`` by ``min_delta``."""
    if mode not in ("min", "max"):
        raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
    best, waited = None, 0

    def callback(report: EpochReport) -> bool:
        nonlocal best, waited
        value = report.metrics[metric]
        better = best is None or (value < best - min_delta if mode == "min" else value > best + min_delta)
        if better:
            best, waited = value, 0
        else:
            waited += 1
        return waited >= patience

    return callback
