"""A sequential CNN built from a :class:`~cnn.spec.ModelSpec`.

``Model(spec, seed)`` validates the spec with shape inference (a spec that cannot work raises
:class:`~cnn.spec.ShapeError` before any array is allocated), then draws every weight from one
``numpy.random.Generator`` seeded with ``seed``: the same seed gives bit-identical weights.

Modes, as in PyTorch: a model is built in training mode; :meth:`Model.eval` switches dropout off
and makes batch norm use its running statistics, :meth:`Model.train` switches back (and hands
dropout the generator of its masks). :func:`cnn.fit` trains in training mode, :func:`cnn.evaluate`
and :meth:`Model.predict` evaluate in evaluation mode and leave the mode as they found it.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import numpy as np

from .activations import ACTIVATIONS
from .batchnorm import BatchNorm
from .conv import Conv2D
from .dense import Dense, Flatten
from .dropout import Dropout
from .fuse import fuse_activations
from .layer import Layer
from .pool import Pool2D
from .spec import ModelSpec, forward_flops, infer_shapes, param_count


@contextmanager
def evaluating(model):
    """Evaluation mode inside the block, the mode the model had afterwards (any model: one
    without modes is left alone)."""
    if not hasattr(model, "eval") or not hasattr(model, "layers"):
        yield model
        return
    modes = [layer.training for layer in model.layers]
    model.eval()
    try:
        yield model
    finally:
        for layer, mode in zip(model.layers, modes):
            layer.training = mode


class Model:
    """Layers in order; ``forward(x)`` maps ``(N, C, H, W)`` images to ``(N, classes)`` logits."""

    def __init__(self, spec: ModelSpec, seed: int = 0, dtype=np.float32, normalizer=None):
        self.spec = spec
        #: A :class:`~cnn.normalize.Normalizer` for raw pixels (saved with the model), or None when
        #: the inputs come standardised already.
        self.normalizer = normalizer
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise ValueError(f"dtype must be float32 or float64, got {self.dtype}")
        self.shapes = infer_shapes(spec)
        self.layers = self._build(np.random.default_rng(seed))

    def _build(self, rng) -> list[Layer]:
        """One layer per entry of ``infer_shapes(spec)``, in its order and under its name: the spec
        owns the layers' names (``block1.conv``, ``dense1.bn``, ``logits``), the model their arrays."""
        spec, layers = self.spec, []
        names = iter(info.name for info in self.shapes)
        channels = spec.input_shape[0]
        for block in spec.blocks:
            layers.append(Conv2D(channels, block.depth, block.kernel_size, block.stride, block.padding,
                                 rng=rng, dtype=self.dtype, name=next(names)))
            if spec.batch_norm:
                layers.append(BatchNorm(block.depth, dtype=self.dtype, name=next(names)))
            layers.append(ACTIVATIONS[block.activation](name=next(names)))
            if block.pooling is not None:
                layers.append(Pool2D(block.pooling, block.pool_size, block.pool_stride, name=next(names)))
            channels = block.depth
        layers.append(Flatten(name=next(names)))
        features = next(info.out_shape[0] for info in self.shapes if info.kind == "flatten")
        sizes = list(spec.dense) + [spec.classes]
        for j, size in enumerate(sizes, start=1):
            last = j == len(sizes)
            if spec.dropout:
                layers.append(Dropout(spec.dropout, name=next(names)))
            layers.append(Dense(features, size, rng=rng, dtype=self.dtype, name=next(names)))
            if not last and spec.batch_norm:
                layers.append(BatchNorm(size, dtype=self.dtype, name=next(names)))
            if not last:
                layers.append(ACTIVATIONS[spec.dense_activation](name=next(names)))
            features = size
        assert [layer.name for layer in layers] == [info.name for info in self.shapes], "model and spec disagree"
        # Nothing upstream of the first convolution learns, so its input gradient is wasted work.
        if isinstance(layers[0], Conv2D):
            layers[0].needs_input_grad = False
        fuse_activations(layers)
        return layers

    def prepare(self, x: np.ndarray, normalized=None) -> np.ndarray:
        """Images as the network's input, in ``dtype``: standardised by ``normalizer`` if set.

        ``normalized``: the standardisation ``x`` already carries (a Dataset's mark, e.g.
        ``cnn.load_mnist``'s), None for raw pixels. A model with a ``normalizer`` undoes it first
        and applies its own, so inputs are never standardised twice; a model without one takes
        ``x`` as it is (it was trained on standardised inputs).
        """
        if self.normalizer is None:
            return x.astype(self.dtype, copy=False)
        if normalized is not None:
            if normalized == self.normalizer:
                return x.astype(self.dtype, copy=False)
            x = normalized.undo(x, self.dtype)
        return self.normalizer(x, self.dtype)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Logits ``(N, classes)`` of inputs ``x`` (N, C, H, W) already standardised (see ``prepare``)."""
        expected = tuple(self.spec.input_shape)
        if x.ndim != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(f"model expects input of shape (N, {', '.join(map(str, expected))}), got {x.shape}")
        x = x.astype(self.dtype, copy=False)
        for layer in self.layers:
            x = layer.forward(x)
        return x

    __call__ = forward

    def backward(self, dlogits: np.ndarray) -> None:
        """Backpropagate ``d loss / d logits``; fills every layer's ``grads``."""
        d = dlogits.astype(self.dtype, copy=False)
        for layer in reversed(self.layers):
            d = layer.backward(d)
            if d is None:
                break

    def named_parameters(self) -> Iterator[tuple[str, Layer, str]]:
        """``(qualified name, layer, key)`` for every parameter, e.g. ``("block1.conv.W", conv, "W")``."""
        for layer in self.layers:
            for key in layer.params:
                yield f"{layer.name}.{key}", layer, key

    def _named_state(self) -> Iterator[tuple[str, dict, str]]:
        """Parameters, then buffers (batch norm's running statistics): ``(name, owning dict, key)``."""
        for layer in self.layers:
            for store in (layer.params, layer.buffers):
                for key in store:
                    yield f"{layer.name}.{key}", store, key

    def state_dict(self) -> dict[str, np.ndarray]:
        """Every parameter and buffer by qualified name, e.g. ``block1.bn.running_mean`` (as PyTorch's)."""
        return {name: store[key] for name, store, key in self._named_state()}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        expected = {name: store[key].shape for name, store, key in self._named_state()}
        missing, unexpected = set(expected) - set(state), set(state) - set(expected)
        if missing or unexpected:
            raise ValueError(f"state does not match the model: missing {sorted(missing)}, "
                             f"unexpected {sorted(unexpected)}")
        for name, store, key in self._named_state():
            if state[name].shape != expected[name]:
                raise ValueError(f"{name}: expected shape {expected[name]}, got {state[name].shape}")
            store[key] = np.array(state[name], dtype=self.dtype)

    @property
    def training(self) -> bool:
        return all(layer.training for layer in self.layers)

    def train(self, rng: np.random.Generator | None = None) -> "Model":
        """Training mode; ``rng`` (when given) draws every dropout mask from now on."""
        for layer in self.layers:
            layer.training = True
            if rng is not None and isinstance(layer, Dropout):
                layer.rng = rng
        return self

    def eval(self) -> "Model":
        """Evaluation mode: no dropout, batch norm with its running statistics."""
        for layer in self.layers:
            layer.training = False
        return self

    def predict(self, x, batch_size: int = 1000) -> np.ndarray:
        """Class indices (N,) for images ``x``: a :class:`~cnn.dataset.Dataset` (its ``normalized``
        mark is read, see :meth:`prepare`) or an array (N, C, H, W) of raw pixels when the model
        has a ``normalizer`` (of inputs standardised as in training when it has none).

        An array with negative values given to a model that standardises raw pixels itself is
        refused (``ValueError``): raw pixels are never negative, so it was standardised already
        (``cnn.load_mnist``'s ``test.x``) and would be standardised twice. Pass the Dataset instead.
        Evaluated in batches to bound memory, in evaluation mode.
        """
        normalized = getattr(x, "normalized", None)
        if hasattr(x, "y") and hasattr(x, "x"):  # a Dataset: its images with their mark
            x = x.x
        else:
            self.check_raw_pixels(x)
        with evaluating(self):
            return np.concatenate([self.forward(self.prepare(x[i : i + batch_size], normalized)).argmax(axis=1)
                                   for i in range(0, len(x), batch_size)])

    def check_raw_pixels(self, x: np.ndarray) -> None:
        """``ValueError`` when this model standardises raw pixels itself and ``x`` has negative
        values: raw pixels are never negative, so ``x`` was standardised already (``cnn.load_mnist``'s
        ``test.x``) and would be standardised twice."""
        if self.normalizer is not None and x.dtype.kind == "f" and len(x) and min(self.normalizer.mean) >= 0 \
                and float(x.min()) < 0:
            raise ValueError("this model takes raw pixels (as the image files hold them) and standardises them "
                             "itself; these images have negative values, so they are standardised already: pass "
                             "the Dataset (model.predict(test)) or the raw pixels")

    @property
    def n_params(self) -> int:
        return param_count(self.spec)

    @property
    def flops(self) -> int:
        return forward_flops(self.spec)

    def __repr__(self) -> str:
        return f"Model({len(self.layers)} layers, {self.n_params} params, {self.dtype})"
