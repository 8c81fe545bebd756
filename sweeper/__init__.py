"""Hyperparameter sweeps of the NumPy CNN declared in YAML: validation, planning, the CLI.

Importing the package is cheap: Ray and MLflow are only imported by the modules that run sweeps.
"""
from .config import SweepConfig, load_sweep
from .plan import Plan, Point, Trial, make_plan
from .yamlsource import Problem, SweepFileError

__all__ = ["SweepConfig", "load_sweep", "Plan", "Point", "Trial", "make_plan", "Problem", "SweepFileError"]
