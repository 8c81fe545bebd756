"""Expand a :class:`~sweeper.spec.config.SweepConfig` into the points and trials to train, and cost them.

A *point* is one combination of grid values resolved into a full configuration; a *trial* is
one training run of a point with its own seed (``repeats`` trials per point). :func:`make_plan`
is deterministic: the same file gives the same points, in the same order, with the same hashes
and seeds on every machine, so a sweep can be resumed by matching ``(hash, repeat)`` against the
runs already logged.

Order of operations: the cartesian product of the grid axes (in :data:`~sweeper.spec.config.GRID_ORDER`)
-> drop points matching an ``exclude`` entry -> drop infeasible points (shapes that collapse, or
inputs left unseen when ``feasibility.unseen_inputs`` is ``skip``) -> for ``method: random``, draw
``samples`` of the remaining points -> ``repeats`` trials each -> split into done and pending.
Drawing from the feasible points only means every sample trains. The text ``sweeper plan`` prints
of a plan is :mod:`sweeper.plan.summary`'s.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import os
from dataclasses import dataclass, field
from functools import cached_property
from typing import Mapping, Optional


from cnn.spec import ModelSpec, ShapeError, coverage_problems, forward_flops, infer_shapes

from sweeper.spec.config import GRID_SECTIONS, INPUT_SHAPE, ModelConfig, SweepConfig, TrainConfig, canonical_json
from sweeper.plan.data import DataFacts, data_facts
from sweeper.plan.memory import memory_problem
from sweeper.spec.fields import parse_bytes
from sweeper.plan.trials import Point, Trial  # noqa: F401 (the plan's trials, defined where workers import them)
from sweeper.plan.summary import format_summary
from sweeper.plan.cost import EFFICIENCY, CostEstimate, estimate_cost, measure_flops_per_cpu, trial_flops  # noqa: F401



# ---------------------------------------------------------------------------------------------
# Points and trials


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


#: Settings added after sweeps were first recorded: left out of the hash at these defaults, so
#: the points of earlier sweeps keep their hashes (and their finished runs).
LATER_DEFAULTS = {"data": {"test_path": None, "label_offset": 0, "resize": None, "test_fraction": None,
                           "input_shape": None},
                  "model": {"batch_norm": False, "dropout": 0.0},
                  "train": {"crop_padding": 0, "hflip": False, "schedule": "constant", "warmup_epochs": 0,
                            "step_epochs": 5, "step_gamma": 0.1, "min_lr_factor": 0.0}}
#: Train settings that only one schedule reads: left out of :func:`network_key` under the others.
SCHEDULE_SETTINGS = {"step_epochs": "step", "step_gamma": "step", "min_lr_factor": "cosine"}


def config_hash(config: dict) -> str:
    """First 12 hex digits of the sha256 of the canonical JSON of ``config``.

    ``data.path`` and ``data.test_path`` are left out: where the files live does not change what
    is trained, and a sweep resumed on another machine must find its finished runs. So are the
    :data:`LATER_DEFAULTS` at their defaults.
    """
    config = dict(config)
    for section, defaults in LATER_DEFAULTS.items():
        if section in config:
            config[section] = {k: v for k, v in config[section].items()
                               if not (k in defaults and v == defaults[k])}
    config["data"] = {k: v for k, v in config.get("data", {}).items() if k not in ("path", "test_path")}
    return _sha256(canonical_json(config))[:12]


def trial_seed(sweep_seed: int, repeat: int) -> int:
    """The seed of repeat ``repeat`` of every point: ``int(sha256("{sweep_seed}/repeat/{repeat}")) % 2**31``.

    The point is left out on purpose: repeat k of every point shuffles the training data in the
    same order and draws its initial weights from the same stream (identical first-layer kernels
    where the shapes match), so differences between points are paired by repeat and the noise that
    the seed brings cancels in them.
    """
    return int(_sha256(f"{sweep_seed}/repeat/{repeat}"), 16) % 2 ** 31


def conv_coverage_problems(spec: ModelSpec) -> list[str]:
    """:func:`cnn.spec.coverage_problems` of the convolutions only.

    A pooling window dropping the odd last row of a map is the usual floor behaviour; a conv
    stride that never looks at the last row of the image is what the feasibility rule is about.
    """
    uncovered = [layer for layer in infer_shapes(spec) if any(layer.unseen)]
    return [msg for layer, msg in zip(uncovered, coverage_problems(spec)) if layer.kind == "conv"]


def _size(value) -> str:
    return "x".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def _value(value) -> str:
    if isinstance(value, list):  # dense sizes (a tuple is an [h, w] pair)
        return ",".join(map(str, value)) or "none"
    return "none" if value is None else _size(value)


def point_name(values: Mapping[str, object]) -> str:
    """A legible run name from the swept values, e.g. ``k5 d16 s2 same l2``."""
    parts = []
    for key, value in values.items():
        if key == "kernel_size":
            parts.append(f"k{_size(value)}")
        elif key == "depth":
            parts.append(f"d{value}")
        elif key == "stride":
            parts.append(f"s{_size(value)}")
        elif key == "padding":
            parts.append("same" if value == "same" else f"p{_size(value)}")
        elif key == "pooling":
            parts.append("nopool" if value == "none" else str(value))
        else:
            parts.append(f"{key}={_value(value)}")
    return " ".join(parts) or "base"


@dataclass(frozen=True)
class Excluded:
    """A grid point left out by the first ``exclude`` entry it matches."""

    values: dict
    name: str
    rule: int  # index into the sweep's ``exclude`` list
    entry: dict


@dataclass(frozen=True)
class Infeasible:
    """A point that cannot (shapes) or should not (unseen inputs) be trained, and why."""

    point: Point
    reason: str


@dataclass(frozen=True)
class Merged:
    """A point whose network and training equal an earlier point's: trained once, as ``into``."""

    point: Point
    into: Point

    @property
    def reason(self) -> str:
        differ = [k for k in self.point.values if canonical_json(self.point.values[k]) !=
                  canonical_json(self.into.values.get(k))]
        if differ and set(differ) <= {"pool_size", "pool_stride"} and self.point.config["model"]["pooling"] == "none":
            return f"{' and '.join(differ)} cannot change the network when pooling is none"
        if differ and set(differ) <= set(SCHEDULE_SETTINGS):
            return (f"{' and '.join(differ)} cannot change the training when the schedule is "
                    f"{self.point.config['train']['schedule']}")
        return f"{', '.join(differ) or 'nothing'} differ(s), but the resolved network and training are the same"


