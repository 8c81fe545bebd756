"""Hyperparameter sweeps of the NumPy CNN declared in YAML: validation, planning, the CLI.

Importing the package is cheap, and so is importing one module of it: the names below load on
first use (a Ray worker imports ``sweeper.relay`` and must not pay for pydantic's models), and
Ray and MLflow are only imported by the modules that run sweeps.
"""
import importlib

_EXPORTS = {"SweepConfig": "config", "load_sweep": "config", "Plan": "plan", "Point": "plan", "Trial": "plan",
            "make_plan": "plan", "Problem": "yamlsource", "SweepFileError": "yamlsource"}

__all__ = list(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
