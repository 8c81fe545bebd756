"""In-memory labelled image sets and deterministic splits."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from .normalize import Normalizer


class DataError(ValueError):
    """Data that cannot be used: the message names the file (or folder) and what is wrong with it."""


@dataclass(frozen=True)
class Dataset:
    """Images ``x`` of shape ``(N, C, H, W)`` and integer labels ``y`` of shape ``(N,)``.

    ``x`` is either raw pixels (uint8, or float32 from an npz; ``normalized`` None), standardised
    batch by batch by the model's :class:`~cnn.normalize.Normalizer`, or floats already
    standardised, with ``normalized`` the standardisation applied (``cnn.load_mnist`` marks its
    sets so). :func:`cnn.evaluate`, :func:`cnn.fit` and :meth:`cnn.Model.predict` read the mark:
    a model that standardises raw pixels itself gets these inputs converted to its own
    standardisation, never standardised twice.
    """

    x: np.ndarray
    y: np.ndarray
    normalized: Optional[Normalizer] = None

    def __post_init__(self):
        if self.x.ndim != 4:
            raise ValueError(f"Dataset.x must have shape (N, C, H, W), got {self.x.shape}")
        if self.y.shape != (self.x.shape[0],):
            raise ValueError(f"Dataset.y must have shape ({self.x.shape[0]},), got {self.y.shape}")

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def take(self, index) -> "Dataset":
        return Dataset(self.x[index], self.y[index], self.normalized)

    def astype(self, dtype) -> "Dataset":
        return self if self.x.dtype == dtype else Dataset(self.x.astype(dtype), self.y, self.normalized)


def stratified_indices(labels: np.ndarray, fraction: float, seed) -> tuple[np.ndarray, np.ndarray]:
    """Split indices so each class keeps its share: ``round(fraction * n_class)`` go to the second part."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"fraction must be in [0, 1), got {fraction}")
    rng = np.random.default_rng(seed)
    first, second = [], []
    for cls in np.unique(labels):
        idx = np.flatnonzero(labels == cls)
        idx = idx[rng.permutation(idx.size)]
        k = int(round(fraction * idx.size))
        second.append(idx[:k])
        first.append(idx[k:])
    return np.sort(np.concatenate(first)), np.sort(np.concatenate(second))


def allocate(counts: np.ndarray, size: int) -> np.ndarray:
    """Per-class sample sizes summing to ``size``, proportional to ``counts`` (largest remainder)."""
    quota = counts * size / counts.sum()
    take = np.floor(quota).astype(np.int64)
    # Ties go to the lower class index (stable sort), so the allocation is fully determined.
    order = np.argsort(-(quota - take), kind="stable")
    take[order[: size - take.sum()]] += 1
    return take


def stratified_sample(labels: np.ndarray, size: int, seed) -> np.ndarray:
    """Sorted indices of exactly ``size`` images keeping every class's share of ``labels``."""
    classes, counts = np.unique(labels, return_counts=True)
    rng = np.random.default_rng(seed)
    keep = []
    for cls, k in zip(classes, allocate(counts, size)):
        idx = np.flatnonzero(labels == cls)
        keep.append(idx[rng.permutation(idx.size)[:k]])
    return np.sort(np.concatenate(keep))


def split(dataset: Dataset, fraction: float, seed=0) -> tuple[Dataset, Dataset]:
    """``(rest, held_out)`` with ``fraction`` of every class held out, the same for the same seed."""
    a, b = stratified_indices(dataset.y, fraction, seed)
    return dataset.take(a), dataset.take(b)


def subsample(dataset: Dataset, size: int, seed=0) -> Dataset:
    """A stratified subset of ``size`` images (all of them when ``size >= len(dataset)``)."""
    if size >= len(dataset):
        return dataset
    return dataset.take(stratified_sample(dataset.y, size, seed))
