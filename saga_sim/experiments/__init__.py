"""Experiments over the simulation: fault matrix, Monte Carlo, parameter sweeps, find and shrink.

Each splits its work into units that are pure functions of their seeds and inputs, runs them
through any ``concurrent.futures.Executor`` (serial, a process pool, a Dask cluster's
``client.get_executor()``) and combines the results in unit order: the executor never changes
the result.

- ``fault_matrix``: every single fault at every point of the saga, in both styles.
- ``monte_carlo``: many sagas under random faults drawn from ``Rates``; outcome shares with
  Wilson intervals, latency ECDF, messages and compensations per saga; bounded memory.
- ``sweep``: a grid over one parameter by dotted path (``steps[2].duration.mean``), replicated.
- ``find_and_shrink``: a minimal fault plan that breaks an invariant, as replayable YAML.
"""

from ._common import derive_seed, wilson
from .matrix import FAULT_TYPES, MATRIX_COLUMNS, count_fault_points, fault_matrix, fault_points
from .montecarlo import MonteCarlo, Rates, draw_faults, monte_carlo
from .params import get_param, param_paths, set_param
from .shrink import Shrunk, find_and_shrink, random_plan
from .sweep import SWEEP_METRICS, summarize_sweep, sweep

__all__ = [
    "FAULT_TYPES",
    "MATRIX_COLUMNS",
    "SWEEP_METRICS",
    "MonteCarlo",
    "Rates",
    "Shrunk",
    "count_fault_points",
    "derive_seed",
    "draw_faults",
    "fault_matrix",
    "fault_points",
    "find_and_shrink",
    "get_param",
    "monte_carlo",
    "param_paths",
    "random_plan",
    "set_param",
    "summarize_sweep",
    "sweep",
    "wilson",
]
