"""Weights and checkpoints as ``.npz`` files, never pickle.

A model file holds ``spec`` (the ModelSpec as JSON text), ``dtype``, one array per parameter
and buffer (batch norm's running statistics) under ``param/<qualified name>`` and, for a model trained on raw pixels, its per-channel
normalisation under ``norm/mean`` and ``norm/std``. A checkpoint adds ``meta`` (JSON: epoch, history, optimizer
settings) and the optimizer state under ``optim/``. Everything loads with ``allow_pickle=False``.

A file read back from a tracking store may have been written by anyone, so :func:`load_model` and
:func:`load_checkpoint` check it before they allocate: every member's ``.npy`` header (shape,
dtype; no object arrays) is read from the zip without its data, its declared size must match
the header, the spec's parameter count is capped (``max_params``), and every array must have
the shape and a float dtype that the spec gives it. Only then is the model built and filled.
The file itself is read through :mod:`cnn.gate`: a regular file within the read limit, its zip
members' inflated sizes (and ratios) bounded before anything is inflated. NaN or infinite
weights (and optimizer state) are refused. Any fault is a :class:`ModelFileError` (a
:class:`~cnn.dataset.DataError`: exit 2 on the command line) naming the file and the member.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from . import gate
from .dataset import DataError
from .model import Model
from .normalize import Normalizer
from .spec import ModelSpec, infer_shapes

#: Most parameters a model file may declare: 50 million (200 MB in float32), beyond what a sweep
#: of this package trains; a larger spec is refused before anything is allocated.
MAX_PARAMS = 50_000_000
#: Largest JSON text (spec, meta) in a file.
MAX_TEXT_CHARS = 4_000_000
_FLOATS = (np.dtype("float32"), np.dtype("float64"))


class ModelFileError(DataError):
    """A model or checkpoint file that cannot be loaded safely; the message names the file and why."""


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


def _headers(path, zf: zipfile.ZipFile) -> dict[str, tuple[tuple, np.dtype]]:
    """``{member: (shape, dtype)}`` from the ``.npy`` headers alone, each checked against its zip entry."""
    out = {}
    for info in zf.infolist():
        if not info.filename.endswith(".npy"):
            raise ModelFileError(f"{path}: unexpected member {info.filename!r} (not an array)")
        name = info.filename[:-len(".npy")]
        try:
            with zf.open(info) as f:
                shape, _, dtype, header = gate.npy_header(f, f"{path}: {name}")
        except DataError as exc:  # the gate's message, as a model file's error
            raise ModelFileError(str(exc)) from None
        except Exception as exc:  # noqa: BLE001 -- a zip member that cannot even be opened
            raise ModelFileError(f"{path}: {name}: not a valid array ({str(exc)[:200]})") from None
        nbytes = math.prod(shape) * dtype.itemsize
        if header + nbytes != info.file_size:
            raise ModelFileError(f"{path}: {name}: its header declares {nbytes} bytes of data, "
                                 f"the file holds {info.file_size - header}")
        out[name] = (tuple(shape), dtype)
    return out


def _text(path, data, headers, name: str) -> str:
    shape, dtype = headers.get(name, (None, None))
    if shape is None:
        raise ModelFileError(f"{path}: no {name!r} entry: not a cnn model file")
    if shape != () or dtype.kind != "U" or dtype.itemsize > 4 * MAX_TEXT_CHARS:
        raise ModelFileError(f"{path}: {name}: expected one text of at most {MAX_TEXT_CHARS} characters, "
                             f"got {dtype} of shape {shape}")
    return str(data[name])


def expected_shapes(spec: ModelSpec) -> dict[str, tuple[int, ...]]:
    """Shapes of the ``param/`` arrays (parameters and buffers) of a model of ``spec``, by shape
    inference: nothing allocated."""
    shapes: dict[str, tuple[int, ...]] = {}
    infos = infer_shapes(spec)
    for info in infos:
        if info.kind == "conv":
            k = info.config["kernel_size"]
            shapes[f"{info.name}.W"] = (info.out_shape[0], info.in_shape[0], k[0], k[1])
            shapes[f"{info.name}.b"] = (info.out_shape[0],)
        elif info.kind == "dense":
            shapes[f"{info.name}.W"] = (info.out_shape[0], info.in_shape[0])
            shapes[f"{info.name}.b"] = (info.out_shape[0],)
        elif info.kind == "batchnorm":  # its parameters, then its buffers (the running statistics)
            for key in ("gamma", "beta", "running_mean", "running_var"):
                shapes[f"{info.name}.{key}"] = (info.out_shape[0],)
    return shapes


def _check_spec(path, data, headers, max_params: int):
    """``(spec, dtype, param shapes)`` after checking the spec, its size and every array's header."""
    try:
        spec = ModelSpec.from_dict(json.loads(_text(path, data, headers, "spec")))
        shapes = expected_shapes(spec)
    except ModelFileError:
        raise
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError, OverflowError) as exc:
        raise ModelFileError(f"{path}: spec: not a valid model spec ({str(exc)[:200]})") from None
    if not all(type(d) is int for d in (*spec.input_shape, *(d for s in shapes.values() for d in s))):
        raise ModelFileError(f"{path}: spec: sizes must be integers")
    count = sum(math.prod(s) for s in shapes.values())
    if count > max_params:
        raise ModelFileError(f"{path}: spec: {count} parameters exceed the limit of {max_params}")
    dtype = _text(path, data, headers, "dtype")
    if dtype not in ("float32", "float64"):
        raise ModelFileError(f"{path}: dtype: must be float32 or float64, got {dtype[:40]!r}")
    found = {k[len("param/"):]: v for k, v in headers.items() if k.startswith("param/")}
    missing, unexpected = sorted(set(shapes) - set(found)), sorted(set(found) - set(shapes))
    if missing or unexpected:
        raise ModelFileError(f"{path}: arrays do not match the spec: missing {missing[:5]}, unexpected {unexpected[:5]}")
    for name, shape in shapes.items():
        got, got_dtype = found[name]
        if got != shape or got_dtype not in _FLOATS:
            raise ModelFileError(f"{path}: param/{name}: expected float32/64 of shape {shape}, "
                                 f"got {got_dtype} of shape {got}")
    channels = (spec.input_shape[0],)
    for name in ("norm/mean", "norm/std"):
        if (name in headers) != ("norm/mean" in headers) or (
                name in headers and (headers[name][0] != channels or headers[name][1] not in _FLOATS)):
            raise ModelFileError(f"{path}: norm/mean and norm/std must both be float arrays of shape {channels}")
    return spec, dtype, shapes