def network_key(point: Point) -> str:
    """Equal for two points that train the same network the same way (their resolved spec, train
    settings, data and seed); the model section's own wording does not enter, nor the settings of
    a learning-rate schedule the point does not use."""
    train = {k: v for k, v in point.config["train"].items()
             if k not in SCHEDULE_SETTINGS or SCHEDULE_SETTINGS[k] == point.config["train"].get("schedule")}
    rest = {k: v for k, v in point.config.items() if k not in ("model", "train")}
    return canonical_json({"spec": point.spec.to_dict(), "train": train, **rest})


@dataclass(frozen=True)
class Done:
    """A trial already finished in an earlier run of the sweep."""

    trial: Trial
    run_id: str


def resolve_point(config: SweepConfig, values: Mapping[str, object],
                  input_shape: tuple[int, int, int] = INPUT_SHAPE) -> Point:
    """The :class:`Point` of ``config`` with the swept ``values`` in place of the base settings,
    its network built for ``input_shape`` (C, H, W)."""
    sections = {"model": config.model.model_dump(), "train": config.train.model_dump()}
    for key, value in values.items():
        sections[GRID_SECTIONS[key]][key] = value
    model = ModelConfig.model_validate(sections["model"])
    train = TrainConfig.model_validate(sections["train"])
    resolved = {"seed": config.seed, "data": config.data.model_dump(),
                "model": model.model_dump(), "train": train.model_dump()}
    resolved = json.loads(canonical_json(resolved))  # tuples -> lists, as it will be logged
    resolved = {key: resolved[key] for key in ("seed", "data", "model", "train")}
    spec = model.to_spec(input_shape)
    try:
        flops, unseen, error = forward_flops(spec), tuple(conv_coverage_problems(spec)), None
    except ShapeError as exc:
        flops, unseen, error = None, (), str(exc)
    return Point(dict(values), resolved, config_hash(resolved), point_name(values), spec, flops, unseen, error)


def _matching_rule(values: Mapping[str, object], exclude: list[dict]) -> Optional[int]:
    for i, entry in enumerate(exclude):
        if all(canonical_json(values[k]) == canonical_json(v) for k, v in entry.items()):
            return i
    return None


# ---------------------------------------------------------------------------------------------
# The plan


