"""The Python API: what the ``sweeper`` command does, as functions that return data.

The command line is built on these. In a notebook::

    import sweeper

    config = sweeper.load_config("sweeps/quickstart.yaml", ["train.epochs=1"])
    result = sweeper.run(config)                 # or sweeper.run("sweeps/quickstart.yaml")
    result.trials                                # a pandas DataFrame, one row per trial
    result.chosen                                # the point chosen on validation
    result.report("reports/quickstart")          # the report's folder
    sweeper.status("quickstart").states          # {"FINISHED": 6}

Errors are exceptions carrying the messages the command line prints: a bad sweep file is a
:class:`~sweeper.spec.yamlsource.SweepFileError` (every problem with its key path and line), bad
data a :class:`cnn.DataError`, an unknown sweep a :class:`~ledger.tracking.SweepNotFound`, a store
that stays down a :class:`~ledger.retry.StoreUnavailable`.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Optional, Sequence, Union

from sweeper.trials.session import SweepResult
from sweeper.spec.config import SweepConfig

SweepLike = Union[SweepConfig, str, Path]


def load_config(path: Union[str, Path], overrides: Sequence[str] = ()) -> SweepConfig:
    """The validated sweep file at ``path``, with ``overrides`` (``"train.epochs=3"``, as ``--set``) applied."""
    from sweeper.spec.config import load_sweep

    return load_sweep(path, overrides)


def _config_and_text(sweep: SweepLike, overrides: Sequence[str]) -> tuple[SweepConfig, str]:
    if isinstance(sweep, SweepConfig):
        if overrides:
            raise ValueError("overrides apply to a sweep file; change the SweepConfig itself instead")
        import yaml

        return sweep, yaml.safe_dump(sweep.model_dump(mode="json"), sort_keys=False)
    return load_config(sweep, overrides), Path(sweep).read_text()


@dataclass
class SweepRun:
    """What a :func:`run` did, and the sweep as the ledger holds it now."""

    config: SweepConfig
    result: SweepResult
    tracking_uri: str
    elapsed: float = 0.0
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def exit_code(self) -> int:
        return self.result.exit_code

    @property
    def message(self) -> str:
        return self.result.message

    @property
    def counts(self) -> dict:
        return self.result.counts

    @cached_property
    def trials(self):
        """One row per trial (the run that decides it, else its latest): knobs, metrics, status, run id."""
        from ledger import load_runs, rules

        runs = load_runs(self.tracking_uri, self.name)
        done = rules.deciding_rows(runs)
        rest = runs[~runs.set_index(["point", "repeat"]).index.isin(done.set_index(["point", "repeat"]).index)]
        latest = rest.sort_values("start_time").drop_duplicates(["point", "repeat"], keep="last")
        import pandas as pd

        return pd.concat([done, latest]).sort_values(["point_name", "repeat"]).reset_index(drop=True)

    @property
    def champion(self) -> Optional[str]:
        """``models:/<name>@champion``: the chosen point's registered MLflow model (docs/models.md),
        or None when this run registered nothing (nothing finished, or it was stopped)."""
        return None if self.result.champion is None else self.result.champion.uri

    @cached_property
    def chosen(self) -> Optional[dict]:
        """The point chosen on validation (the ledger's selection rule): its knobs, its mean validation
        metric over repeats, its mean test accuracy, and its runs. None before any trial finished."""
        from ledger import rank_points, rules

        frame = self.trials
        ranked = rank_points(frame, self.config.rule())
        if not len(ranked):
            return None
        point, row = next(ranked.iterrows())
        mine = rules.deciding_rows(frame)
        mine = mine[mine["point"] == point]
        knobs = {k: mine.iloc[0][k] for k in frame.attrs.get("swept", [])}
        return {"point": row["point_name"], "hash": point, **knobs, "metric": self.config.selection.metric,
                "score": float(row["score"]), "repeats": int(row["repeats"]),
                "test_accuracy": float(mine["test_accuracy"].mean()), "run_ids": list(mine["run_id"])}

    def report(self, path: Union[str, Path, None] = None, attach: bool = True) -> Path:
        """Write the sweep's report into ``path`` (default ``reports/NAME``); returns the folder."""
        from sweeper.app.report import write_report

        return write_report(self.name, self.tracking_uri, path, attach=attach)


def run(sweep: SweepLike, *, overrides: Sequence[str] = (), tracking_uri: Optional[str] = None,
        address: Optional[str] = None, retry_failed: bool = False, progress: bool = False,
        stale_after: Optional[float] = None, observer=None) -> SweepRun:
    """Run (or continue) the sweep ``sweep``, a sweep file or a :class:`SweepConfig`: train every trial
    the ledger does not hold yet, on Ray (a local one, or the cluster at ``address``). ``progress``:
    show the live line on stderr; ``observer``: a :class:`sweeper.trials.observer.Observer` of your own."""
    config, text = _config_and_text(sweep, overrides)
    return _submit(config, text, "run", overrides, tracking_uri, progress, observer=observer, address=address,
                   retry_failed=retry_failed, stale_seconds=stale_after)


def resume(name_or_file: Union[str, Path], *, tracking_uri: Optional[str] = None, address: Optional[str] = None,
           retry_failed: bool = False, progress: bool = False, stale_after: Optional[float] = None,
           observer=None) -> SweepRun:
    """Finish an interrupted sweep: by file, or by name (the file and its ``--set`` are read back
    from the sweep's parent run)."""
    from sweeper.app.service import load_text, sweep_source

    try:
        is_file = Path(name_or_file).is_file()
    except (OSError, ValueError):  # a name too long for a path, a NUL
        is_file = False
    if is_file:
        config, text = _config_and_text(name_or_file, ())
        overrides: Sequence[str] = ()
    else:
        text, overrides = sweep_source(tracking_uri, str(name_or_file))
        config = load_text(text, overrides)
    return _submit(config, text, "resume", overrides, tracking_uri, progress, observer=observer, address=address,
                   retry_failed=retry_failed, stale_seconds=stale_after)


def _submit(config: SweepConfig, text: str, command: str, overrides, tracking_uri, progress, *, observer=None,
            **options) -> SweepRun:
    from ledger.tracking import resolve_tracking_uri
    from sweeper.app.progress import Progress
    from sweeper.app.service import run_sweep

    began = time.monotonic()
    if observer is None and progress:
        observer = Progress()
    result = run_sweep(config, text, command=command, observer=observer, tracking_uri=tracking_uri,
                       overrides=overrides, **options)
    uri = resolve_tracking_uri(tracking_uri or config.mlflow.tracking_uri)
    return SweepRun(config, result, uri, time.monotonic() - began)


def status(name: str, tracking_uri: Optional[str] = None, top: int = 5, stale_after: Optional[float] = None):
    """The sweep's state as data: a :class:`~sweeper.app.status.SweepStatus`."""
    from sweeper.app.status import sweep_status

    return sweep_status(name, tracking_uri, top, stale_after)


def plan(sweep: SweepLike, *, overrides: Sequence[str] = (), tracking_uri: Optional[str] = None,
         cpus: Optional[int] = None):
    """``(plan, failed_before)``: what ``run`` would train, against what the ledger holds; writes nothing."""
    from sweeper.app.service import plan_sweep

    config, _ = _config_and_text(sweep, overrides)
    return plan_sweep(config, tracking_uri, cpus)


__all__ = ["SweepRun", "load_config", "plan", "resume", "run", "status"]
