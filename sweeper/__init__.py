"""Hyperparameter sweeps of the NumPy CNN declared in YAML.

The Python API (:mod:`sweeper.api`): ``sweeper.load_config``, ``sweeper.run``, ``sweeper.resume``,
``sweeper.status`` (``sweeper.api.plan``: ``sweeper.plan`` is the planning room). The rooms, in the
order the data flows:

* :mod:`sweeper.spec`: the YAML file to a validated :class:`SweepConfig`;
* :mod:`sweeper.plan`: points, hashes, trials and their cost;
* :mod:`sweeper.trials`: the Ray executor, the relay between trials and the driver, one trial, ASHA;
* :mod:`sweeper.app`: the command line, the sweep commands' logic, live progress, ``sweeper train``.

What a sweep records goes through :mod:`ledger`, the only package that writes MLflow.

Importing the package is cheap, and so is importing one module of it: the names below load on
first use (a Ray worker imports ``sweeper.trials.relay`` and must not pay for pydantic's models).
"""
import importlib

_EXPORTS = {"load_config": "api", "run": "api", "resume": "api", "status": "api", "SweepRun": "api",
            "SweepConfig": "spec.config", "load_sweep": "spec.config", "Plan": "plan.points",
            "Point": "plan.points", "Trial": "plan.points", "make_plan": "plan.points",
            "Problem": "spec.yamlsource", "SweepFileError": "spec.yamlsource"}

__all__ = list(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