@dataclass(frozen=True)
class Plan:
    """What a sweep will train; ``summary()`` prints it. ``cost`` is estimated on first use."""

    config: SweepConfig
    space: Optional[int]  # points in the grid before exclusion (None: a continuous range)
    points: tuple[Point, ...]  # to train: feasible, not excluded (and drawn, for random)
    trials: tuple[Trial, ...]
    excluded: tuple[Excluded, ...]
    infeasible: tuple[Infeasible, ...]
    done: tuple[Done, ...]
    pending: tuple[Trial, ...]
    candidates: int  # feasible, not excluded, distinct points (what random draws from)
    unmatched: tuple[tuple[str, int], ...] = ()  # finished keys that are not trials of this plan
    total_cpus: int = 1
    flops_per_cpu: Optional[float] = field(default=None, repr=False)  # None: measure
    data: Optional[DataFacts] = None  # the input shape and image counts the plan was made for
    merged: tuple[Merged, ...] = ()  # points equal to another one, not trained on their own
    #: Methods random, sobol, tpe: the search drawing the points (tpe: the points still to draw).
    feed: Optional[object] = field(default=None, repr=False, compare=False)

    def sizes(self) -> tuple[int, int, int]:
        """(train, validation, test) images per trial (zeros when unknown)."""
        sizes = self.data.sizes if self.data is not None else self.config.data.sizes()
        return sizes or (0, 0, 0)

    @cached_property
    def cost(self) -> "CostEstimate":
        return estimate_cost(self, self.flops_per_cpu)

    def summary(self) -> str:
        """Counts, infeasible and excluded points with reasons, the points to train, and the cost."""
        return format_summary(self)

    def make_trials(self, point: Point) -> list[Trial]:
        """The trials of ``point``: one per repeat, each with its repeat's seed."""
        return [Trial(point, r, trial_seed(self.config.seed, r)) for r in range(self.config.repeats)]


def make_plan(config: SweepConfig, finished: Optional[Mapping[tuple[str, int], str]] = None,
              total_cpus: Optional[int] = None, flops_per_cpu: Optional[float] = None,
              data: Optional[DataFacts] = None, history: Optional[list] = None) -> Plan:
    """Expand ``config``; ``finished`` maps ``(point hash, repeat)`` to the run id of a finished trial.

    ``data``: the input shape and image counts (default: what the sweep file states or its
    source implies, without reading files). ``history``: the ledger's trial runs as
    :class:`~sweeper.plan.search.feed.Recorded` (method tpe: the points of the search so far). ``total_cpus`` (default: this machine's) and
    ``flops_per_cpu`` (default: measured) only affect the cost estimate.
    """
    finished = dict(finished or {})
    data = data or data_facts(config, read=False)[0]
    memory = config.resources.worker_memory
    limit = parse_bytes(memory) if memory else None

    def why_not(point: Point) -> Optional[str]:
        if point.shape_error is not None:
            return point.shape_error
        if limit and (too_big := memory_problem(point, data.sizes, limit, "resources.worker_memory")) is not None:
            return too_big
        if point.unseen and config.feasibility.unseen_inputs == "skip":
            return "; ".join(point.unseen)
        return None

    excluded, infeasible, merged, feed = [], [], [], None
    # random over lists with `samples` ranks the product as it always has (earlier sweeps keep their points)
    expand = config.method == "grid" or (config.method == "random" and config.samples and not config.grid.ranges()
                                         and not config.grid.conditions())
    if expand:
        space, candidates, merged = _expand(config, data, why_not, excluded, infeasible)
        points = candidates
    else:
        space, candidates = config.grid.size(), []
        points, feed = _search(config, data, why_not, excluded, infeasible, history or [])
        candidates = points
    if config.method == "random" and expand:
        # Rank by a hash of (seed, point): reproducible without depending on a RNG's stream.
        ranked = sorted(candidates, key=lambda p: _sha256(f"{config.seed}/sample/{p.hash}"))
        chosen = {p.hash for p in ranked[:config.samples]}
        points = [p for p in candidates if p.hash in chosen]
    trials = [Trial(p, r, trial_seed(config.seed, r)) for p in points for r in range(config.repeats)]
    done = [Done(t, finished[t.key]) for t in trials if t.key in finished]
    pending = [t for t in trials if t.key not in finished]
    keys = {t.key for t in trials}
    unmatched = tuple(sorted(k for k in finished if k not in keys))
    return Plan(config, space, tuple(points), tuple(trials), tuple(excluded), tuple(infeasible), tuple(done),
                tuple(pending), len(candidates), unmatched, total_cpus or _cpus(), flops_per_cpu, data,
                tuple(merged), feed)


