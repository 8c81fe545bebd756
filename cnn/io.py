"""Weights and checkpoints as ``.npz`` files, never pickle.

A model file holds ``spec`` (the ModelSpec as JSON text), ``dtype``, one array per parameter
under ``param/<qualified name>`` and, for a model trained on raw pixels, its per-channel
normalisation under ``norm/mean`` and ``norm/std``. A checkpoint adds ``meta`` (JSON: epoch, history, optimizer
settings) and the optimizer state under ``optim/``. Everything loads with ``allow_pickle=False``.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np

from .model import Model
from .normalize import Normalizer
from .spec import ModelSpec


def _write_npz(path, arrays: dict) -> None:
    # Write then rename: a crash mid-write never leaves a truncated file under the real name.
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz.tmp")
    os.close(fd)
    try:
        with open(tmp, "wb") as f:  # a file object: savez would append .npz to a name
            np.savez(f, **arrays)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _model_arrays(model: Model) -> dict:
    arrays = {"spec": np.array(json.dumps(model.spec.to_dict())), "dtype": np.array(model.dtype.name)}
    arrays.update({f"param/{k}": v for k, v in model.state_dict().items()})
    if getattr(model, "normalizer", None) is not None:
        arrays.update({f"norm/{k}": v for k, v in model.normalizer.to_arrays().items()})
    return arrays


def _load_model(data) -> Model:
    spec = ModelSpec.from_dict(json.loads(str(data["spec"])))
    model = Model(spec, dtype=str(data["dtype"]))
    model.load_state_dict({k[len("param/"):]: data[k] for k in data.files if k.startswith("param/")})
    if "norm/mean" in data.files:
        mean, std = data["norm/mean"], data["norm/std"]
        if mean.shape != (spec.input_shape[0],) or std.shape != mean.shape:
            raise ValueError(f"norm/mean and norm/std must have shape ({spec.input_shape[0]},), "
                             f"got {mean.shape} and {std.shape}")
        model.normalizer = Normalizer(tuple(mean), tuple(std))
    return model


def save_model(path, model: Model) -> None:
    """Save ``model``'s spec and weights to ``path`` (an ``.npz`` file)."""
    _write_npz(path, _model_arrays(model))


def load_model(path) -> Model:
    """The model saved at ``path``, with its spec, dtype and weights."""
    with np.load(path, allow_pickle=False) as data:
        if "spec" not in data.files:
            raise ValueError(f"{path}: not a cnn model file (no 'spec' entry)")
        return _load_model(data)


def save_checkpoint(path, model: Model, optimizer, epoch: int, history: list, extra: dict | None = None) -> None:
    """Everything needed to continue training after ``epoch`` bit for bit."""
    arrays = _model_arrays(model)
    arrays.update({f"optim/{k}": v for k, v in optimizer.state_dict().items()})
    meta = {"epoch": int(epoch), "history": history, "optimizer": type(optimizer).__name__, **(extra or {})}
    arrays["meta"] = np.array(json.dumps(meta))
    _write_npz(path, arrays)


def load_checkpoint(path, optimizer=None) -> tuple[Model, dict]:
    """``(model, meta)``; loads the optimizer state into ``optimizer`` when given."""
    with np.load(path, allow_pickle=False) as data:
        model = _load_model(data)
        meta = json.loads(str(data["meta"]))
        if optimizer is not None:
            if meta["optimizer"] != type(optimizer).__name__:
                raise ValueError(f"{path}: checkpoint was written by {meta['optimizer']}, "
                                 f"not {type(optimizer).__name__}")
            optimizer.load_state_dict({k[len("optim/"):]: data[k] for k in data.files if k.startswith("optim/")})
    return model, meta
