"""The fault matrix: every single fault at every point of the saga, in both styles.

Points, for a scenario of ``n`` steps of which ``c`` are compensatable steps followed by a step
whose failure makes them compensate (the next step is not retriable):

- ``none``: the fault-free run, for reference;
- per step (``8 n``): a business failure (``fail_step``), a crash of its service before its
  commit and after it, its request lost, its reply (orchestration) or result event
  (choreography) lost, its request duplicated, its request delayed past the timeout, and a
  coordinator crash while the coordinator is executing that step;
- per such compensatable step (``3 c``): its compensation failing once (transient) and forever
  (permanent), and a coordinator crash while it compensates that step. A compensation only runs
  when a later step fails, so these points add that trigger: a business failure of the next step.

The coordinator's other states are not points: ``started`` lasts no time (it moves on to the
first step at once) and a terminal state has nothing left to lose. That is ``1 + 8 n + 3 c``
points (``count_fault_points``), each simulated in each style.

Crash points use the core's crash triggers: ``{kind: crash, service: S, when: before_commit |
after_commit, step: X, for: T}`` (the first saga that reaches X's commit; "after commit" is
after the local commit and before the message that should follow it is sent). A coordinator
crash in a state is timed at the middle of that state in the fault-free orchestration run
(with the trigger, for compensation states). Every crash lasts ``crash_for`` seconds (default:
twice the policy timeout).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd

from ..faults import describe_fault
from ..run import resolve_scenario, simulate
from ..scenario import Scenario, parse_faults
from ..styles import STYLES
from ._common import (
    ExecutorLike,
    Progress,
    check_styles,
    executor_for,
    faults_yaml,
    ordered_map,
    run_cell,
)

__all__ = [
    "FAULT_TYPES",
    "MATRIX_COLUMNS",
    "count_fault_points",
    "fault_matrix",
    "fault_points",
]

FAULT_TYPES: dict[str, str] = {
    "none": "no fault",
    "fail_step": "business failure",
    "crash_before_commit": "crash of its service before commit",
    "crash_after_commit": "crash of its service after commit",
    "drop_request": "request lost",
    "drop_reply": "reply or result event lost",
    "duplicate_request": "request delivered twice",
    "delay_request": "request delayed past the timeout",
    "coordinator_crash_executing": "coordinator crash while executing the step",
    "compensation_fails_once": "compensation fails once (transient), after the next step fails",
    "compensation_fails_always": "compensation fails forever (permanent), after the next step "
    "fails",
    "coordinator_crash_compensating": "coordinator crash while compensating the step, after the "
    "next step fails",
}
"""Every kind of fault point, with a sentence saying what it is."""

MATRIX_COLUMNS: tuple[str, ...] = (
    "point",
    "step",
    "fault_type",
    "description",
    "fault",
    "fault_yaml",
    "style",
    "outcome",
    "violations",
    "latency",
    "messages",
    "compensations",
    "retries",
    "timeouts",
)

_PER_STEP = (
    "fail_step",
    "crash_before_commit",
    "crash_after_commit",
    "drop_request",
    "drop_reply",
    "duplicate_request",
    "delay_request",
    "coordinator_crash_executing",
)
_PER_COMPENSATION = (
    "compensation_fails_once",
    "compensation_fails_always",
    "coordinator_crash_compensating",
)


def _compensation_trigger(sc: Scenario, i: int) -> str | None:
    """The step whose failure makes step ``i`` the first to compensate, if there is one."""
    steps = sc.steps
    if steps[i].undoable and i + 1 < len(steps) and steps[i + 1].kind != "retriable":
        return steps[i + 1].name
    return None


def count_fault_points(scenario: Scenario) -> int:
    """How many fault points ``fault_matrix`` simulates per style: ``1 + 8 n + 3 c``."""
    sc = resolve_scenario(scenario)
    n = len(sc.steps)
    c = sum(_compensation_trigger(sc, i) is not None for i in range(n))
    return 1 + len(_PER_STEP) * n + len(_PER_COMPENSATION) * c


@dataclass(frozen=True)
class _Point:
    point: str
    step: str
    fault_type: str
    faults: dict[str, tuple[dict[str, Any], ...]]  # style -> faults


def _first_saga_events(run: Any) -> pd.DataFrame:
    ev = run.events
    return ev[ev["saga"] == ev.loc[ev["saga"] > 0, "saga"].min()]


def _state_middle(run: Any, state: str) -> float:
    """The middle of the first saga's time in coordinator state ``state`` (0 if never in it)."""
    ev = _first_saga_events(run)
    st = ev[(ev["kind"] == "state") & (ev["source"] == "coordinator")]
    times = st["time"].tolist()
    details = st["detail"].tolist()
    for k, d in enumerate(details):
        if d == state:
            end = next((times[j] for j in range(k + 1, len(details)) if details[j] != d), None)
            t0 = float(times[k])
            return t0 if end is None else (t0 + float(end)) / 2
    return 0.0


