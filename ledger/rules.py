"""The one rule for which run decides a trial ``(point, repeat)``.

A trial can have several runs: retries after a lost driver, a resume, or two submissions that
both trained it. The run that *decides* it is its earliest-started FINISHED run, ties broken by
the smaller run id. Every command applies this rule, so they all agree: the plan counts the trial
done, the duplicate settlement keeps that run and marks later FINISHED ones KILLED, ``status`` and
the report read their numbers from it. A trial with no FINISHED run is decided by its latest run
(the state ``status`` shows).

The same rule is written for MLflow ``Run`` objects (:func:`deciding_runs`) and for the run frame
of :func:`ledger.frame.runs_frame` (:func:`deciding_rows`); :func:`order` is their common sort key.
"""
from __future__ import annotations

from .schema import POINT, REPEAT


def key(run) -> tuple[str, int]:
    """``(point hash, repeat)`` of a child run."""
    return run.data.tags[POINT], int(run.data.tags[REPEAT])


def order(start_time, run_id) -> tuple:
    """Sort key of runs of one trial: earlier start first, then the smaller run id."""
    return (start_time if start_time is not None else float("inf"), run_id)


def by_trial(runs) -> dict[tuple[str, int], list]:
    """Runs grouped per trial, each group in :func:`order`."""
    groups: dict[tuple[str, int], list] = {}
    for run in runs:
        groups.setdefault(key(run), []).append(run)
    for group in groups.values():
        group.sort(key=lambda r: order(r.info.start_time, r.info.run_id))
    return groups


def deciding_runs(runs) -> dict[tuple[str, int], object]:
    """``key -> run`` deciding each trial that has a FINISHED run among ``runs``."""
    out = {}
    for k, group in by_trial(runs).items():
        finished = [r for r in group if r.info.status == "FINISHED"]
        if finished:
            out[k] = finished[0]
    return out


def current_runs(runs) -> dict[tuple[str, int], object]:
    """``key -> run`` showing each trial's state: the deciding run, else the latest run."""
    out = {}
    for k, group in by_trial(runs).items():
        finished = [r for r in group if r.info.status == "FINISHED"]
        out[k] = finished[0] if finished else group[-1]
    return out


def deciding_rows(frame):
    """The rows of a run frame that decide their trial: one per ``(point, repeat)`` with a
    FINISHED, non-duplicate run; same columns as ``frame``."""
    done = frame[frame["status"] == "FINISHED"]
    if "duplicate" in done.columns:
        done = done[~done["duplicate"].astype(bool)]
    return done.sort_values(["start_time", "run_id"], na_position="last").drop_duplicates(["point", "repeat"],
                                                                                           keep="first")
