"""Sweeps: a grid over one scenario parameter, replicated, as a tidy DataFrame.

Replication ``r`` runs with seed ``derive_seed(seed, r)`` at *every* value of the parameter and in
every style: common random numbers across values and styles, so a curve's shape is the
parameter's doing, not the draws'. Each (value, replication, style) is one row.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..checks import OUTCOMES
from ..run import resolve_scenario, simulate
from ..scenario import Problem, Scenario, ScenarioError, parse_faults
from ..styles import STYLES
from ._common import (
    ExecutorLike,
    Progress,
    check_int,
    check_styles,
    derive_seed,
    executor_for,
    ordered_map,
)
from .params import set_param

__all__ = ["SWEEP_METRICS", "summarize_sweep", "sweep"]

SWEEP_METRICS: dict[str, str] = {
    "completed": "share of sagas completed",
    "compensated": "share of sagas compensated",
    "inconsistent": "share of sagas inconsistent",
    "stalled": "share of sagas stalled",
    "latency_mean": "mean latency of finished sagas (start request to declared end), s",
    "latency_p50": "median latency of finished sagas, s",
    "latency_p95": "95th percentile latency of finished sagas, s",
    "messages_per_saga": "messages sent per saga",
    "compensations_per_saga": "compensations per saga",
    "retries_per_saga": "retries per saga",
    "violations": "invariant violations in the run",
}
"""The metric columns of a sweep's frame."""


def _metrics(run: Any) -> tuple:
    s = run.sagas
    n = len(s)
    counts = s["outcome"].value_counts()
    lat = np.sort(s["latency"].dropna().to_numpy(dtype=np.float64))
    return (
        n,
        *(int(counts.get(o, 0)) / n for o in OUTCOMES),
        float(lat.mean()) if lat.size else math.nan,
        float(np.quantile(lat, 0.5)) if lat.size else math.nan,
        float(np.quantile(lat, 0.95)) if lat.size else math.nan,
        float(s["messages"].sum()) / n,
        float(s["compensations"].sum()) / n,
        float(s["retries"].sum()) / n,
        len(run.violations),
    )


def _block(
    sc: Scenario,
    vi: int,
    reps: Sequence[int],
    styles: tuple[str, ...],
    faults: tuple,
    seed: int,
    sagas: int | None,
    horizon: float | None,
) -> list[tuple]:
    rows = []
    for r in reps:
        rseed = derive_seed(seed, r)
        for st in styles:
            run = simulate(sc, st, faults, rseed, sagas, horizon)
            rows.append((vi, r, rseed, st, *_metrics(run)))
            run.release_trace()
    return rows


def sweep(
    scenario: Scenario | str,
    param: str,
    values: Iterable[Any],
    replications: int = 10,
    seed: int = 0,
    executor: ExecutorLike = None,
    progress: Progress | None = None,
    styles: Any = STYLES,
    faults: Any = None,
    sagas: int | None = None,
    horizon: float | None = None,
    workers: int | None = None,
) -> pd.DataFrame:
    """Run the scenario at each value of one parameter, ``replications`` times per style.

    Args:
        scenario: a ``Scenario`` or the path of a scenario file.
        param: a dotted path: ``network.loss``, ``policy.timeout``, ``steps[2].duration.mean``
            (see ``saga_sim.experiments.params``).
        values: the values to try, in order.
        replications: runs per (value, style); replication ``r`` uses seed
            ``derive_seed(seed, r)`` at every value and in every style.
        seed: the base seed.
        executor: ``None``/``"auto"`` (a process pool when there are 200 or more runs),
            ``"serial"``, ``"process"``, or any ``concurrent.futures.Executor``; the frame is the
            same whichever.
        progress: ``progress(done, total)`` runs, in the caller's process.
        styles: the styles to run (default both).
        faults: faults added to every run (as for ``simulate``).
        sagas: sagas per run (default: the scenario's workload).
        horizon: simulated seconds per run.
        workers: processes of a pool made here (default: CPUs).

    Returns:
        A tidy DataFrame, one row per (value, replication, style), in that order: ``param``,
        ``value``, ``replication``, ``seed``, ``style``, ``sagas``, then ``SWEEP_METRICS``
        (outcome shares, latency mean/p50/p95, messages/compensations/retries per saga,
        violations).

    Raises:
        ScenarioError: the path names no parameter (with the closest one), a value is invalid
            there (with the field path), or another argument is invalid.
    """
    sc = resolve_scenario(scenario)
    styles = check_styles(styles)
    values = list(values)
    if not values:
        raise ScenarioError([Problem("arguments", "values", "give at least one value")])
    replications = check_int("replications", replications, 1, 1_000_000)
    seed = check_int("seed", seed, 0, 2**63 - 1)
    scenarios = [set_param(sc, param, v) for v in values]  # fails early, naming the path
    extra = tuple(parse_faults(faults, sc)) if faults is not None else ()
    per_run = sagas if sagas is not None else sc.workload.sagas
    # Blocks of replications of about 200 sagas each: cheap to ship, enough to balance.
    size = max(1, min(replications, 200 // max(per_run * len(styles), 1)))
    tasks = [
        (
            scenarios[vi],
            vi,
            range(r0, min(r0 + size, replications)),
            styles,
            extra,
            seed,
            sagas,
            horizon,
        )
        for vi in range(len(values))
        for r0 in range(0, replications, size)
    ]
    total = len(values) * replications * len(styles)
    rows: list[tuple] = []
    big = total >= 200
    with executor_for(executor, big, workers) as ex:
        for _i, part in ordered_map(_block, tasks, ex):
            rows += part
            if progress is not None:
                progress(len(rows), total)
    cols = ["value_index", "replication", "seed", "style", "sagas", *SWEEP_METRICS]
    df = pd.DataFrame(rows, columns=cols)
    df.insert(0, "param", param)
    df.insert(1, "value", pd.Series([values[i] for i in df["value_index"]], dtype=object))
    df = df.drop(columns="value_index")
    numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if len(numbers) == len(values):
        ints = all(isinstance(v, int) for v in values)
        df["value"] = df["value"].astype("int64" if ints else "float64")
    df.attrs.update(scenario=sc.name, param=param, seed=seed)
    return df


def summarize_sweep(df: pd.DataFrame, metric: str = "completed", z: float = 1.96) -> pd.DataFrame:
    """Mean and normal confidence band of one metric per (value, style) over replications.

    Returns:
        Columns ``value``, ``style``, ``mean``, ``low``, ``high``, ``n``.
    """
    if metric not in df.columns:
        raise KeyError(f"no metric {metric!r}; known: {', '.join(SWEEP_METRICS)}")
    g = df.groupby(["value", "style"], sort=False)[metric]
    out = g.agg(mean="mean", sd="std", n="count").reset_index()
    half = z * out["sd"].fillna(0.0) / np.sqrt(out["n"])
    out["low"] = out["mean"] - half
    out["high"] = out["mean"] + half
    return out[["value", "style", "mean", "low", "high", "n"]]
