"""The data a sweep trains on: loaded once, split once, described for the plan.

:func:`prepare_data` reads a data section's files (through :func:`cnn.load_source`, which checks
them and names the file at fault), subsamples and splits them with the sweep seed, and fits the
per-channel normalisation on the training part. Every trial of a sweep shares the result (the
driver puts it into Ray's object store once). :func:`data_facts` says what planning needs: the
input shape (C, H, W) and the image counts, read from the files when they are there.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

import cnn
from sweeper.spec.config import TEST_FRACTION, DataConfig, SweepConfig


@dataclass(frozen=True)
class DataFacts:
    """What a plan knows of its data: the input shape and (train, validation, test) image counts."""

    input_shape: tuple[int, int, int]
    sizes: Optional[tuple[int, int, int]]  # None: unknown (files not read)
    checked: bool  # True: read from the files; False: assumed from the sweep file
    note: str = ""  # why the files were not read

    def describe(self, source: str) -> str:
        shape = "x".join(map(str, self.input_shape))
        counts = ("unknown image counts" if self.sizes is None else
                  f"{self.sizes[0]} train / {self.sizes[1]} validation / {self.sizes[2]} test images")
        return f"{source}, {shape} inputs, {counts}" + ("" if self.checked else f" ({self.note})")


@dataclass(frozen=True)
class PreparedData:
    """Raw images (uint8 unless an npz held floats) split three ways, and their normalisation."""

    train: cnn.Dataset
    val: Optional[cnn.Dataset]
    test: cnn.Dataset
    normalizer: cnn.Normalizer

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(int(v) for v in self.train.x.shape[1:])

    @property
    def nbytes(self) -> int:
        """Bytes of every array: what each worker node holds once."""
        parts = [self.train, self.test] + ([self.val] if self.val is not None else [])
        return sum(p.x.nbytes + p.y.nbytes for p in parts)

    def digest(self) -> str:
        """16 hex digits of the sha256 of every image and label, in split order: the data set's identity."""
        h = hashlib.sha256()
        for part in (self.train, self.val, self.test):
            if part is not None:
                h.update(np.ascontiguousarray(part.x).data)
                h.update(np.ascontiguousarray(part.y).data)
        return h.hexdigest()[:16]

    def facts(self) -> DataFacts:
        return DataFacts(self.input_shape, (len(self.train), 0 if self.val is None else len(self.val), len(self.test)),
                         True)


def min_classes(config: SweepConfig) -> int:
    """The fewest classes any point's network has: every label must fit it."""
    return min(config.grid.classes or [config.model.classes])


def prepare_data(data: dict, seed: int, classes: Optional[int] = None) -> PreparedData:
    """Load, check, subsample and split a data section (``DataConfig.model_dump()``) with ``seed``.

    Raises :class:`cnn.DataError` naming the file for anything wrong with the data.
    """
    d = DataConfig.model_validate(data)
    train, test = cnn.load_source(d.source, d.path, test_path=d.test_path, label_offset=d.label_offset,
                                  resize=d.resize, test_fraction=d.test_fraction or TEST_FRACTION,
                                  classes=classes, seed=seed)
    where = d.path or f"source {d.source}"
    shape = tuple(int(v) for v in train.x.shape[1:])
    if d.input_shape is not None and tuple(d.input_shape) != shape:
        raise cnn.DataError(f"{where}: images are {'x'.join(map(str, shape))} (C x H x W) but data.input_shape "
                            f"says {'x'.join(map(str, d.input_shape))}")
    for size, part, name in ((d.train_size, train, "train_size"), (d.test_size, test, "test_size")):
        if size is not None and size > len(part):
            raise cnn.DataError(f"{where}: data.{name} {size} exceeds the {len(part)} images it holds")
    if d.train_size:
        train = cnn.subsample(train, d.train_size, seed)
    if d.test_size:
        test = cnn.subsample(test, d.test_size, seed)
    # The split uses the sweep seed, not the trial's: every point is judged on the same images.
    total = len(train)
    train, val = cnn.split(train, d.val_fraction, seed) if d.val_fraction else (train, None)
    if len(train) == 0:  # val_fraction 0.999999 of a small set: nothing left to fit the normalisation on
        raise cnn.DataError(f"{where}: data.val_fraction {d.val_fraction} leaves no training images of the {total}")
    return PreparedData(train, val, test, cnn.Normalizer.fit(train.x))


def data_facts(config: SweepConfig, read: bool = True) -> tuple[DataFacts, Optional[PreparedData]]:
    """``(facts, prepared)``: the data read and checked when ``read`` and its files exist, else
    facts from the sweep file (``data.input_shape`` or the source's known shape).

    Raises :class:`cnn.DataError` when the files exist but are bad, or when nothing states the
    shape of data that cannot be read.
    """
    d = config.data
    missing = d.path is not None and not Path(d.path).expanduser().exists()
    if d.source == "mnist" and not missing:
        try:  # planning never downloads: only `sweeper run` may
            cnn.mnist_dir(d.path, download=False)
        except cnn.MnistError:
            missing = True
    if read and not missing:
        prepared = prepare_data(d.model_dump(), config.seed, min_classes(config))
        return prepared.facts(), prepared
    note = f"{d.path or 'MNIST'} not found: not checked" if missing else "not read"
    shape = d.assumed_shape()
    if shape is None:
        raise cnn.DataError(f"{d.path}: not found, and no data.input_shape [C, H, W] says what the images are")
    return DataFacts(tuple(shape), d.sizes(), False, note), None


__all__ = ["DataFacts", "PreparedData", "prepare_data", "data_facts", "min_classes"]
