"""Shared machinery of the experiments: derived seeds, fault dicts, run summaries, executors.

Every experiment is split into work units (a chunk of Monte Carlo sagas, a block of sweep
replications, a few fault-matrix cells) that are pure functions of their arguments: a unit's
result depends on its seed and inputs, never on which process ran it or when. Units go through
any ``concurrent.futures.Executor``; their results are combined in unit order, so a serial run,
a process pool and a Dask cluster give identical results.
"""

from __future__ import annotations

import concurrent.futures as cf
import math
import multiprocessing
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import yaml

from ..checks import OUTCOMES
from ..scenario import Problem, ScenarioError
from ..styles import STYLES

__all__ = [
    "ExecutorLike",
    "Progress",
    "check_int",
    "check_styles",
    "derive_seed",
    "fault_dict",
    "faults_yaml",
    "run_cell",
    "wilson",
]

_MASK = (1 << 64) - 1

Progress = Callable[[int, int], Any]
"""A progress callback: ``progress(done, total)``, called in the caller's process."""

ExecutorLike = cf.Executor | str | None
"""``None`` or ``"auto"`` (serial for small jobs, a process pool for big ones), ``"serial"``,
``"process"``, or any ``concurrent.futures.Executor`` (for example ``client.get_executor()``
of a ``dask.distributed.Client``).

A pool made here forks a single-threaded caller (fast) and uses a fork server, which imports
``saga_sim`` once, from a threaded one (Streamlit, Jupyter), where forking is unsafe. As with any
multiprocessing outside fork, a *script* that starts threads must guard its entry point with
``if __name__ == "__main__":``."""

SEVERITY = {"completed": 0, "compensated": 1, "stalled": 2, "inconsistent": 3}
"""Outcome severity, used to summarise several sagas by their worst outcome."""


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


def derive_seed(base: int, *keys: int) -> int:
    """A seed derived from a base seed and integer keys (a replication, a chunk, a purpose).

    Pure integer mixing (splitmix64), no ``hash()``: the same inputs give the same seed on every
    machine, whatever ``PYTHONHASHSEED``, and whichever process computes it. The result is a
    non-negative integer below 2**63.
    """
    x = _splitmix64(base & _MASK)
    for k in keys:
        x = _splitmix64(x ^ _splitmix64(k & _MASK))
    return x >> 1


def wilson(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """The Wilson score interval for ``k`` successes in ``n`` trials (95 % by default)."""
    if n <= 0:
        return (math.nan, math.nan)
    p = k / n
    z2 = z * z
    denom = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
    # Clamped to [0, p] and [p, 1]: rounding must not exclude the share itself (k = 0 or n).
    return (min(max(0.0, centre - half), p), max(min(1.0, centre + half), p))


# --------------------------------------------------------------------------------------------
# Faults as plain data


def fault_dict(fault: Any) -> dict[str, Any]:
    """A fault model (or mapping) as a minimal mapping: its ``kind`` and non-default fields."""
    if isinstance(fault, dict):
        return dict(fault)
    data = fault.model_dump(by_alias=True, exclude_defaults=True, mode="json")
    return {"kind": fault.kind, **data}


def faults_yaml(faults: Iterable[Any], flow: bool = True) -> str:
    """Faults as YAML: a one-line flow list (``flow``), or a block list ready for ``faults:``."""
    items = [fault_dict(f) for f in faults]
    if flow:
        return yaml.safe_dump(
            items, default_flow_style=True, sort_keys=False, width=math.inf
        ).strip()
    return yaml.safe_dump(items, default_flow_style=None, sort_keys=False, width=100)


# --------------------------------------------------------------------------------------------
# One simulated cell, summarised


def summarise_run(run: Any) -> dict[str, Any]:
    """A run reduced to the matrix's cell: worst outcome, violations, latency and messages."""
    s = run.sagas
    outcomes = [str(o) for o in s["outcome"]]
    worst = max(outcomes, key=SEVERITY.__getitem__) if outcomes else "stalled"
    lat = [float(x) for x in s["latency"] if not math.isnan(x)]
    return {
        "outcome": worst,
        "outcomes": {o: outcomes.count(o) for o in OUTCOMES},
        "violations": [v.invariant for v in run.violations],
        "latency": sum(lat) / len(lat) if lat else math.nan,
        "messages": int(s["messages"].sum()),
        "compensations": int(s["compensations"].sum()),
        "retries": int(s["retries"].sum()),
        "timeouts": int(s["timeouts"].sum()),
    }


def run_cell(
    scenario: Any,
    style: str,
    faults: Sequence[dict[str, Any]],
    seed: int,
    sagas: int | None,
    horizon: float | None,
) -> dict[str, Any]:
    """Simulate one style with these faults and summarise it (``summarise_run``)."""
    from ..run import simulate

    return summarise_run(simulate(scenario, style, list(faults), seed, sagas, horizon))


# --------------------------------------------------------------------------------------------
# Executors


def check_executor(executor: Any) -> None:
    """Refuse anything that is not an executor or one of the names ``auto|serial|process``."""
    if executor is None or isinstance(executor, cf.Executor):
        return
    if isinstance(executor, str) and executor in ("auto", "serial", "process"):
        return
    raise ScenarioError(
        [
            Problem(
                "arguments",
                "executor",
                "must be a concurrent.futures.Executor, or one of 'auto', 'serial', 'process' "
                f"(got {executor!r})",
            )
        ]
    )


def _pool(workers: int | None) -> cf.Executor:
    n = workers or os.cpu_count() or 1
    methods = multiprocessing.get_all_start_methods()
    if threading.active_count() == 1 and "fork" in methods:
        # A single-threaded caller (a script, the CLI): fork is fast and safe.
        ctx = multiprocessing.get_context("fork")
    elif "forkserver" in methods:
        # A threaded host (Streamlit, Jupyter, Dask): forking it is unsafe; the fork server
        # imports saga_sim once, so each worker still starts fast.
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["saga_sim"])
    else:  # pragma: no cover - platforms without fork
        ctx = multiprocessing.get_context("spawn")
    return cf.ProcessPoolExecutor(max_workers=n, mp_context=ctx)


