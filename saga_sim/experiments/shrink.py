"""Find and shrink: search random fault plans for one that breaks an invariant, then shrink it.

Plan ``j`` is drawn by a generator seeded with ``derive_seed(seed, j, 2)``, so the search is
reproducible and its answer (the first breaking plan, in plan order) does not depend on the
executor that ran it. The found plan is then shrunk greedily: a fault is removed whenever the
plan still breaks without it, until removing any single fault makes the run pass (a 1-minimal
plan). The result prints as YAML that ``simulate(..., faults=text)``, ``--fault`` or a
scenario's ``faults:`` read back.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import yaml

from ..checks import INVARIANTS, OUTCOMES
from ..faults import FAULT_KINDS
from ..run import Run, resolve_scenario, simulate
from ..scenario import Problem, Scenario, ScenarioError, parse_faults
from ..styles import STYLES
from ._common import (
    ExecutorLike,
    Progress,
    check_int,
    derive_seed,
    executor_for,
    fault_dict,
    ordered_map,
)

__all__ = ["Shrunk", "find_and_shrink", "random_plan"]


def _r(x: float) -> float:
    return round(x, 3)


def random_plan(
    sc: Scenario, style: str, rng: random.Random, max_faults: int, span: float
) -> list[dict[str, Any]]:
    """A random fault plan of 1 to ``max_faults`` faults (mappings), over ``span`` seconds."""
    steps = sc.steps
    undoable = [s.name for s in steps if s.undoable]
    services = list(sc.services)
    nodes = [*services, "coordinator" if style == "orchestration" else "broker"]
    timeout = sc.policy.timeout
    plan: list[dict[str, Any]] = []
    for _ in range(rng.randint(1, max_faults)):
        kind = rng.choice(FAULT_KINDS)
        at = _r(rng.uniform(0, span))
        down = _r(rng.uniform(0.1, 3.0) * timeout)
        if kind == "fail_compensation" and not undoable:
            kind = "fail_step"
        if kind == "fail_step":
            f = {"kind": kind, "step": rng.choice(steps).name}
            attempt = rng.choice([1, 1, 2])
            if attempt > 1:
                f["attempt"] = attempt
        elif kind == "fail_compensation":
            f = {"kind": kind, "step": rng.choice(undoable)}
            times = rng.choice([1, 2, None])
            if times is not None:
                f["times"] = times
        elif kind == "crash":
            f = {"kind": kind, "service": rng.choice(services), "at": at, "for": down}
        elif kind == "crash_coordinator":
            f = {"kind": kind, "at": at, "for": down}
        elif kind == "partition":
            a, b = rng.sample(nodes, 2)
            f = {"kind": kind, "between": [a, b], "at": at, "for": down}
        else:
            step = rng.choice(steps)
            f = {"kind": kind, "step": step.name, "leg": rng.choice(["request", "reply"])}
            if step.undoable and rng.random() < 0.4:
                f["compensation"] = True
            if kind == "delay":
                f["extra"] = _r(rng.uniform(0.5, 3.0) * timeout)
            count = rng.choice([1, 1, 2, 3])
            if count > 1 or kind == "delay":
                f["count"] = count
        plan.append(f)
    return plan


def _predicate(invariant: str | None, outcome: str | None) -> Callable[[Run], bool]:
    if invariant is not None:
        return lambda run: any(v.invariant == invariant for v in run.violations)
    if outcome is not None:
        return lambda run: bool((run.sagas["outcome"] == outcome).any())
    return lambda run: bool(run.violations)


@dataclass(frozen=True)
class _Search:
    scenario: Scenario
    style: str
    seed: int
    sagas: int | None
    horizon: float | None
    max_faults: int
    span: float
    invariant: str | None
    outcome: str | None

    def plan(self, j: int) -> list[dict[str, Any]]:
        rng = random.Random(derive_seed(self.seed, j, 2))
        return random_plan(self.scenario, self.style, rng, self.max_faults, self.span)

    def run(self, plan: list[dict[str, Any]]) -> Run:
        return simulate(self.scenario, self.style, plan, self.seed, self.sagas, self.horizon)

    def breaks(self, plan: list[dict[str, Any]]) -> bool:
        return _predicate(self.invariant, self.outcome)(self.run(plan))


def _try_block(search: _Search, first: int, last: int) -> int | None:
    for j in range(first, last):
        if search.breaks(search.plan(j)):
            return j
    return None


@dataclass(frozen=True)
class Shrunk:
    """A minimal fault plan that breaks the run: removing any one fault makes it pass.

    Attributes:
        scenario: the scenario searched. style, seed, sagas, horizon: of every run.
        faults: the shrunk plan (fault mappings).
        found: the plan the search found, before shrinking.
        tries: how many plans were tried to find it.
        run: the run of the shrunk plan (its ``violations`` say what broke).
        target: what "breaks" meant (``any violation``, ``invariant X``, ``outcome Y``).
    """

    scenario: Scenario
    style: str
    seed: int
    sagas: int | None
    horizon: float | None
    faults: tuple[dict[str, Any], ...]
    found: tuple[dict[str, Any], ...]
    tries: int
    run: Run
    target: str

    @property
    def violations(self) -> tuple:
        """The shrunk run's violations."""
        return self.run.violations

    def to_yaml(self) -> str:
        """The plan as a YAML list, with a header saying how to replay it."""
        sagas = f", sagas={self.sagas}" if self.sagas is not None else ""
        what = sorted({v.invariant for v in self.run.violations}) or [self.target]
        head = (
            f"# {len(self.faults)} fault(s) that break {self.scenario.name} "
            f"({self.style}, seed {self.seed}{sagas}): {', '.join(what)}\n"
            f"# shrunk from plan no. {self.tries} tried ({len(self.found)} fault(s)); "
            "removing any one fault makes the run pass.\n"
            f"# replay: saga_sim.simulate(scenario, {self.style!r}, faults=<this text>, "
            f"seed={self.seed}{sagas})\n"
        )
        body = yaml.safe_dump(list(self.faults), default_flow_style=None, sort_keys=False)
        return head + body

    def scenario_yaml(self) -> str:
        """The whole scenario with the plan added to its ``faults:``, ready for
        ``load_scenario``."""
        sc = self.scenario
        faults = [fault_dict(f) for f in sc.faults] + list(self.faults)
        data = sc.model_dump(mode="json", by_alias=True, exclude_none=True)
        data["faults"] = faults
        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)

    def __str__(self) -> str:
        return self.to_yaml()


