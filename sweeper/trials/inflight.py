"""The trials running on Ray: one streaming task each, read record by record (the driver's side).

Each trial is a Ray streaming-generator task (:func:`sweeper.trials.relay.stream_trial`) that yields
its records as it makes them; :meth:`Inflight.receive` takes the next one. A worker that died
(killed, out of memory, its node lost) shows as :class:`Lost`; a bug in the task itself as a
:class:`~sweeper.trials.messages.Crashed` record, since running it again would fail again.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from sweeper.trials import messages as m
from sweeper.trials.relay import stream_trial
from sweeper.exits import first_line


@dataclass(frozen=True)
class Lost:
    """The trial's worker or its node died, or Ray lost the task."""

    error: BaseException


class Inflight:
    """Ray tasks of the running trials, keyed by their generator, each with its :class:`TrialStream`."""

    def __init__(self, options: dict, coordinator=None, data_ref=None, remote=None):
        if remote is None:
            import ray

            remote = ray.remote(stream_trial)
        self.remote = remote
        self.options, self.coordinator, self.data_ref = options, coordinator, data_ref
        self.streams: dict = {}

    def __len__(self) -> int:
        return len(self.streams)

    def submit(self, stream) -> None:
        gen = self.remote.options(name=stream.task.run_name, **self.options).remote(
            stream.task, self.coordinator, self.data_ref)
        self.streams[gen] = stream

    def ready(self, timeout: float) -> list:
        """Generators with a record waiting: the first within ``timeout`` s, then all others already there."""
        import ray

        if not self.streams:
            return []
        ready, _ = ray.wait(list(self.streams), num_returns=1, timeout=timeout)
        if ready:
            ready, _ = ray.wait(list(self.streams), num_returns=len(self.streams), timeout=0)
        return ready

    def receive(self, gen, timeout: Optional[float] = None):
        """The next record of ``gen``'s trial, or :class:`Lost`."""
        import ray
        from ray.exceptions import RayTaskError

        try:
            return ray.get(next(gen), timeout=timeout)
        except StopIteration:
            return m.Crashed("the trial's task ended without an outcome", "NoOutcome")
        except RayTaskError as exc:  # a bug in the task itself: running it again would fail again
            return m.Crashed(f"{type(exc).__name__}: {first_line(exc)}", type(exc).__name__)
        except Exception as exc:  # noqa: BLE001 -- the worker or its node died, or Ray lost the task
            return Lost(exc)

    def pop(self, gen):
        return self.streams.pop(gen)

    def cancel(self, gen) -> None:
        import ray

        try:
            ray.cancel(gen, force=True)
        except Exception:  # noqa: BLE001 -- Ray may be the part that failed
            pass

    def cancel_all(self) -> list:
        """Cancel every task; returns their generators (their streams stay until popped)."""
        gens = list(self.streams)
        for gen in gens:
            self.cancel(gen)
        return gens

    def leftover(self, gen, timeout: float):
        """A record ``gen``'s cancelled task had sent already (a checkpoint, the outcome of a trial
        that just ended), or None: cancelled, ended, or nothing within ``timeout`` s."""
        import ray

        try:
            return ray.get(next(gen), timeout=timeout)
        except Exception:  # noqa: BLE001 -- StopIteration, cancelled, or lost: nothing more to record
            return None
