"""The sections of a sweep file besides the data and the grid: ``model``, ``train``,
``early_stopping``, ``selection``, ``resources``, ``failures``, ``feasibility``, ``budget`` and
``mlflow``, each a closed pydantic model (``extra="forbid"``) whose constraints live in the field
types of :mod:`sweeper.spec.fields`. :mod:`sweeper.spec.config` assembles them into a
:class:`~sweeper.spec.config.SweepConfig`.
"""
from __future__ import annotations

from typing import Annotated, Literal, Optional, Sequence

from annotated_types import Ge, Le
from pydantic import Field, Strict, field_validator, model_validator

from cnn.spec import ConvBlockSpec, ModelSpec
from ledger.schema import OBJECTIVE_METRICS
from ledger.selection import Selection, natural_mode

from sweeper.spec.fields import (MAX_BATCH, MAX_BLOCKS, MAX_CLASSES, MAX_CPUS, MAX_DENSE, MAX_DEPTH, MAX_EPOCHS,
                                 MAX_RETRIES, Activation, ExperimentName, Fraction, MemorySize, NonNegFloat, NonNegInt,
                                 Padding, Pooling, PositiveFloat, PositiveInt, Schedule, ShrinkFactor, Size,
                                 UnitInterval, Section, at_most)
from sweeper.spec.yamlsource import located_error

INPUT_SHAPE = (1, 28, 28)
#: Planning checks every point's shapes (about 0.3 ms each) and every trial becomes an MLflow run:
#: beyond this many trials (points x repeats) a sweep is more likely a mistake than a plan.
MAX_TRIALS = 20_000
MAX_COUNT = at_most(MAX_TRIALS, f"a sweep has at most {MAX_TRIALS} trials")