def _load_model(path, data, headers, max_params: int = MAX_PARAMS) -> Model:
    spec, dtype, _ = _check_spec(path, data, headers, max_params)
    try:
        state = {k[len("param/"):]: data[k] for k in data.files if k.startswith("param/")}
        norm = {k: data[k] for k in ("norm/mean", "norm/std") if k in data.files}
    except Exception as exc:  # noqa: BLE001 -- a corrupt member (CRC, zlib)
        raise ModelFileError(f"{path}: {str(exc)[:200]}") from None
    _check_finite(path, {f"param/{k}": v for k, v in state.items()} | norm)
    try:
        model = Model(spec, dtype=dtype)
        model.load_state_dict(state)
        if norm:
            model.normalizer = Normalizer(tuple(norm["norm/mean"]), tuple(norm["norm/std"]))
    except Exception as exc:  # noqa: BLE001 -- a corrupt member (CRC, zlib), a zero std in norm/std
        raise ModelFileError(f"{path}: {str(exc)[:200]}") from None
    return model.eval()  # a file's model predicts; cnn.fit puts it back in training mode


def save_model(path, model: Model) -> None:
    """Save ``model``'s spec and weights to ``path`` (an ``.npz`` file)."""
    _write_npz(path, _model_arrays(model))


class _Npz:
    """An npz file opened for checked reading through :mod:`cnn.gate` (a regular file within the
    read limit, its members' inflated sizes and ratios bounded): ``headers`` first, arrays
    (``data[name]``) after."""

    def __init__(self, path):
        self.path = path
        self.stack = contextlib.ExitStack()

    def __enter__(self):
        try:
            self.stack.enter_context(gate.load())
            f = self.stack.enter_context(gate.open_file(self.path, "model file"))
            try:
                self.zip = self.stack.enter_context(zipfile.ZipFile(f))
            except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError) as exc:
                raise ModelFileError(f"{self.path}: not an npz file ({exc})") from None
            try:
                gate.zip_members(self.path, self.zip)
            except DataError as exc:
                raise ModelFileError(str(exc)) from None
            self.headers = _headers(self.path, self.zip)
            f.seek(0)
            self.data = self.stack.enter_context(np.load(f, allow_pickle=False))
        except DataError as exc:
            self.stack.close()
            raise exc if isinstance(exc, ModelFileError) else ModelFileError(str(exc)) from None
        except BaseException:
            self.stack.close()
            raise
        return self

    def __exit__(self, *exc):
        self.stack.close()


