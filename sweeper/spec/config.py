"""The sweep file schema: pydantic models, and :func:`load_sweep` that reports every problem at once.

All validation of a sweep lives here (with the field types in :mod:`sweeper.spec.fields` and the
data section in :mod:`sweeper.spec.data`), the way scikit-learn checks parameters in one place:
the rest of the package (planning, running) trusts a :class:`SweepConfig` it is handed.

* Every model forbids unknown keys (``extra="forbid"``), so a typo is an error, reported with
  a "did you mean" and the list of valid keys.
* Constraints live in the field *types* (``Annotated`` aliases, :mod:`sweeper.spec.fields`), not
  in per-model validators, so that :class:`GridConfig` can reuse them: each grid entry is a list
  of values of the type of the model or train field it replaces, built with
  :func:`pydantic.create_model`.
* Checks that relate two settings (``samples`` and ``method``, ``exclude`` and ``grid`` ...)
  are field validators reading the fields declared before them (``info.data``), so they still run
  when some other section is broken and a file's problems all come out in one go. They raise
  :func:`~sweeper.spec.yamlsource.located_error`, which carries locations *below* the validator's own,
  so that a duplicate in ``grid.kernel_size`` is reported at the line of the duplicate.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Sequence, Union

from annotated_types import Ge, Le
from pydantic import (AfterValidator, Field, Strict, TypeAdapter, ValidationError, ValidationInfo, create_model,
                      field_validator, model_validator)

from cnn.spec import ConvBlockSpec, ModelSpec
from ledger.selection import Selection, natural_mode

from sweeper.spec.data import (DATASET_SIZES, KNOWN_SHAPES, PATH_SOURCES, TEST_FRACTION,  # noqa: F401 (re-exported)
                               DataConfig)
from sweeper.spec.fields import (MAX_BATCH, MAX_BLOCKS, MAX_CLASSES, MAX_CPUS, MAX_DENSE, MAX_DEPTH, MAX_EPOCHS,
                                 MAX_REPEATS, MAX_RETRIES, MAX_SEED, Activation, ExperimentName, Fraction, MemorySize,
                                 NonNegFloat, NonNegInt, Padding, Pooling, PositiveFloat, PositiveInt, Schedule,
                                 ShrinkFactor, Size, SweepName, UnitInterval, Section, at_most)
from sweeper.spec.overrides import apply_overrides
from sweeper.spec.space import Knob, check_conditions, knob_validator, space_size
from sweeper.spec.yamlsource import LineMap, SweepFileError, load_yaml, located_error, problems_from

INPUT_SHAPE = (1, 28, 28)
#: Planning checks every point's shapes (about 0.3 ms each) and every trial becomes an MLflow run:
#: beyond this many trials (points x repeats) a sweep is more likely a mistake than a plan.
MAX_TRIALS = 20_000
#: Points in the grid before exclusion; the same bound, as every point is at least one trial.
MAX_GRID_POINTS = MAX_TRIALS
MAX_COUNT = at_most(MAX_TRIALS, f"a sweep has at most {MAX_TRIALS} trials")

# ---------------------------------------------------------------------------------------------
# Sections


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

    def rule(self) -> Selection:
        """The rule as :mod:`ledger.selection` applies it."""
        return Selection(self.metric, self.mode)


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
SEARCH_METHODS = ("grid", "random", "sobol", "tpe")
#: A time budget longer than this is more likely a unit mistake (minutes for seconds) than a plan.
MAX_TIME_BUDGET = 30 * 24 * 3600


class Budget(Section):
    """How much a search may spend: ``max_trials`` trials (points x repeats) in all, over every
    submission of the sweep; ``time_budget`` wall seconds of one submission (no new trial starts
    after it, the running ones end). Methods random, sobol and tpe; tpe needs one of them."""

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


# ---------------------------------------------------------------------------------------------
# The grid: one optional list per model or train field, typed like that field.

#: Which section each sweepable field belongs to; the names do not collide (checked below).
GRID_SECTIONS: dict[str, str] = {**{name: "model" for name in ModelConfig.model_fields},
                                 **{name: "train" for name in TrainConfig.model_fields}}
if len(GRID_SECTIONS) != len(ModelConfig.model_fields) + len(TrainConfig.model_fields):
    raise TypeError("a model field and a train field share a name: grid keys would be ambiguous")
#: Axis order of the cartesian product and of run names: the lecture's knobs first.
GRID_ORDER: tuple[str, ...] = tuple(dict.fromkeys(
    ("kernel_size", "depth", "stride", "padding", "pooling", *GRID_SECTIONS)))


def canonical_json(value) -> str:
    """Sorted keys, no whitespace, tuples as lists: the same text for equal values on every machine."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def _distinct(values: list) -> list:
    seen: dict[str, int] = {}
    dups = []
    for i, value in enumerate(values):
        key = canonical_json(value)
        if key in seen:
            dups.append(((i,), f"duplicate value {json.dumps(value)} (also item {seen[key]})"))
        seen.setdefault(key, i)
    if dups:
        raise located_error(dups)
    return values


