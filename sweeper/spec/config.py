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

from pydantic import AfterValidator, Field, TypeAdapter, ValidationError, ValidationInfo, create_model, field_validator

from sweeper.spec.data import (DATASET_SIZES, KNOWN_SHAPES, PATH_SOURCES, TEST_FRACTION,  # noqa: F401 (re-exported)
                               DataConfig)
from sweeper.spec.fields import MAX_REPEATS, MAX_SEED, NonNegInt, PositiveInt, Section, SweepName
from sweeper.spec.names import run_name_problem
from sweeper.spec.overrides import apply_overrides
from sweeper.spec.sections import (INPUT_SHAPE, MAX_COUNT, MAX_OBJECTIVES, MAX_TRIALS, MODEL_METHODS,  # noqa: F401
                                   SEARCH_METHODS, Budget, EarlyStopping, Failures, Feasibility, MlflowConfig,
                                   ModelConfig, Objective, Resources, SelectionConfig, TrainConfig)
from sweeper.spec.space import Knob, check_conditions, knob_validator, space_size
from sweeper.spec.yamlsource import LineMap, SweepFileError, load_yaml, located_error, problems_from

#: Points in the grid before exclusion; the same bound, as every point is at least one trial.
MAX_GRID_POINTS = MAX_TRIALS

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
    objectives: Optional[Annotated[list[Objective], Field(min_length=2, max_length=MAX_OBJECTIVES)]] = None
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    grid: GridConfig = Field(GridConfig(), validate_default=True)
    exclude: Annotated[list[dict[str, Any]], Field(max_length=1000)] = []
    early_stopping: Optional[EarlyStopping] = None
    selection: SelectionConfig = Field(SelectionConfig(), validate_default=True)
    resources: Resources = Resources()
    failures: Failures = Failures()
    feasibility: Feasibility = Feasibility()
    mlflow: MlflowConfig = MlflowConfig()

    @field_validator("budget")
    @classmethod
    def _budget_for_search(cls, budget, info: ValidationInfo):
        method, repeats = info.data.get("method"), info.data.get("repeats")
        if method in MODEL_METHODS and budget.max_trials is None and budget.time_budget is None:
            raise located_error([(("method",), f"{method} needs a budget: budget.max_trials and/or "
                                               "budget.time_budget (wall seconds)")], up=1)
        if method == "grid" and (budget.max_trials is not None or budget.time_budget is not None):
            raise located_error([((), "a budget is for methods random, sobol, tpe and nsga2 (grid trains every "
                                      "point)")])
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
        if method in ("grid", *MODEL_METHODS) and samples is not None:
            raise located_error([((), f"only used by methods random and sobol ({method} "
                                      + ("trains every point)" if method == "grid" else "uses budget.max_trials)"))])
        return samples

    @field_validator("grid")
    @classmethod
    def _grid_size(cls, grid, info: ValidationInfo):
        method = info.data.get("method")
        problems = check_conditions(grid.knobs())
        if method == "grid":
            problems += [((name,), "a range needs method random, sobol, tpe or nsga2 (grid takes lists of values)")
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
        too_long = run_name_problem(list(grid.axes()), repeats or 1)
        if too_long:  # the same limit on every store: SQLite would take it, PostgreSQL would not
            raise located_error([((), too_long)])
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

    @field_validator("objectives")
    @classmethod
    def _distinct_objectives(cls, objectives):
        seen: dict[str, int] = {}
        problems = []
        for i, objective in enumerate(objectives or ()):
            if objective.metric in seen:
                problems.append(((i, "metric"), f"{objective.metric} is already objective {seen[objective.metric]}"))
            seen.setdefault(objective.metric, i)
        if problems:
            raise located_error(problems)
        return objectives

    @field_validator("early_stopping")
    @classmethod
    def _early_stopping_needs_validation(cls, rule, info: ValidationInfo):
        data = info.data.get("data")
        if rule is not None and data is not None and data.val_fraction == 0:
            raise located_error([((), f"{rule.metric} needs a validation set: set data.val_fraction > 0")])
        objectives = info.data.get("objectives")
        if rule is not None and objectives and rule.metric != objectives[0].metric:
            # ASHA ranks trials at its rungs on one metric: the first objective, measured each epoch.
            raise located_error([(("metric",), f"with several objectives early stopping stops on the first "
                                               f"objective ({objectives[0].metric}): set early_stopping.metric "
                                               f"to it, or put {rule.metric} first in objectives")])
        return rule

    @field_validator("selection")
    @classmethod
    def _selection_is_an_objective(cls, selection, info: ValidationInfo):
        objectives = info.data.get("objectives")
        if not objectives:
            return selection
        modes = {o.metric: o.mode for o in objectives}
        if selection.metric not in modes:
            # The chosen point is the selection metric's best on the Pareto front of the objectives.
            raise located_error([(("objectives",), f"the selection metric {selection.metric} is not an objective: "
                                                   f"add it, or set selection.metric to a validation objective")],
                                up=1)
        if modes[selection.metric] != selection.mode:
            raise located_error([(("mode",), f"{selection.mode} disagrees with the objective's direction on "
                                             f"{selection.metric}")])
        return selection

    @property
    def experiment_name(self) -> str:
        return self.mlflow.experiment or self.name

    def rule(self):
        """The selection rule of this sweep (:class:`ledger.selection.Selection`), its objectives included."""
        return self.selection.rule(self.objectives or ())


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
           "MlflowConfig", "GridConfig", "Budget", "Objective", "SEARCH_METHODS", "MODEL_METHODS", "SweepConfig", "canonical_json", "parse_sweep", "load_sweep"]
