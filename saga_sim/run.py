"""Running a scenario: ``simulate`` one style, ``compare`` both, and what a run returns.

A ``Run`` is a value: the scenario, the faults, the seed and the horizon decide it completely.
Its ``events`` and ``sagas`` DataFrames are the trace that every figure, table and check uses.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import pandas as pd

from .checks import INVARIANTS, OUTCOMES, Violation, judge
from .faults import describe_fault
from .scenario import Problem, Scenario, ScenarioError, load_scenario, parse_faults
from .styles import BUILDERS, STYLES
from .trace import events_frame
from .world import World

__all__ = [
    "Budget",
    "Comparison",
    "Divergence",
    "Run",
    "compare",
    "resolve_scenario",
    "simulate",
]


@dataclass(frozen=True)
class Budget:
    """The most work one run may do; past any bound it stops, ``Run.stopped`` says why, and the
    sagas still running end ``stalled``. ``None``: no bound.

    Attributes:
        events: simulation events processed (checked every 1,024 events).
        rows: trace rows recorded (a run's memory is mostly its rows, ~0.4 KB each).
        seconds: computing (wall-clock) seconds.
    """

    events: int | None = None
    rows: int | None = None
    seconds: float | None = None


SAGA_COLUMNS: tuple[str, ...] = (
    "saga",
    "style",
    "start",
    "end",
    "latency",
    "settled",
    "outcome",
    "believed",
    "declared_by",
    "messages",
    "compensations",
    "retries",
    "timeouts",
    "violations",
    "committed",
    "started",
)


def _quantile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return math.nan
    k = (len(sorted_values) - 1) * q
    lo = math.floor(k)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)


class Run:
    """The result of simulating one style: trace, per-saga outcomes, metrics and violations."""

    def __init__(
        self,
        scenario: Scenario,
        style: str,
        faults: tuple,
        seed: int,
        world: World,
        outcomes: dict[int, str],
        violations: list[Violation],
    ):
        self.scenario = scenario
        self.style = style
        self.faults = faults
        self.seed = seed
        self.horizon = world.horizon
        self.n_sagas = world.n_sagas
        self.notes: tuple[str, ...] = tuple(world.notes)
        self.stopped: str | None = world.stopped
        """Why the run ended before its horizon (a zero-time loop, a spent budget), or None."""
        self.violations: tuple[Violation, ...] = tuple(violations)
        self.work: dict[str, int] = world.work()
        """Work counted while running: ``events`` scheduled, deadline ``timer_wakeups``, trace
        ``rows`` (see ``World.work``)."""
        self._rows = world.tracer.rows
        self._journal = sorted(
            (e for s in world.services.values() for e in s.journal), key=lambda e: e[1]
        )
        self.sagas = self._sagas_frame(world, outcomes)

    def release_trace(self) -> None:
        """Free the trace's rows now (experiments that keep only aggregates call this).

        The finished world still points at the same list, and a world is a web of reference
        cycles that waits for a full garbage-collection pass; emptying the list frees the rows,
        most of a run's memory, at once (a 60,000-saga Monte Carlo peaks at 167 MiB, not 214).
        """
        self._rows.clear()

    # --- frames ----------------------------------------------------------------------------

    @cached_property
    def events(self) -> pd.DataFrame:
        """One row per event, in the order they happened (index: ``seq``)."""
        return events_frame(self._rows, self.style)

    @property
    def effects(self) -> list[tuple[float, int, int, str, str, str]]:
        """The services' journals merged: (time, seq, saga, step, op, service), by seq."""
        names = [s.name for s in self.scenario.steps]
        return [(t, seq, saga, names[i], op, svc) for t, seq, saga, i, op, svc in self._journal]

    def _sagas_frame(self, world: World, outcomes: dict[int, str]) -> pd.DataFrame:
        n = world.n_sagas
        messages, retries, timeouts, started = (
            world.sent,
            world.retries,
            world.timeouts,
            world.started,
        )
        comps = [0] * (n + 1)
        last = [math.nan] * (n + 1)
        live = [0] * (n + 1)  # per saga, a bit per step whose effect is in place
        for t, _seq, saga, i, op, _svc in self._journal:
            last[saga] = t
            if op == "comp":
                comps[saga] += 1
                live[saga] &= ~(1 << i)
            elif op == "commit":
                live[saga] |= 1 << i
        nviol = [0] * (n + 1)
        for v in self.violations:
            nviol[v.saga] += 1
        rows = []
        for saga in range(1, n + 1):
            start = world.arrivals[saga - 1]
            outcome = outcomes[saga]
            # latency: from the start request to the declared end (by the coordinator, or the
            # participant that finished last); settled: to the last change of the stores
            believed, declared_at, by = world.declared.get(saga, ("", math.nan, ""))
            end = declared_at if outcome != "stalled" else math.nan
            settled = last[saga] - start if outcome != "stalled" else math.nan
            rows.append(
                (
                    saga,
                    self.style,
                    start,
                    end,
                    end - start,
                    settled,
                    outcome,
                    believed,
                    by,
                    messages[saga],
                    comps[saga],
                    retries[saga],
                    timeouts[saga],
                    nviol[saga],
                    live[saga].bit_count(),
                    started[saga],
                )
            )
        df = pd.DataFrame(rows, columns=list(SAGA_COLUMNS))
        df["outcome"] = pd.Categorical(df["outcome"], categories=list(OUTCOMES))
        return df

    # --- summaries --------------------------------------------------------------------------

    @cached_property
    def metrics(self) -> dict[str, Any]:
        """Outcome counts, messages, latency mean/p50/p95 (finished sagas: from the start request
        to the declared end), compensations, retries, timeouts and violations."""
        s = self.sagas
        counts = {o: int((s["outcome"] == o).sum()) for o in OUTCOMES}
        lat = sorted(float(x) for x in s["latency"] if not math.isnan(x))
        by_inv = {name: 0 for name in INVARIANTS}
        for v in self.violations:
            by_inv[v.invariant] += 1
        return {
            "sagas": len(s),
            "outcomes": counts,
            "messages": int(s["messages"].sum()),
            "messages_per_saga": float(s["messages"].mean()),
            "latency_mean": sum(lat) / len(lat) if lat else math.nan,
            "latency_p50": _quantile(lat, 0.5),
            "latency_p95": _quantile(lat, 0.95),
            "compensations": int(s["compensations"].sum()),
            "retries": int(s["retries"].sum()),
            "timeouts": int(s["timeouts"].sum()),
            "violations": len(self.violations),
            "violations_by_invariant": {k: v for k, v in by_inv.items() if v},
        }

    @property
    def outcome(self) -> str:
        """The outcome of saga 1 (handy for one-saga runs)."""
        return str(self.sagas["outcome"].iloc[0])

    def violations_frame(self) -> pd.DataFrame:
        """The violations as a DataFrame: invariant, saga, step, rows, message, explanation."""
        return pd.DataFrame(
            [
                (v.invariant, v.saga, v.step, list(v.rows), v.message, v.explanation)
                for v in self.violations
            ],
            columns=["invariant", "saga", "step", "rows", "message", "explanation"],
        )

    def summary(self) -> dict[str, Any]:
        """A JSON-ready summary (the CLI's ``--json`` per style)."""
        m = self.metrics

        def num(x: float) -> float | None:
            return None if math.isnan(x) else round(x, 6)

        return {
            "sagas": m["sagas"],
            "outcomes": m["outcomes"],
            "messages": m["messages"],
            "latency": {
                "mean": num(m["latency_mean"]),
                "p50": num(m["latency_p50"]),
                "p95": num(m["latency_p95"]),
            },
            "compensations": m["compensations"],
            "retries": m["retries"],
            "timeouts": m["timeouts"],
            "violations": [
                {
                    "invariant": v.invariant,
                    "saga": v.saga,
                    "step": v.step,
                    "rows": list(v.rows),
                    "message": v.message,
                }
                for v in self.violations
            ],
            "notes": list(self.notes),
        }

    def __repr__(self) -> str:
        o = ", ".join(f"{k} {v}" for k, v in self.metrics["outcomes"].items() if v)
        return f"<Run {self.scenario.name} {self.style} seed={self.seed}: {o}>"


def resolve_scenario(scenario: Scenario | str | os.PathLike[str]) -> Scenario:
    """The scenario itself, or the one loaded from a path (what every entry point accepts).

    Raises:
        ScenarioError: the file cannot be read or is not a valid scenario.
        TypeError: ``scenario`` is neither a ``Scenario`` nor a path.
    """
    if isinstance(scenario, Scenario):
        return scenario
    if isinstance(scenario, (str, os.PathLike)):
        return load_scenario(scenario)
    raise TypeError(f"scenario must be a Scenario or a path, not {type(scenario).__name__}")


def _check_args(style: str, seed: int, sagas: int | None, horizon: float | None) -> None:
    problems = []
    if style not in STYLES:
        problems.append(
            Problem(
                "arguments",
                "style",
                f"unknown style {style!r}; expected one of: {', '.join(STYLES)}",
            )
        )
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        problems.append(
            Problem("arguments", "seed", f"must be a non-negative integer (got {seed!r})")
        )
    if sagas is not None and (not isinstance(sagas, int) or not 1 <= sagas <= 1_000_000):
        problems.append(
            Problem("arguments", "sagas", f"must be an integer from 1 to 1000000 (got {sagas!r})")
        )
    if horizon is not None and (not isinstance(horizon, (int, float)) or not 0 < horizon <= 1e7):
        problems.append(
            Problem(
                "arguments", "horizon", f"must be a number of seconds in (0, 1e7] (got {horizon!r})"
            )
        )
    if problems:
        raise ScenarioError(problems)


def simulate(
    scenario: Scenario | str | os.PathLike[str],
    style: str = "orchestration",
    faults: Iterable[Any] | str | None = None,
    seed: int = 0,
    sagas: int | None = None,
    horizon: float | None = None,
    participants: Mapping[str, Any] | None = None,
    budget: Budget | None = None,
) -> Run:
    """Simulate one style of a scenario.

    Args:
        scenario: a ``Scenario`` or the path of a scenario file.
        style: ``"orchestration"`` or ``"choreography"``.
        faults: faults added to the scenario's own ``faults:`` (fault objects, mappings, or YAML
            flow-mapping strings).
        seed: the run's seed; equal inputs give an equal trace, to the row.
        sagas: how many sagas start (default: the scenario's ``workload.sagas``).
        horizon: simulated seconds to run (default: the scenario's ``horizon``, else 60 s after
            the last saga starts).
        participants: behaviour plugged into steps, by step name: objects with an
            ``action(request, db)`` and/or ``compensation(request, db)`` method that decide, at
            the commit point, what the step's local transaction does (see
            ``saga_sim.coursework.Participant``). They take over that step's built-in
            deduplication, barrier and null compensation.
        budget: the most work the run may do (events, trace rows, seconds); past it the run
            stops and ``Run.stopped`` says why. Whatever the budget, a zero-time loop (more
            events at one instant than the scenario can legitimately make) stops the run.

    Returns:
        The finished ``Run``.

    Raises:
        ScenarioError: the scenario, a fault or an argument is invalid (every problem listed).
    """
    sc = resolve_scenario(scenario)
    _check_args(style, seed, sagas, horizon)
    if participants:
        names = [s.name for s in sc.steps]
        bad = [k for k in participants if k not in names]
        if bad:
            known = ", ".join(names)
            raise ScenarioError(
                Problem("arguments", f"participants.{k}", f"unknown step; known: {known}")
                for k in bad
            )
    extra = parse_faults(faults, sc) if faults is not None else ()
    all_faults = tuple(sc.faults) + tuple(extra)
    n = sagas if sagas is not None else sc.workload.sagas

    def beyond(f: Any) -> bool:
        return isinstance(getattr(f, "saga", "all"), int) and f.saga > n

    problems = [
        Problem("faults", f"[{i}].saga", f"saga {f.saga} does not exist: this run starts {n}")
        for i, f in enumerate(extra)
        if beyond(f)
    ]
    if problems:
        raise ScenarioError(problems)
    notes = [
        f"scenario fault '{describe_fault(f)}' does not apply: this run starts {n} saga(s)"
        for f in sc.faults
        if beyond(f)
    ]
    if budget is not None and not isinstance(budget, Budget):
        raise TypeError(f"budget must be a Budget, not {type(budget).__name__}")
    world = World(
        sc,
        all_faults,
        seed,
        sagas=sagas,
        horizon=horizon,
        participants=participants,
        budget=budget,
    )
    world.notes.extend(notes)
    coordinator = BUILDERS[style](world)
    coordinator.run()
    entries = [e for s in world.services.values() for e in s.journal]
    outcomes, violations = judge(entries, sc.steps, world.n_sagas, world.declared, world.data_log)
    return Run(sc, style, all_faults, seed, world, outcomes, violations)


@dataclass(frozen=True)
class Divergence:
    """Where the two styles' effects first differ."""

    time: float
    saga: int
    orchestration: str
    choreography: str

    def sentence(self) -> str:
        """The divergence in one sentence."""
        return (
            f"At {self.time:.3f} s (saga {self.saga}) the styles first differ in effects: "
            f"orchestration {self.orchestration}; choreography {self.choreography}."
        )


_OP_WORDS = {
    "commit": "commits {step}",
    "abort": "aborts {step}",
    "comp": "compensates {step}",
    "comp_null": "records a null compensation of {step}",
    "comp_fail": "fails to compensate {step}",
    "refused": "refuses a late {step}",
}


def _first_divergence(a: Run, b: Run) -> Divergence | None:
    per_a: dict[int, list] = {}
    per_b: dict[int, list] = {}
    for e in a.effects:
        per_a.setdefault(e[2], []).append(e)
    for e in b.effects:
        per_b.setdefault(e[2], []).append(e)
    best: Divergence | None = None
    for saga in range(1, max(a.n_sagas, b.n_sagas) + 1):
        ea, eb = per_a.get(saga, []), per_b.get(saga, [])
        for k in range(max(len(ea), len(eb))):
            x = ea[k] if k < len(ea) else None
            y = eb[k] if k < len(eb) else None
            if x is not None and y is not None and (x[3], x[4]) == (y[3], y[4]):
                continue
            t = min(e[0] for e in (x, y) if e is not None)
            if best is None or t < best.time:

                def word(e: tuple | None) -> str:
                    if e is None:
                        return "has no further effect"
                    return _OP_WORDS[e[4]].format(step=e[3]) + f" at {e[0]:.3f} s"

                best = Divergence(t, saga, word(x), word(y))
            break
    return best


@dataclass(frozen=True)
class Comparison:
    """Both styles run on the same scenario, faults and seed."""

    orchestration: Run
    choreography: Run
    divergence: Divergence | None

    @property
    def runs(self) -> dict[str, Run]:
        """The two runs by style name."""
        return {"orchestration": self.orchestration, "choreography": self.choreography}

    @property
    def metrics(self) -> pd.DataFrame:
        """A metrics table: one row per metric, one column per style."""
        rows: dict[str, dict[str, Any]] = {}
        for style, run in self.runs.items():
            m = run.metrics
            col = {f"{o}": m["outcomes"][o] for o in OUTCOMES}
            col.update(
                {
                    k: m[k]
                    for k in (
                        "messages",
                        "messages_per_saga",
                        "latency_mean",
                        "latency_p50",
                        "latency_p95",
                        "compensations",
                        "retries",
                        "timeouts",
                        "violations",
                    )
                }
            )
            rows[style] = col
        return pd.DataFrame(rows)

    @property
    def events(self) -> pd.DataFrame:
        """Both styles' events in one frame (a ``style`` column tells them apart)."""
        return pd.concat([self.orchestration.events, self.choreography.events])

    @property
    def sagas(self) -> pd.DataFrame:
        """Both styles' per-saga rows in one frame."""
        return pd.concat([self.orchestration.sagas, self.choreography.sagas], ignore_index=True)

    def sentence(self) -> str:
        """Where the two styles first diverge, in one sentence."""
        if self.divergence is None:
            return (
                "Both styles produced the same effects in the same order; only timing and "
                "messages differ."
            )
        return self.divergence.sentence()


def compare(
    scenario: Scenario | str | os.PathLike[str],
    faults: Iterable[Any] | str | None = None,
    seed: int = 0,
    sagas: int | None = None,
    horizon: float | None = None,
    budget: Budget | None = None,
) -> Comparison:
    """Run both styles on the same scenario, faults and seed (common random numbers).

    Each style gets the whole ``budget``.

    Returns:
        A ``Comparison``: both runs, a metrics table, and where their effects first differ.
    """
    sc = resolve_scenario(scenario)
    extra = parse_faults(faults, sc) if faults is not None else ()
    orch = simulate(sc, "orchestration", extra, seed, sagas, horizon, budget=budget)
    chor = simulate(sc, "choreography", extra, seed, sagas, horizon, budget=budget)
    return Comparison(orch, chor, _first_divergence(orch, chor))
