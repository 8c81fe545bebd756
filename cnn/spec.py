"""Declarative model specs, shape inference, parameter counts and FLOP estimates.

A :class:`ModelSpec` describes the lecture's network: an input of shape ``(C, H, W)``, conv blocks
(convolution -> activation -> optional pooling), dense layers, and a softmax over ``classes``.
Two options of the field, off by default: ``batch_norm`` puts a batch normalisation between every
convolution or hidden dense layer and its activation; ``dropout`` drops that fraction of the
inputs of every dense layer (the logits' included) in training.
:func:`infer_shapes` walks it layer by layer with ``out = (H + 2P - K) // S + 1`` and raises
:class:`ShapeError` naming the layer, the sizes and the formula when a shape collapses below 1x1.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Optional, Union

from .geometry import output_size, pair, positive_pair, resolve_padding, unseen

ACTIVATIONS = ("relu", "sigmoid")
POOLING_MODES = ("max", "avg", "l2")


#: The options added to the lecture's network, with their defaults (off).
OPTIONS = {"batch_norm": False, "dropout": 0.0}


class ShapeError(ValueError):
    """A spec whose shapes cannot work; the message names the layer, the sizes and the formula."""


@dataclass(frozen=True)
class ConvBlockSpec:
    """Convolution with ``depth`` kernels, an activation, then pooling (``pooling=None``: none)."""

    depth: int
    kernel_size: Union[int, tuple[int, int]] = 3
    stride: Union[int, tuple[int, int]] = 1
    padding: Union[int, tuple[int, int], str] = 0
    activation: str = "relu"
    pooling: Optional[str] = "max"
    pool_size: Union[int, tuple[int, int]] = 2
    pool_stride: Optional[Union[int, tuple[int, int]]] = None

    def __post_init__(self):
        # Lists arrive from JSON/YAML; tuples keep the spec hashable and comparable.
        for name in ("kernel_size", "stride", "padding", "pool_size", "pool_stride"):
            value = getattr(self, name)
            if isinstance(value, list):
                object.__setattr__(self, name, tuple(value))


@dataclass(frozen=True)
class ModelSpec:
    """A whole network: ``input_shape`` is ``(C, H, W)``; ``dense`` lists hidden dense sizes."""

    blocks: tuple[ConvBlockSpec, ...]
    input_shape: tuple[int, int, int] = (1, 28, 28)
    dense: tuple[int, ...] = ()
    dense_activation: str = "relu"
    classes: int = 10
    batch_norm: bool = False
    dropout: float = 0.0

    def __post_init__(self):
        blocks = tuple(b if isinstance(b, ConvBlockSpec) else ConvBlockSpec(**b) for b in self.blocks)
        object.__setattr__(self, "blocks", blocks)
        object.__setattr__(self, "input_shape", tuple(self.input_shape))
        object.__setattr__(self, "dense", tuple(self.dense))

    def to_dict(self) -> dict[str, Any]:
        """The fields as JSON types; the options at their defaults are left out, so that a model
        without them is written as it was before they existed."""
        data = dataclasses.asdict(self)
        for name in OPTIONS:
            if data[name] == OPTIONS[name]:
                del data[name]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelSpec":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown model spec keys: {sorted(unknown)}")
        return cls(**data)


@dataclass(frozen=True)
class LayerInfo:
    """One layer after shape inference. Shapes exclude the batch axis; ``flops`` per image."""

    name: str
    kind: str
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    params: int = 0
    flops: int = 0
    unseen: tuple[int, int] = (0, 0)  # rows, columns of the input no window covers
    config: dict = field(default_factory=dict)


def _check_choice(value, choices, where):
    if value not in choices:
        raise ShapeError(f"{where}: must be one of {', '.join(choices)}, got {value!r}")


def _window(name, kind, in_shape, kernel, stride, padding, *, fill_pool=False):
    """Shape of a sliding-window layer; raises ShapeError when it collapses below 1x1."""
    c, h, w = in_shape
    try:
        k = positive_pair(kernel, f"{name} kernel size")
        s = positive_pair(stride, f"{name} stride")
        pad = resolve_padding(padding, (h, w), k, s)
    except ValueError as exc:
        raise ShapeError(str(exc)) from None
    if fill_pool and (pad[0][0] >= k[0] or pad[1][0] >= k[1]):
        raise ShapeError(f"{name}: padding {padding!r} must be smaller than the window {k}")
    oh, ow = output_size(h, k[0], s[0], pad[0]), output_size(w, k[1], s[1], pad[1])
    if oh < 1 or ow < 1:
        axis, size, kk, ss, pp, o = (
            ("H", h, k[0], s[0], pad[0], oh) if oh < 1 else ("W", w, k[1], s[1], pad[1], ow)
        )
        raise ShapeError(
            f"{name} ({kind}): input {c}x{h}x{w} collapses below 1x1: "
            f"out = (H + 2P - K) // S + 1 = ({size} + {pp[0] + pp[1]} - {kk}) // {ss} + 1 = {o} on {axis}"
        )
    miss = (unseen(h, k[0], s[0], pad[0]), unseen(w, k[1], s[1], pad[1]))
    return (oh, ow), k, s, pad, miss


def _batch_norm(name: str, shape: tuple[int, ...]) -> LayerInfo:
    """A batch norm over ``shape``'s channels: gamma and beta per channel (its running mean and
    variance are buffers, not parameters); a multiply and an add per value at inference."""
    count = 1
    for size in shape:
        count *= size
    return LayerInfo(name, "batchnorm", shape, shape, 2 * shape[0], 2 * count)


def infer_shapes(spec: ModelSpec) -> list[LayerInfo]:
    """Every layer of ``spec`` with its shapes, parameter count and forward FLOPs per image."""
    if len(spec.input_shape) != 3 or min(spec.input_shape) < 1:
        raise ShapeError(f"input_shape must be (C, H, W) with sizes >= 1, got {spec.input_shape}")
    if spec.classes < 2:
        raise ShapeError(f"classes must be >= 2, got {spec.classes}")
    if not isinstance(spec.batch_norm, bool):
        raise ShapeError(f"batch_norm must be true or false, got {spec.batch_norm!r}")
    if isinstance(spec.dropout, bool) or not isinstance(spec.dropout, (int, float)) or not 0 <= spec.dropout < 1:
        raise ShapeError(f"dropout must be a probability in [0, 1), got {spec.dropout!r}")
    layers: list[LayerInfo] = []
    shape = tuple(spec.input_shape)
    for i, block in enumerate(spec.blocks, start=1):
        name = f"block{i}.conv"
        if not isinstance(block.depth, int) or block.depth < 1:
            raise ShapeError(f"{name}: depth must be an int >= 1, got {block.depth!r}")
        _check_choice(block.activation, ACTIVATIONS, f"block{i}.activation")
        (oh, ow), k, s, pad, miss = _window(name, "conv", shape, block.kernel_size, block.stride, block.padding)
        c = shape[0]
        out = (block.depth, oh, ow)
        macs = oh * ow * block.depth * c * k[0] * k[1]
        layers.append(LayerInfo(name, "conv", shape, out, block.depth * (c * k[0] * k[1] + 1), 2 * macs, miss,
                                {"kernel_size": k, "stride": s, "padding": pad}))
        if spec.batch_norm:
            layers.append(_batch_norm(f"block{i}.bn", out))
        layers.append(LayerInfo(f"block{i}.{block.activation}", block.activation, out, out, 0, oh * ow * block.depth))
        shape = out
        if block.pooling is not None:
            _check_choice(block.pooling, POOLING_MODES, f"block{i}.pooling")
            pname = f"block{i}.pool"
            stride = block.pool_size if block.pool_stride is None else block.pool_stride
            (ph, pw), k, s, pad, miss = _window(pname, f"{block.pooling} pool", shape, block.pool_size, stride, 0)
            out = (shape[0], ph, pw)
            layers.append(LayerInfo(pname, f"{block.pooling}pool", shape, out, 0,
                                    out[0] * ph * pw * k[0] * k[1], miss, {"size": k, "stride": s}))
            shape = out
    features = shape[0] * shape[1] * shape[2]
    layers.append(LayerInfo("flatten", "flatten", shape, (features,)))
    sizes = list(spec.dense) + [spec.classes]
    for j, size in enumerate(sizes, start=1):
        if not isinstance(size, int) or size < 1:
            raise ShapeError(f"dense{j}: size must be an int >= 1, got {size!r}")
        name = f"dense{j}" if j < len(sizes) else "logits"
        if spec.dropout:
            layers.append(LayerInfo(f"{name}.dropout", "dropout", (features,), (features,), 0, features,
                                    config={"p": spec.dropout}))
        layers.append(LayerInfo(name, "dense", (features,), (size,), features * size + size, 2 * features * size))
        if j < len(sizes) and spec.batch_norm:
            layers.append(_batch_norm(f"{name}.bn", (size,)))
        if j < len(sizes):
            _check_choice(spec.dense_activation, ACTIVATIONS, "dense_activation")
            layers.append(LayerInfo(f"{name}.{spec.dense_activation}", spec.dense_activation, (size,), (size,), 0, size))
        features = size
    return layers


def param_count(spec: ModelSpec) -> int:
    return sum(layer.params for layer in infer_shapes(spec))


def forward_flops(spec: ModelSpec) -> int:
    """FLOPs of one forward pass for one image (a multiply-add counts 2)."""
    return sum(layer.flops for layer in infer_shapes(spec))


def coverage_problems(spec: ModelSpec) -> list[str]:
    """Layers whose stride leaves input rows or columns that no window covers."""
    problems = []
    for layer in infer_shapes(spec):
        rows, cols = layer.unseen
        if rows or cols:
            problems.append(
                f"{layer.name}: stride {layer.config['stride']} leaves {rows} row(s) and {cols} column(s) "
                f"of its {layer.in_shape[1]}x{layer.in_shape[2]} input unseen"
            )
    return problems


def describe(spec: ModelSpec) -> str:
    """A table of layers, shapes, parameters and FLOPs, like Keras' ``summary()``."""
    rows = [f"{'layer':<16}{'output':>14}{'params':>10}{'MFLOPs':>10}"]
    for layer in infer_shapes(spec):
        rows.append(f"{layer.name:<16}{'x'.join(map(str, layer.out_shape)):>14}{layer.params:>10}"
                    f"{layer.flops / 1e6:>10.3f}")
    rows.append(f"{'total':<16}{'':>14}{param_count(spec):>10}{forward_flops(spec) / 1e6:>10.3f}")
    return "\n".join(rows)


__all__ = ["ConvBlockSpec", "ModelSpec", "LayerInfo", "ShapeError", "infer_shapes", "param_count",
           "forward_flops", "coverage_problems", "describe", "pair"]