def _points(
    sc: Scenario,
    styles: tuple[str, ...],
    seed: int,
    sagas: int,
    horizon: float | None,
    crash_for: float,
) -> list[_Point]:
    steps = sc.steps
    timeout = sc.policy.timeout
    orch = simulate(sc, "orchestration", [], seed, sagas, horizon)
    points: list[_Point] = [_Point("none", "", "none", {st: () for st in styles})]

    def same(*faults: dict[str, Any]) -> dict[str, tuple[dict[str, Any], ...]]:
        return {st: tuple(faults) for st in styles}

    for s in steps:
        name = s.name
        crashes = {
            when: same(
                {
                    "kind": "crash",
                    "service": s.service,
                    "when": f"{when}_commit",
                    "step": name,
                    "for": crash_for,
                }
            )
            for when in ("before", "after")
        }
        t_exec = _state_middle(orch, f"executing:{name}")
        by_type = {
            "fail_step": same({"kind": "fail_step", "step": name}),
            "crash_before_commit": crashes["before"],
            "crash_after_commit": crashes["after"],
            "drop_request": same({"kind": "drop", "step": name, "leg": "request"}),
            "drop_reply": same({"kind": "drop", "step": name, "leg": "reply"}),
            "duplicate_request": same({"kind": "duplicate", "step": name, "leg": "request"}),
            "delay_request": same(
                {
                    "kind": "delay",
                    "step": name,
                    "leg": "request",
                    "extra": 1.5 * timeout,
                    "count": 1,
                }
            ),
            "coordinator_crash_executing": same(
                {"kind": "crash_coordinator", "at": t_exec, "for": crash_for}
            ),
        }
        for ft in _PER_STEP:
            points.append(_Point(f"{name}/{ft}", name, ft, by_type[ft]))
    for i, s in enumerate(steps):
        trigger = _compensation_trigger(sc, i)
        if trigger is None:
            continue
        fail_next = {"kind": "fail_step", "step": trigger}
        comp_run = simulate(sc, "orchestration", [fail_next], seed, sagas, horizon)
        t_comp = _state_middle(comp_run, f"compensating:{s.name}")
        by_type = {
            "compensation_fails_once": same(
                fail_next, {"kind": "fail_compensation", "step": s.name, "times": 1}
            ),
            "compensation_fails_always": same(
                fail_next, {"kind": "fail_compensation", "step": s.name}
            ),
            "coordinator_crash_compensating": same(
                fail_next, {"kind": "crash_coordinator", "at": t_comp, "for": crash_for}
            ),
        }
        for ft in _PER_COMPENSATION:
            points.append(_Point(f"{s.name}/{ft}", s.name, ft, by_type[ft]))
    return points


def fault_points(
    scenario: Scenario | str,
    seed: int = 0,
    styles: Any = STYLES,
    sagas: int = 1,
    horizon: float | None = None,
    crash_for: float | None = None,
) -> pd.DataFrame:
    """The fault matrix's points, without simulating them (the baselines for timing excepted).

    Returns:
        One row per (point, style): ``point`` (``"<step>/<fault_type>"`` or ``"none"``),
        ``step``, ``fault_type`` (a key of ``FAULT_TYPES``), ``description``, ``style``,
        ``faults`` (a list of fault mappings) and ``fault_yaml`` (the same as a one-line YAML
        list, ready for ``simulate(..., faults=...)`` or ``--fault``).
    """
    sc = resolve_scenario(scenario)
    styles = check_styles(styles)
    cf = 2 * sc.policy.timeout if crash_for is None else float(crash_for)
    rows = []
    for p in _points(sc, styles, seed, sagas, horizon, cf):
        for st in styles:
            fs = p.faults[st]
            rows.append(
                (
                    p.point,
                    p.step,
                    p.fault_type,
                    FAULT_TYPES[p.fault_type],
                    st,
                    list(fs),
                    faults_yaml(fs),
                )
            )
    return pd.DataFrame(
        rows,
        columns=["point", "step", "fault_type", "description", "style", "faults", "fault_yaml"],
    )