class ModelConfig(Section):
    """The network: ``blocks`` conv blocks sharing every setting but their depth, then dense layers.

    Options beyond the lecture's network (off by default): ``batch_norm`` normalises every
    convolution's and hidden dense layer's output before its activation; ``dropout`` drops that
    fraction of every dense layer's inputs in training.
    """

    blocks: Annotated[PositiveInt, MAX_BLOCKS] = 2
    depth: Annotated[PositiveInt, MAX_DEPTH] = 8
    depth_rule: Literal["constant", "double", "halve"] = "constant"
    kernel_size: Size = 3
    stride: Size = 1
    padding: Padding = 0
    activation: Activation = "relu"
    pooling: Pooling = "max"
    pool_size: Size = 2
    pool_stride: Optional[Size] = None
    dense: Annotated[list[Annotated[PositiveInt, MAX_DENSE]], Field(max_length=16)] = [64]
    dense_activation: Activation = "relu"
    classes: Annotated[int, Strict(), Ge(2), MAX_CLASSES] = 10
    batch_norm: Annotated[bool, Strict()] = False
    dropout: Fraction = 0.0

    def depths(self) -> list[int]:
        """Kernels per block: block ``i`` has ``depth``, ``depth * 2**i`` or ``max(1, depth // 2**i)``."""
        if self.depth_rule == "double":
            return [self.depth * 2 ** i for i in range(self.blocks)]
        if self.depth_rule == "halve":
            return [max(1, self.depth // 2 ** i) for i in range(self.blocks)]
        return [self.depth] * self.blocks

    def to_spec(self, input_shape: tuple[int, int, int] = INPUT_SHAPE) -> ModelSpec:
        """The :class:`cnn.spec.ModelSpec` for ``input_shape`` (C, H, W) (shapes are not checked here).

        Settings that cannot change the network take one canonical value, so that equal networks
        have equal specs: without pooling, ``pool_size`` and ``pool_stride`` are the defaults; a
        ``pool_stride`` equal to ``pool_size`` is None (the default stride is the window).
        """
        pooling = None if self.pooling == "none" else self.pooling
        pool_size, pool_stride = self.pool_size, self.pool_stride
        if pooling is None:
            pool_size, pool_stride = ModelConfig.model_fields["pool_size"].default, None
        elif pool_stride == pool_size:
            pool_stride = None
        block = dict(kernel_size=self.kernel_size, stride=self.stride, padding=self.padding,
                     activation=self.activation, pooling=pooling, pool_size=pool_size, pool_stride=pool_stride)
        return ModelSpec(blocks=tuple(ConvBlockSpec(depth=d, **block) for d in self.depths()),
                         input_shape=tuple(input_shape), dense=tuple(self.dense),
                         dense_activation=self.dense_activation, classes=self.classes,
                         batch_norm=self.batch_norm, dropout=self.dropout)


class TrainConfig(Section):
    """Optimisation. ``momentum`` is used by sgd only.

    The learning rate of each epoch (see :mod:`cnn.schedules`): ``warmup_epochs`` rising linearly
    to ``learning_rate``, then ``schedule`` over the remaining epochs: ``constant``; ``step``
    (times ``step_gamma`` every ``step_epochs``); ``cosine`` (down to ``min_lr_factor`` times the rate).
    """

    epochs: Annotated[PositiveInt, MAX_EPOCHS] = 2
    batch_size: Annotated[PositiveInt, MAX_BATCH] = 64
    optimizer: Literal["adam", "sgd"] = "adam"
    learning_rate: PositiveFloat = 0.001
    momentum: Fraction = 0.9
    weight_decay: NonNegFloat = 0.0
    dtype: Literal["float32", "float64"] = "float32"
    #: Augmentation of the training batches, drawn from the trial's seed: pad by this many zero
    #: pixels and crop a random window of the original size (0: none); mirror half the images.
    crop_padding: NonNegInt = 0
    hflip: Annotated[bool, Strict()] = False
    schedule: Schedule = "constant"
    warmup_epochs: Annotated[NonNegInt, MAX_EPOCHS] = 0
    step_epochs: Annotated[PositiveInt, MAX_EPOCHS] = 5
    step_gamma: ShrinkFactor = 0.1
    min_lr_factor: UnitInterval = 0.0


class _MetricChoice(Section):
    """A validation metric and its direction; ``mode`` left out is the metric's natural one."""

    metric: Literal["val_accuracy", "val_loss"] = "val_accuracy"
    mode: Literal["max", "min"] = "max"

    @model_validator(mode="before")
    @classmethod
    def _default_mode(cls, data):
        if isinstance(data, dict) and data.get("mode") is None:
            data = {**data, "mode": natural_mode(str(data.get("metric") or ""))}
        return data


class EarlyStopping(_MetricChoice):
    """ASHA-style rule: at rungs ``grace_epochs * reduction_factor**k``, keep the best 1/reduction_factor."""

    grace_epochs: Annotated[PositiveInt, MAX_EPOCHS] = 1
    reduction_factor: Annotated[int, Strict(), Ge(2), at_most(100, "a rung keeps 1/reduction_factor of the trials")] = 3

    @model_validator(mode="after")
    def _mode_matches_metric(self):
        natural = natural_mode(self.metric)
        if self.mode != natural:
            raise located_error([(("mode",), f"{self.mode} on {self.metric} would keep the worst trials; "
                                         f"use {natural} (or leave mode out)")])
        return self


class SelectionConfig(_MetricChoice):
    """The validation metric that chooses the best point (report, ``status``, progress line); never a test metric."""

    def rule(self, objectives: Sequence["Objective"] = ()) -> Selection:
        """The rule as :mod:`ledger.selection` applies it (with several ``objectives``: the best
        on their Pareto front)."""
        return Selection(self.metric, self.mode, tuple((o.metric, o.mode) for o in objectives))


#: Optuna's words for a direction, as a sweep file writes them, and the modes they mean.
DIRECTIONS = {"maximize": "max", "minimize": "min"}
#: Objectives a sweep may have at once.
MAX_OBJECTIVES = 4


class Objective(Section):
    """One objective of a search with several: a metric a trial records
    (:data:`~ledger.schema.OBJECTIVE_METRICS`: validation metrics, train seconds, peak memory,
    forward FLOPs, parameters) and its ``direction``, ``maximize`` or ``minimize`` (left out: the
    metric's natural one; the other one would prefer the worst points and is refused)."""

    metric: Literal[OBJECTIVE_METRICS]
    direction: Optional[Literal["maximize", "minimize"]] = Field(None, validate_default=True)

    @field_validator("direction")
    @classmethod
    def _natural_direction(cls, direction, info):
        metric = info.data.get("metric")
        if metric is None:
            return direction
        natural = {"max": "maximize", "min": "minimize"}[natural_mode(metric)]
        if direction is not None and direction != natural:
            raise located_error([((), f"{direction} {metric} would prefer the worst points; use {natural} "
                                      "(or leave direction out)")])
        return natural

    @property
    def mode(self) -> str:
        return DIRECTIONS[self.direction]


class Resources(Section):
    """CPUs per trial (its NumPy threads), an optional cap on trials running at once, and whether a
    worker hands the shared data's pages back as it reads them (``auto``: data of 64 MiB or more;
    see sweeper/trials/pages.py)."""

    cpus_per_trial: Annotated[PositiveInt, MAX_CPUS] = 1
    max_concurrent: Optional[Annotated[PositiveInt, MAX_COUNT]] = None
    page_data: Literal["auto", "always", "never"] = "auto"
    #: A worker's memory (``8G``): the plan refuses points whose trial cannot fit in it. Unset, the
    #: run checks against the workers it has (this machine, or SWEEPER_WORKER_MEMORY).
    worker_memory: Optional[MemorySize] = None


class Failures(Section):
    """Retries of a trial whose worker died; the same error on this many points stops the sweep;
    the seconds of training a lost driver may cost a trial (an epoch's checkpoint, with the
    metrics it ends, is written once this long has passed since the trial's last write; 0: every
    epoch)."""

    max_retries: Annotated[NonNegInt, MAX_RETRIES] = 2
    stop_after_same_error: Annotated[PositiveInt, MAX_COUNT] = 3
    checkpoint_seconds: NonNegFloat = 10.0


class Feasibility(Section):
    """``skip``: a conv stride leaving input rows/columns unseen makes a point infeasible."""

    unseen_inputs: Literal["skip", "allow"] = "skip"


#: The sweep file's ``method:``: how points are chosen (:mod:`sweeper.plan.search`).
SEARCH_METHODS = ("grid", "random", "sobol", "tpe", "nsga2")
#: Methods whose proposals depend on the results so far: drawn one at a time, and they need a budget.
MODEL_METHODS = ("tpe", "nsga2")
#: A time budget longer than this is more likely a unit mistake (minutes for seconds) than a plan.
MAX_TIME_BUDGET = 30 * 24 * 3600


class Budget(Section):
    """How much a search may spend: ``max_trials`` trials (points x repeats) in all, over every
    submission of the sweep; ``time_budget`` wall seconds of one submission (no new trial starts
    after it, the running ones end). Methods random, sobol, tpe and nsga2; tpe and nsga2 need one of them."""

    max_trials: Optional[Annotated[PositiveInt, MAX_COUNT]] = None
    time_budget: Optional[Annotated[PositiveFloat, Le(MAX_TIME_BUDGET)]] = None


class MlflowConfig(Section):
    """Where runs are logged: None means MLflow's default store and the sweep name as experiment."""

    tracking_uri: Optional[Annotated[str, Strict(), Field(max_length=2048)]] = None
    experiment: Optional[ExperimentName] = None

    @field_validator("tracking_uri")
    @classmethod
    def _printable_uri(cls, uri):
        if uri is not None and (not uri.strip() or not uri.isprintable()):
            raise located_error([((), "should be a printable URI, e.g. sqlite:///mlflow.db or http://host:5000")])
        return uri