def _check_finite(path, state: dict) -> None:
    """Every weight finite: a NaN or infinite value is refused, naming the array and the count."""
    for name, value in state.items():
        bad = value.size - int(np.count_nonzero(np.isfinite(value)))
        if bad:
            raise ModelFileError(f"{path}: {name}: {bad} of {value.size} values are NaN or infinite")


def load_model(path, max_params: int = MAX_PARAMS) -> Model:
    """The model saved at ``path``, with its spec, dtype and weights (checked first, see above), in
    evaluation mode (dropout off, batch norm with its running statistics)."""
    with _Npz(path) as npz:
        return _load_model(path, npz.data, npz.headers, max_params)


def save_checkpoint(path, model: Model, optimizer, epoch: int, history: list, extra: dict | None = None) -> None:
    """Everything needed to continue training after ``epoch`` bit for bit."""
    arrays = _model_arrays(model)
    arrays.update({f"optim/{k}": v for k, v in optimizer.state_dict().items()})
    meta = {"epoch": int(epoch), "history": history, "optimizer": type(optimizer).__name__, **(extra or {})}
    arrays["meta"] = np.array(json.dumps(meta))
    _write_npz(path, arrays)


def _check_optimizer(path, headers, shapes) -> None:
    for name, (shape, dtype) in headers.items():
        if not name.startswith("optim/"):
            continue
        key = name[len("optim/"):]
        if key == "t":
            if shape != () or dtype.kind not in "iu":
                raise ModelFileError(f"{path}: {name}: expected one integer, got {dtype} of shape {shape}")
            continue
        param = key[len("state/"):] if key.startswith("state/") else None
        if param is not None and param[:2] in ("m/", "v/") and param not in shapes:
            param = param[2:]
        if param not in shapes or shape != shapes[param] or dtype not in _FLOATS:
            raise ModelFileError(f"{path}: {name}: not the state of a parameter of this model "
                                 f"({dtype} of shape {shape})")


def load_checkpoint(path, optimizer=None, max_params: int = MAX_PARAMS) -> tuple[Model, dict]:
    """``(model, meta)``; loads the optimizer state into ``optimizer`` when given (all checked first)."""
    with _Npz(path) as npz:
        data, headers = npz.data, npz.headers
        _, _, shapes = _check_spec(path, data, headers, max_params)
        _check_optimizer(path, headers, shapes)
        try:
            meta = json.loads(_text(path, data, headers, "meta"))
            if not isinstance(meta, dict) or not isinstance(meta.get("optimizer"), str):
                raise ValueError("expected a mapping with the optimizer's name")
            int(meta["epoch"])
        except ModelFileError:
            raise
        except (ValueError, TypeError, KeyError, RecursionError) as exc:
            raise ModelFileError(f"{path}: meta: not valid ({str(exc)[:200]})") from None
        model = _load_model(path, data, headers, max_params)
        if optimizer is not None:
            if meta["optimizer"] != type(optimizer).__name__:
                raise ModelFileError(f"{path}: checkpoint was written by {meta['optimizer'][:40]}, "
                                     f"not {type(optimizer).__name__}")
            try:
                state = {k[len("optim/"):]: data[k] for k in data.files if k.startswith("optim/")}
            except Exception as exc:  # noqa: BLE001 -- a corrupt member (CRC, zlib)
                raise ModelFileError(f"{path}: optimizer state: {str(exc)[:200]}") from None
            _check_finite(path, {f"optim/{k}": v for k, v in state.items()})
            try:
                optimizer.load_state_dict(state)
            except Exception as exc:  # noqa: BLE001 -- a corrupt member (CRC, zlib), a missing step count
                raise ModelFileError(f"{path}: optimizer state: {str(exc)[:200]}") from None
    return model, meta