def _cells(
    sc: Scenario,
    cells: list[tuple[str, tuple[dict[str, Any], ...]]],
    seed: int,
    sagas: int,
    horizon: float | None,
) -> list[dict[str, Any]]:
    return [run_cell(sc, style, faults, seed, sagas, horizon) for style, faults in cells]


def fault_matrix(
    scenario: Scenario | str,
    seed: int = 0,
    styles: Any = STYLES,
    executor: ExecutorLike = None,
    sagas: int = 1,
    horizon: float | None = None,
    crash_for: float | None = None,
    progress: Progress | None = None,
) -> pd.DataFrame:
    """Simulate every single fault at every point of the saga, in each style.

    Args:
        scenario: a ``Scenario`` or the path of a scenario file. Its own ``faults:`` stay in
            every run; the matrix adds one point's faults at a time.
        seed: the seed of every run (the same in each cell: only the fault differs).
        styles: the styles to run (default both), or ``"both"``.
        executor: ``None``/``"serial"`` (the default: the matrix is small), ``"process"``, or any
            ``concurrent.futures.Executor``; the result is the same whichever.
        sagas: sagas per run (default 1: the matrix shows what one fault does to one saga).
        horizon: simulated seconds per run (default: the scenario's).
        crash_for: seconds each crash lasts (default: twice ``policy.timeout``).
        progress: ``progress(done, total)`` after each block of cells.

    Returns:
        A DataFrame with ``MATRIX_COLUMNS``, one row per (point, style), ``count_fault_points``
        points per style in a fixed order: ``outcome`` (the worst over the run's sagas:
        inconsistent > stalled > compensated > completed), ``violations`` (a list of invariant
        names), ``latency`` (mean over finished sagas, NaN if none finished), ``messages``
        (sent, all sagas), and ``fault``/``fault_yaml``: the label and the YAML of the faults
        simulated (``simulate(scenario, style, faults=fault_yaml, seed=seed, sagas=sagas)``
        reproduces the cell).

    Raises:
        ScenarioError: an invalid scenario or argument.
    """
    sc = resolve_scenario(scenario)
    styles = check_styles(styles)
    if executor is None:
        executor = "serial"
    cf = 2 * sc.policy.timeout if crash_for is None else float(crash_for)
    points = _points(sc, styles, seed, sagas, horizon, cf)
    cells = [(st, p.faults[st]) for p in points for st in styles]
    block = 8
    tasks = [(sc, cells[k : k + block], seed, sagas, horizon) for k in range(0, len(cells), block)]
    results: list[dict[str, Any]] = []
    with executor_for(executor, big=False) as ex:
        for _i, part in ordered_map(_cells, tasks, ex):
            results += part
            if progress is not None:
                progress(len(results), len(cells))
    rows = []
    k = 0
    for p in points:
        for st in styles:
            fs = p.faults[st]
            models = parse_faults(list(fs), sc) if fs else ()
            r = results[k]
            k += 1
            rows.append(
                (
                    p.point,
                    p.step,
                    p.fault_type,
                    FAULT_TYPES[p.fault_type],
                    " + ".join(describe_fault(f) for f in models) or "no fault",
                    faults_yaml(fs),
                    st,
                    r["outcome"],
                    r["violations"],
                    r["latency"],
                    r["messages"],
                    r["compensations"],
                    r["retries"],
                    r["timeouts"],
                )
            )
    df = pd.DataFrame(rows, columns=list(MATRIX_COLUMNS))
    df.attrs.update(scenario=sc.name, seed=seed, sagas=sagas)
    return df


def matrix_json(df: pd.DataFrame) -> dict[str, Any]:
    """The matrix as the CLI's ``--json`` object: ``{"rows": [{fault, style, outcome, ...}]}``."""

    def num(x: float) -> float | None:
        return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(x, 6)

    rows = []
    for r in df.itertuples(index=False):
        rows.append(
            {
                "point": r.point,
                "step": r.step,
                "fault_type": r.fault_type,
                "fault": r.fault,
                "fault_yaml": r.fault_yaml,
                "style": r.style,
                "outcome": r.outcome,
                "violations": list(r.violations),
                "latency": num(r.latency),
                "messages": int(r.messages),
                "compensations": int(r.compensations),
            }
        )
    return {"rows": rows}
