"""How good the search samplers are: best validation accuracy after N trials, on one real objective.

    python -m benchmarks.search [--quick] [--trials N] [--seeds N] [--json FILE]

The objective is a real trial of the sweeper (``sweeper.trials.trial.execute``, in this process,
nothing recorded): the bundled MNIST subset, the lecture's knobs (kernel size, depth, stride,
padding, pooling) plus learning rate and weight decay on log scales, tiny epochs. Its seed is
fixed, so every sampler faces the same function; only the sampler's seed changes from run to
run. Each sampler proposes points one at a time and is told each result before the next
(sequential search): ``random``, ``sobol`` and ``tpe`` as a sweep draws them (the
:class:`~sweeper.plan.search.feed.Feed` of ``sweeper/plan/search``: infeasible and repeated
points skipped, not counted), and Optuna's own ``TPESampler`` on the same knobs directly
(ask-and-tell, an infeasible point told FAIL and not counted). Figures: the median over the
seeds of the best validation accuracy after N trials. Trials of equal points are trained once
and reused (the objective is deterministic), across samplers too.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time



LECTURE = {"kernel_size": [3, 5, 7], "depth": [4, 8, 16], "stride": [1, 2], "padding": [0, "same"],
           "pooling": ["max", "avg", "l2"],
           "learning_rate": {"low": 1.0e-4, "high": 1.0e-1, "log": True},
           "weight_decay": {"low": 1.0e-6, "high": 1.0e-2, "log": True}}
FULL = dict(train_size=1000, epochs=1, trials=30, seeds=5)
QUICK = dict(train_size=200, epochs=1, trials=4, seeds=1)
METHODS = ("random", "sobol", "tpe", "optuna_tpe")


class Objective:
    """The sweep's trial of a point's values: validation accuracy (None: infeasible), memoised."""

    def __init__(self, train_size: int, epochs: int):
        from sweeper.plan.data import prepare_data
        from sweeper.spec.config import parse_sweep

        self.config = parse_sweep({"name": "bench-search", "method": "tpe", "budget": {"max_trials": 1000},
                                   "data": {"source": "bundled", "train_size": train_size, "val_fraction": 0.2},
                                   "model": {"blocks": 2, "depth_rule": "double", "dense": [64]},
                                   "train": {"epochs": epochs, "batch_size": 32},
                                   "grid": LECTURE})
        self.data = prepare_data(self.config.data.model_dump(), self.config.seed)
        self.cache: dict[str, float] = {}
        self.trained, self.seconds = 0, 0.0

    def point(self, values: dict):
        """``(point, why it cannot train or None, network key)``, as a sweep's plan makes it."""
        from sweeper.plan.points import network_key, resolve_point

        point = resolve_point(self.config, values, self.data.facts().input_shape)
        why = point.shape_error or ("; ".join(point.unseen) if point.unseen else None)
        return point, why, network_key(point)

    def __call__(self, point) -> float:
        from sweeper.plan.points import trial_seed
        from sweeper.plan.trials import Trial
        from sweeper.trials.trial import TrialTask, execute

        if point.hash not in self.cache:
            began = time.perf_counter()
            outcome = execute(TrialTask(Trial(point, 0, trial_seed(self.config.seed, 0))), self.data)
            self.seconds += time.perf_counter() - began
            self.trained += 1
            self.cache[point.hash] = float(outcome.metrics.get("val_accuracy", 0.0)) \
                if outcome.status == "FINISHED" else 0.0
        return self.cache[point.hash]


def run_sweeper(objective: Objective, method: str, seed: int, trials: int) -> list[float]:
    """The accuracies of ``trials`` points drawn by the sweeper's ``method`` with sampler seed ``seed``."""
    from sweeper.plan.search import make_sampler, space_of
    from sweeper.plan.search.feed import Feed

    sampler = make_sampler(method, space_of(objective.config), seed, "max")
    feed = Feed(sampler, objective.point, trials, 1)
    scores, index = [], 0
    while feed.can_draw() and index < 50 * trials:
        point, _ = feed.draw(index)
        index += 1 if sampler.stream else 0
        if point is None:
            if sampler.stream:
                continue
            break
        score = objective(point)
        feed.tell((point.hash, 0), score)
        scores.append(score)
    return scores


def run_optuna(objective: Objective, seed: int, trials: int) -> list[float]:
    """The accuracies of ``trials`` feasible points proposed by Optuna's default TPESampler."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    scores = []
    while len(scores) < trials and len(study.trials) < 50 * trials:
        trial = study.ask()
        values = {}
        for name, knob in LECTURE.items():
            if isinstance(knob, list):
                values[name] = knob[trial.suggest_categorical(name, list(range(len(knob))))]
            else:
                values[name] = trial.suggest_float(name, knob["low"], knob["high"], log=knob["log"])
        point, why, _ = objective.point(values)
        if why is not None:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            continue
        score = objective(point)
        study.tell(trial, score)
        scores.append(score)
    return scores


def run(quick: bool = False, trials: int | None = None, seeds: int | None = None, log=print) -> dict:
    cfg = dict(QUICK if quick else FULL)
    cfg["trials"] = trials or cfg["trials"]
    cfg["seeds"] = seeds or cfg["seeds"]
    began = time.perf_counter()
    objective = Objective(cfg["train_size"], cfg["epochs"])
    best: dict[str, list[float]] = {m: [] for m in METHODS}
    for seed in range(cfg["seeds"]):
        for method in METHODS:
            scores = run_optuna(objective, seed, cfg["trials"]) if method == "optuna_tpe" else \
                run_sweeper(objective, method, seed, cfg["trials"])
            best[method].append(max(scores) if scores else 0.0)
            log(f"search: seed {seed} {method}: best val_accuracy {best[method][-1]:.4f} "
                f"after {len(scores)} trials")
    medians = {m: statistics.median(v) for m, v in best.items()}
    spread = {m: (min(v), max(v)) for m, v in best.items()}
    return {"config": cfg, "best": best, "medians": medians, "spread": spread,
            "trained": objective.trained, "trial_seconds": objective.seconds / max(1, objective.trained),
            "seconds": time.perf_counter() - began,
            "tpe_vs_random": medians["tpe"] - medians["random"],
            "tpe_vs_optuna": medians["tpe"] - medians["optuna_tpe"]}


def markdown(s: dict) -> list[str]:
    c = s["config"]
    out = ["## Search: best validation accuracy after N trials", "",
           f"Bundled MNIST, {c['train_size']} training images (20% of them for validation), {c['epochs']} epoch(s), "
           f"the lecture's knobs plus learning rate and weight decay on log scales; {c['trials']} trials per search, "
           f"sequential; median (min-max) over {c['seeds']} sampler seeds of the best validation accuracy. "
           f"{s['trained']} distinct points trained, {s['trial_seconds']:.2f} s each on average.", "",
           "| sampler | median best val_accuracy | min | max |", "|---|---|---|---|"]
    for method in METHODS:
        lo, hi = s["spread"][method]
        out.append(f"| {method} | {s['medians'][method]:.4f} | {lo:.4f} | {hi:.4f} |")
    out.append("")
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.search", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--trials", type=int, default=None)
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--json", default=None, help="write the results to this file")
    args = parser.parse_args(argv)
    res = run(args.quick, args.trials, args.seeds)
    print("\n".join(markdown(res)))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(res, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
