"""What a trial tells its driver: one small typed record per event, in the order they happen.

A trial runs inside a Ray task that streams these records to the driver (:mod:`sweeper.trials.relay`);
the driver applies them to the trial's MLflow run (:mod:`sweeper.trials.stream`). Every trial ends
with exactly one :class:`Ended` or :class:`Crashed`.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Optional, Union

if TYPE_CHECKING:
    from sweeper.trials.trial import TrialOutcome


@dataclass(frozen=True)
class Started:
    """The worker took the trial: its host, pid and BLAS threads."""

    info: dict


@dataclass(frozen=True)
class Resumed:
    """The trial continues after ``epoch`` from the checkpoint of run ``from_run``."""

    from_run: Optional[str]
    epoch: int


@dataclass(frozen=True)
class Described:
    """The model and data the trial trains: params such as ``n_params`` and ``train_images``."""

    params: dict


@dataclass(frozen=True)
class EpochDone:
    """One epoch's metrics (``train_loss``, ``val_accuracy``, ..., ``seconds``); step = ``epoch``."""

    epoch: int
    metrics: dict
    # When the epoch ended (epoch ms): the metrics' timestamp, so that a batch written again (its
    # first write cut short by a signal or a lost answer) is the same rows, which MLflow stores once.
    at: int = field(default_factory=lambda: int(time.time() * 1000))


@dataclass(frozen=True)
class Checkpoint:
    """The model and optimizer after ``epoch``, as the bytes of a ``cnn.save_checkpoint`` file."""

    epoch: int
    data: bytes


@dataclass(frozen=True)
class Finished:
    """Training ended: final metrics and the run's files (name -> bytes)."""

    artifacts: dict
    metrics: dict
    stopped_early: bool


@dataclass(frozen=True)
class Failed:
    """The trial failed (``FAILED``, an error of its own) or was stopped (``KILLED``)."""

    status: str
    reason: str
    traceback: Optional[str] = None


@dataclass(frozen=True)
class Ended:
    """The last record of a trial that ran to an outcome."""

    outcome: "TrialOutcome"


@dataclass(frozen=True)
class Crashed:
    """The last record of a trial whose code raised outside its own error handling."""

    reason: str
    signature: str
    traceback: Optional[str] = None


Message = Union[Started, Resumed, Described, EpochDone, Checkpoint, Finished, Failed, Ended, Crashed]
#: Records after which a trial sends nothing more.
LAST = (Ended, Crashed)