def find_and_shrink(
    scenario: Scenario | str,
    style: str = "orchestration",
    seed: int = 0,
    tries: int = 500,
    max_faults: int = 4,
    invariant: str | None = None,
    outcome: str | None = None,
    sagas: int | None = None,
    horizon: float | None = None,
    executor: ExecutorLike = None,
    progress: Progress | None = None,
) -> Shrunk | None:
    """Search random fault plans for one that breaks the run, and shrink it to a minimal one.

    Args:
        scenario: a ``Scenario`` or the path of a scenario file (its own faults stay in every
            run; only the added faults are searched and shrunk).
        style: the style to break.
        seed: the seed of every run, and of the search.
        tries: how many random plans to try at most.
        max_faults: the largest plan drawn.
        invariant: break this invariant (a name in ``INVARIANTS``); default: any violation.
        outcome: instead, reach this outcome (``stalled``, ...) in some saga.
        sagas: sagas per run (default: the scenario's workload).
        horizon: simulated seconds per run.
        executor: ``None``/``"serial"`` (default), ``"process"`` or any Executor: plans are
            tried in blocks; the answer is the first breaking plan in plan order either way.
        progress: ``progress(done, tries)`` plans tried.

    Returns:
        A ``Shrunk`` (print it for YAML), or ``None`` if no plan in ``tries`` broke the run.

    Raises:
        ScenarioError: an invalid scenario or argument.
    """
    sc = resolve_scenario(scenario)
    problems = []
    if style not in STYLES:
        problems.append(Problem("arguments", "style", f"unknown style {style!r}"))
    if invariant is not None and invariant not in INVARIANTS:
        problems.append(
            Problem(
                "arguments",
                "invariant",
                f"unknown invariant {invariant!r}; known: {', '.join(INVARIANTS)}",
            )
        )
    if outcome is not None and outcome not in OUTCOMES:
        problems.append(
            Problem(
                "arguments", "outcome", f"unknown outcome {outcome!r}; known: {', '.join(OUTCOMES)}"
            )
        )
    if problems:
        raise ScenarioError(problems)
    tries = check_int("tries", tries, 1, 10_000_000)
    max_faults = check_int("max_faults", max_faults, 1, 100)
    seed = check_int("seed", seed, 0, 2**63 - 1)
    target = (
        f"invariant {invariant}"
        if invariant
        else (f"outcome {outcome}" if outcome else "any invariant violation")
    )
    base = simulate(sc, style, [], seed, sagas, horizon)
    ends = base.sagas["end"].dropna()
    span = max(float(ends.max()) if len(ends) else 0.0, sc.policy.timeout) * 1.5
    search = _Search(sc, style, seed, sagas, horizon, max_faults, span, invariant, outcome)

    def result(found: list[dict[str, Any]], shrunk: list[dict[str, Any]], j: int) -> Shrunk:
        canon = [fault_dict(f) for f in parse_faults(shrunk, sc)] if shrunk else []
        return Shrunk(
            sc,
            style,
            seed,
            sagas,
            horizon,
            tuple(canon),
            tuple(found),
            j,
            search.run(shrunk),
            target,
        )

    if search.breaks([]):
        return result([], [], 0)
    hit: int | None = None
    block = 16
    tasks = [(search, a, min(a + block, tries)) for a in range(0, tries, block)]
    with executor_for(executor if executor is not None else "serial", big=False) as ex:
        for i, j in ordered_map(_try_block, tasks, ex, max_in_flight=8):
            if progress is not None:
                progress(tries if j is not None else min((i + 1) * block, tries), tries)
            if j is not None:
                hit = j
                break
    if hit is None:
        return None
    found = search.plan(hit)
    plan = list(found)
    shrinking = True
    while shrinking:
        shrinking = False
        for i in range(len(plan)):
            candidate = plan[:i] + plan[i + 1 :]
            if search.breaks(candidate):
                plan = candidate
                shrinking = True
                break
    return result(found, plan, hit + 1)