def _item_type(field):
    """The type of one value of a model/train field, constraints included."""
    return Annotated[(field.annotation, *field.metadata)] if field.metadata else field.annotation


class _GridBase(Section):
    """The knobs to sweep, keyed by model or train field name: lists of values, or ranges
    (:mod:`sweeper.spec.space`), each maybe conditional."""

    def knobs(self) -> dict[str, Union[list, Knob]]:
        """Every swept field, a list or a :class:`~sweeper.spec.space.Knob`, in :data:`GRID_ORDER`."""
        return {name: getattr(self, name) for name in GRID_ORDER if getattr(self, name) is not None}

    def axes(self) -> list[tuple[str, list]]:
        """The swept fields with a list of values (conditional ones too), in :data:`GRID_ORDER`."""
        out = []
        for name, knob in self.knobs().items():
            values = knob.values if isinstance(knob, Knob) else knob
            if values is not None:
                out.append((name, list(values)))
        return out

    def ranges(self) -> dict[str, Knob]:
        return {name: knob for name, knob in self.knobs().items() if isinstance(knob, Knob) and knob.is_range}

    def conditions(self) -> dict[str, Knob]:
        return {name: knob for name, knob in self.knobs().items() if isinstance(knob, Knob) and knob.when}

    def size(self) -> Optional[int]:
        """Points of the product of the knobs; None when a range is continuous."""
        return space_size(self.knobs())


_FIELDS = {**ModelConfig.model_fields, **TrainConfig.model_fields}


def _rangeable(field) -> Optional[str]:
    """``"int"`` or ``"float"`` for a field a range can sweep; None for the others (lists only)."""
    return {int: "int", float: "float"}.get(field.annotation)


def _knob_type(name: str):
    item = _item_type(_FIELDS[name])
    lists = Annotated[list[item], Field(min_length=1), AfterValidator(_distinct)]
    return Optional[Annotated[Any, knob_validator(item, lists, _rangeable(_FIELDS[name]))]]


GridConfig = create_model("GridConfig", __base__=_GridBase, __module__=__name__,
                          **{name: (_knob_type(name), None) for name in GRID_ORDER})
#: One value of a grid key, validated as the grid would (exclude entries use these).
_ITEM_ADAPTERS = {name: TypeAdapter(_item_type(field)) for name, field in _FIELDS.items()}


# ---------------------------------------------------------------------------------------------
# The whole file