@contextmanager
def executor_for(executor: ExecutorLike, big: bool, workers: int | None = None) -> Iterator[Any]:
    """The executor to use: ``None`` for serial, else an Executor (a pool made here is closed
    when the block ends; a caller's executor is left open)."""
    check_executor(executor)
    if isinstance(executor, cf.Executor):
        yield executor
        return
    if executor == "serial" or ((executor in (None, "auto")) and not big):
        yield None
        return
    pool = _pool(workers)
    try:
        yield pool
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def ordered_map(
    fn: Callable[..., Any],
    tasks: Sequence[tuple],
    executor: cf.Executor | None,
    max_in_flight: int = 32,
) -> Iterator[tuple[int, Any]]:
    """``(index, fn(*task))`` for every task, yielded in task order.

    Serial when ``executor`` is None. Otherwise at most ``max_in_flight`` tasks are submitted at
    once (bounded memory: results are consumed as they come), and results that arrive early wait
    for their predecessors, so the caller combines them in a fixed order.
    """
    if executor is None:
        for i, task in enumerate(tasks):
            yield i, fn(*task)
        return
    pending: dict[cf.Future, int] = {}
    ready: dict[int, Any] = {}
    nxt_submit = 0
    nxt_yield = 0
    n = len(tasks)
    try:
        while nxt_yield < n:
            while nxt_submit < n and len(pending) + len(ready) < max_in_flight:
                fut = executor.submit(fn, *tasks[nxt_submit])
                pending[fut] = nxt_submit
                nxt_submit += 1
            if nxt_yield not in ready:
                done, _ = cf.wait(list(pending), return_when=cf.FIRST_COMPLETED)
                for fut in done:
                    ready[pending.pop(fut)] = fut.result()
            while nxt_yield in ready:
                yield nxt_yield, ready.pop(nxt_yield)
                nxt_yield += 1
    finally:
        for fut in pending:
            fut.cancel()


def check_int(name: str, value: Any, low: int, high: int) -> int:
    """``value`` if it is an integer from ``low`` to ``high`` (not a bool).

    Raises:
        ScenarioError: naming the argument ``name`` and the allowed range.
    """
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ScenarioError(
            [Problem("arguments", name, f"must be an integer from {low} to {high} (got {value!r})")]
        )
    return value


def check_styles(styles: Any) -> tuple[str, ...]:
    """The styles an experiment runs: ``"both"``, one name, or a sequence of names.

    Raises:
        ScenarioError: an unknown style, or none at all (field ``styles``).
    """
    if isinstance(styles, str):
        styles = STYLES if styles == "both" else (styles,)
    styles = tuple(styles)
    bad = [s for s in styles if s not in STYLES]
    if bad or not styles:
        raise ScenarioError(
            [
                Problem(
                    "arguments",
                    "styles",
                    f"unknown style {bad[0]!r}; expected: {', '.join(STYLES)}"
                    if bad
                    else "name at least one style",
                )
            ]
        )
    return styles