def _expand(config: SweepConfig, data, why_not, excluded: list, infeasible: list):
    """The grid's cartesian product: ``(space, candidates, merged)``; excluded and infeasible
    points appended to the lists given. A conditional knob whose condition fails keeps its base
    setting, so the points differing only in it collapse into one (merged)."""
    networks: dict[str, Point] = {}
    merged, candidates = [], []
    axes = config.grid.axes()
    names = [name for name, _ in axes]
    conditions = config.grid.conditions()
    base = {**config.model.model_dump(), **config.train.model_dump()}
    space = 0
    for combo in itertools.product(*(values for _, values in axes)):
        space += 1
        values = dict(zip(names, combo))
        if conditions:
            values = {k: v for k, v in values.items() if k not in conditions or conditions[k].active(values, base)}
        rule = _matching_rule_partial(values, config.exclude)
        if rule is not None:
            excluded.append(Excluded(values, point_name(values), rule, config.exclude[rule]))
            continue
        point = resolve_point(config, values, data.input_shape)
        reason = why_not(point)
        if reason is not None:
            infeasible.append(Infeasible(point, reason))
        elif network_key(point) in networks:
            merged.append(Merged(point, networks[network_key(point)]))
        else:
            networks[network_key(point)] = point
            candidates.append(point)
    return space, candidates, merged


def _matching_rule_partial(values: Mapping[str, object], exclude: list[dict]) -> Optional[int]:
    """:func:`_matching_rule` when a conditional knob is unset: an entry naming it does not match."""
    for i, entry in enumerate(exclude):
        if all(k in values and canonical_json(values[k]) == canonical_json(v) for k, v in entry.items()):
            return i
    return None


#: Proposals a stream sampler (random, sobol) may make per point it must find.
STREAM_ATTEMPTS = 20
#: Points of a tpe search drawn at random to estimate the cost of its budget.
PREVIEW_POINTS = 16


def _search(config: SweepConfig, data, why_not, excluded: list, infeasible: list, history: list):
    """Methods random, sobol, tpe: ``(points, feed)``. A stream's points are all drawn here; tpe's
    are the ledger's so far, and the feed draws the rest as trials end."""
    from sweeper.plan.search import make_sampler, space_of
    from sweeper.plan.search.feed import Feed

    def make_point(values):
        rule = _matching_rule_partial(values, config.exclude)
        point = resolve_point(config, values, data.input_shape)
        if rule is not None:
            return point, f"exclude[{rule}]", network_key(point)
        return point, why_not(point), network_key(point)

    repeats, budget = config.repeats, config.budget
    max_points = config.samples or (budget.max_trials // repeats if budget.max_trials else None)
    if max_points is None:  # a time budget only: the trial limit of every sweep still holds
        from sweeper.spec.config import MAX_TRIALS
        max_points = MAX_TRIALS // repeats
    sampler = make_sampler(config.method, space_of(config), config.seed, config.selection.mode)
    feed = Feed(sampler, make_point, max_points, repeats)
    seen_bad: set = set()

    def note(rejected):
        for point, why in rejected:
            if point is not None and point.hash not in seen_bad:
                seen_bad.add(point.hash)
                if why.startswith("exclude["):
                    excluded.append(Excluded(point.values, point.name, int(why[8:-1]), config.exclude[int(why[8:-1])]))
                else:
                    infeasible.append(Infeasible(point, why))

    if sampler.stream:
        size = config.grid.size()
        attempts = STREAM_ATTEMPTS * max_points + 100
        if size is not None:
            attempts = min(attempts, STREAM_ATTEMPTS * size + 100)
        points = []
        for i in range(attempts):
            if not feed.can_draw():
                break
            point, rejected = feed.draw(i)
            note(rejected)
            if point is not None:
                points.append(point)
        return points, None
    feed.absorb(history)
    points = [resolve_point(config, values, data.input_shape) for values in feed.values.values()]
    # Points the plan costs the budget's ETA on: a random draw of the space (tpe's own are yet unknown).
    stream = Feed(make_sampler("random", space_of(config), config.seed), make_point, PREVIEW_POINTS, repeats)
    feed.preview = [p for i in range(STREAM_ATTEMPTS * PREVIEW_POINTS) if stream.can_draw()
                    for p in [stream.draw(i)[0]] if p is not None]
    return points, feed


def _cpus() -> int:
    # The CPUs this process may run on, which a container can set below os.cpu_count().
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