class SweepConfig(Section):
    """A sweep file. Field order matters: a cross-check reads only the fields declared above it."""

    name: SweepName
    seed: Annotated[NonNegInt, MAX_SEED] = 0
    method: Literal[SEARCH_METHODS] = "grid"
    repeats: Annotated[PositiveInt, MAX_REPEATS] = 1
    budget: Budget = Field(Budget(), validate_default=True)
    samples: Optional[Annotated[PositiveInt, MAX_COUNT]] = Field(None, validate_default=True)
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    grid: GridConfig = Field(GridConfig(), validate_default=True)
    exclude: Annotated[list[dict[str, Any]], Field(max_length=1000)] = []
    early_stopping: Optional[EarlyStopping] = None
    selection: SelectionConfig = SelectionConfig()
    resources: Resources = Resources()
    failures: Failures = Failures()
    feasibility: Feasibility = Feasibility()
    mlflow: MlflowConfig = MlflowConfig()

    @field_validator("budget")
    @classmethod
    def _budget_for_search(cls, budget, info: ValidationInfo):
        method, repeats = info.data.get("method"), info.data.get("repeats")
        if method == "tpe" and budget.max_trials is None and budget.time_budget is None:
            raise located_error([(("method",), "tpe needs a budget: budget.max_trials and/or budget.time_budget "
                                               "(wall seconds)")], up=1)
        if method == "grid" and (budget.max_trials is not None or budget.time_budget is not None):
            raise located_error([((), "a budget is for methods random, sobol and tpe (grid trains every point)")])
        if budget.max_trials is not None and repeats is not None and budget.max_trials < repeats:
            raise located_error([(("max_trials",), f"{budget.max_trials} trials cannot hold one point of "
                                                   f"{repeats} repeats")])
        return budget

    @field_validator("samples")
    @classmethod
    def _samples_for_random(cls, samples, info: ValidationInfo):
        method, budget = info.data.get("method"), info.data.get("budget")
        if method in ("random", "sobol") and samples is None and budget is not None and budget.max_trials is None:
            raise located_error([(("method",), f"{method} needs `samples`, the number of points to draw "
                                               "(or budget.max_trials)")], up=1)
        if method in ("grid", "tpe") and samples is not None:
            raise located_error([((), f"only used by methods random and sobol ({method} "
                                      + ("trains every point)" if method == "grid" else "uses budget.max_trials)"))])
        return samples

    @field_validator("grid")
    @classmethod
    def _grid_size(cls, grid, info: ValidationInfo):
        method = info.data.get("method")
        problems = check_conditions(grid.knobs())
        if method == "grid":
            problems += [((name,), "a range needs method random, sobol or tpe (grid takes lists of values)")
                         for name in grid.ranges()]
        if problems:
            raise located_error(problems)
        size = grid.size()
        if method == "grid" and size > MAX_GRID_POINTS:
            raise located_error([((), f"{size} points exceed the limit of {MAX_GRID_POINTS}")])
        samples = info.data.get("samples")
        if method in ("random", "sobol") and samples is not None and size is not None and samples > size:
            raise located_error([(("samples",), f"{samples} exceeds the {size} points of the grid")], up=1)
        repeats, budget = info.data.get("repeats"), info.data.get("budget")
        points = size if method == "grid" else samples
        if method != "grid" and budget is not None and budget.max_trials is not None and repeats:
            points = budget.max_trials // repeats
        if repeats is not None and points is not None and points * repeats > MAX_TRIALS:
            raise located_error([(("repeats",), f"{points} point(s) x {repeats} repeats = {points * repeats} trials "
                                               f"exceed the limit of {MAX_TRIALS} trials per sweep")], up=1)
        return grid

    @field_validator("exclude")
    @classmethod
    def _exclude_names_grid_values(cls, entries, info: ValidationInfo):
        grid = info.data.get("grid")
        if grid is None:  # the grid itself is invalid and reported
            return entries
        axes = dict(grid.axes())
        known = {key: {canonical_json(v) for v in values} for key, values in axes.items()}
        problems, out = [], []
        for i, entry in enumerate(entries):
            if not entry:
                problems.append(((i,), "an empty entry would exclude every point"))
            clean = {}
            for key, value in entry.items():
                key = str(key)
                if key not in axes:
                    hint = f"grid keys: {', '.join(axes)}" if axes else "the grid is empty"
                    problems.append(((i, key), f"not a grid key ({hint})"))
                    continue
                try:
                    value = _ITEM_ADAPTERS[key].validate_python(value)
                except ValidationError as exc:
                    problems.append(((i, key), exc.errors()[0]["msg"]))
                    continue
                if canonical_json(value) not in known[key]:
                    problems.append(((i, key), f"{json.dumps(value)} is not among the grid values "
                                               f"{json.dumps(axes[key])}"))
                clean[key] = value
            out.append(clean)
        if problems:
            raise located_error(problems)
        return out

    @field_validator("early_stopping")
    @classmethod
    def _early_stopping_needs_validation(cls, rule, info: ValidationInfo):
        data = info.data.get("data")
        if rule is not None and data is not None and data.val_fraction == 0:
            raise located_error([((), f"{rule.metric} needs a validation set: set data.val_fraction > 0")])
        return rule

    @property
    def experiment_name(self) -> str:
        return self.mlflow.experiment or self.name


# ---------------------------------------------------------------------------------------------
# Loading and error reporting


def parse_sweep(data, lines: Optional[LineMap] = None, file: str = "<sweep>") -> SweepConfig:
    """Validate already-parsed data (``lines`` locates problems); raise :class:`SweepFileError`."""
    try:
        return SweepConfig.model_validate(data)
    except ValidationError as exc:
        raise SweepFileError(file, problems_from(exc, lines or LineMap(), SweepConfig)) from None


def load_sweep(path: Union[str, Path], overrides: Sequence[str] = ()) -> SweepConfig:
    """Read, parse and validate a sweep file with ``--set KEY=VALUE`` ``overrides`` applied; any
    problem, or all of them, is a :class:`SweepFileError`."""
    data, lines = load_yaml(path)
    data, lines = apply_overrides(data, lines, overrides, str(path))
    return parse_sweep(data, lines, str(path))


__all__ = ["DATASET_SIZES", "KNOWN_SHAPES", "PATH_SOURCES", "TEST_FRACTION", "INPUT_SHAPE", "MAX_GRID_POINTS", "MAX_TRIALS", "GRID_SECTIONS", "GRID_ORDER",
           "DataConfig", "ModelConfig", "TrainConfig", "EarlyStopping", "SelectionConfig", "Resources", "Failures", "Feasibility",
           "MlflowConfig", "GridConfig", "Budget", "SEARCH_METHODS", "SweepConfig", "canonical_json", "parse_sweep", "load_sweep"]
