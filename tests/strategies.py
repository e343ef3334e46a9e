"""Hypothesis strategies for the safety suite: random valid sagas and fault plans that heal.

``safety_cases()`` draws a ``SafetyCase``: a scenario (as the mapping a user would write in
YAML), a fault plan, a seed. Everything it draws is valid by construction (the loader accepts
it), every safeguard is on (idempotent consumers, outbox, barrier, status queries; a semantic
lock wherever there is shared data), and every fault heals: crashes, partitions and delays end,
drops and duplicates and failures are finite, and the retry budgets are sized from the plan so
that a protocol that keeps its promises outlasts every fault. A run that still ends badly is the
simulator's fault, not the plan's.

The scenarios cover what issue 10 asks for: linear sagas and graphs with several sources and
several sinks (``after:``), compensatable (with and without a compensation), pivot and retriable
steps, shared data items with changes and floors, several concurrent sagas, both compensation
orders, random durations (a few slow steps, slower than the timeout), latencies and timeouts.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Any

import yaml
from hypothesis import strategies as st

import saga_sim as ss
from saga_sim.scenario import message_names, scenario_from_dict

__all__ = [
    "HORIZON",
    "SafetyCase",
    "fault_plans",
    "healthy_cases",
    "safety_cases",
    "scenario_dicts",
]

HORIZON = 300.0
"""Simulated seconds per run: faults all end within a few seconds, so a healthy saga is over long
before this (the retry budgets below are sized to outlast the faults)."""

FAULT_WINDOW = 4.0  # crashes and partitions start within [0, FAULT_WINDOW]
MAX_FOR = 2.5  # and last at most this long


@dataclass(frozen=True)
class SafetyCase:
    """One example: a scenario mapping, a fault plan, a seed."""

    scenario: dict[str, Any]
    faults: list[dict[str, Any]] = field(default_factory=list)
    seed: int = 0

    @property
    def model(self) -> ss.Scenario:
        """The validated scenario (its faults are given apart, in ``faults``)."""
        return scenario_from_dict(self.scenario, "safety case")

    def to_yaml(self) -> str:
        """The case as YAML, the form stored under tests/safety_cases."""
        return yaml.safe_dump(
            {"seed": self.seed, "faults": self.faults, "scenario": self.scenario},
            sort_keys=False,
            width=100,
            default_flow_style=None,
        )


# --------------------------------------------------------------------------------------------
# Scenarios


@functools.cache
def _rounded(lo: float, hi: float, digits: int = 3) -> st.SearchStrategy[float]:
    return st.floats(lo, hi, allow_nan=False).map(lambda x: round(x, digits))


@functools.cache
def _durations() -> st.SearchStrategy[dict]:
    return st.one_of(
        _rounded(0.002, 0.2).map(lambda m: {"dist": "exponential", "mean": m}),
        _rounded(0.0, 0.3).map(lambda v: {"dist": "constant", "value": v}),
        st.tuples(_rounded(0.0, 0.1), _rounded(0.0, 0.3)).map(
            lambda t: {"dist": "uniform", "low": min(t), "high": max(t)}
        ),
        # a slow step: slower than most timeouts, so attempts overlap with work in progress
        _rounded(0.5, 6.0, 2).map(lambda v: {"dist": "constant", "value": v}),
    )


def _max_duration(d: dict) -> float:
    """A duration that this distribution rarely exceeds (used to size redelivery budgets)."""
    if d["dist"] == "constant":
        return d["value"]
    if d["dist"] == "uniform":
        return d["high"]
    return 5 * d["mean"]


def _sinks(preds: list[list[int]]) -> list[int]:
    return [i for i in range(len(preds)) if not any(i in p for p in preds)]


@st.composite
def scenario_dicts(draw: st.DrawFn) -> dict[str, Any]:
    """A valid scenario mapping with every safeguard on (faults and budgets come later)."""
    n_services = draw(st.integers(1, 3))
    services: dict[str, dict] = {}
    for k in range(n_services):
        spec: dict[str, Any] = {"workers": draw(st.integers(1, 4))}
        if draw(st.booleans()):
            n_items = draw(st.integers(1, 2))
            spec["data"] = {f"item{k}{j}": draw(st.integers(0, 10)) for j in range(n_items)}
        services[f"svc{k}"] = spec
    names = list(services)

    n_comp = draw(st.integers(1, 4))
    pivot = draw(st.booleans())
    n_retr = draw(st.integers(0, 2))
    graph = draw(st.booleans())
    steps: list[dict[str, Any]] = []
    preds: list[list[int]] = []

    def add(kind: str, after: list[int] | None) -> dict[str, Any]:
        i = len(steps)
        name = f"{kind[0]}{i}"
        svc = draw(st.sampled_from(names))
        step: dict[str, Any] = {
            "name": name,
            "service": svc,
            "action": f"do_{name}",
            "kind": kind,
            "duration": draw(_durations()),
        }
        if kind == "compensatable" and draw(st.integers(0, 9)) > 0:
            step["compensation"] = f"undo_{name}"
            if draw(st.booleans()):
                step["compensation_duration"] = draw(_durations())
        items = list(services[svc].get("data", {}))
        # no shared data on retriable steps: a retriable step that aborts on a floor or a lock
        # retries forever, which is the plan's doing (a livelock between sagas), not a bug
        if items and kind != "retriable" and draw(st.booleans()):
            data: dict[str, Any] = {
                "item": draw(st.sampled_from(items)),
                "change": draw(st.integers(-3, 3)),
            }
            data["floor"] = draw(st.sampled_from([0, None, -2]))
            step["data"] = data
        if after is not None:
            step["after"] = [steps[j]["name"] for j in after]
        steps.append(step)
        preds.append(after if after is not None else ([i - 1] if i else []))
        return step

    for i in range(n_comp):
        if not graph or i == 0:
            add("compensatable", None)
        else:
            # a new source, or a join of any non-empty subset of the earlier steps
            earlier = list(range(i))
            chosen = draw(st.lists(st.sampled_from(earlier), unique=True, max_size=len(earlier)))
            add("compensatable", sorted(chosen))
    if pivot:
        add("pivot", sorted(_sinks(preds)) if graph else None)
    for _ in range(n_retr):
        add("retriable", sorted(_sinks(preds)) if graph else None)

    has_data = any("data" in s for s in steps)
    isolation = {
        "semantic_lock": True,
        "commutative": draw(st.booleans()),
        "reread": draw(st.booleans()),
        "version": draw(st.booleans()),
    }
    policy: dict[str, Any] = {
        "timeout": draw(_rounded(0.1, 1.5)),
        "retries": draw(st.integers(0, 4)),
        "backoff": draw(_rounded(1.5, 3.0, 2)),
        "retry_delay": draw(_rounded(0.01, 0.2)),
        "idempotent": True,
        "barrier": True,
        "outbox": True,
        "query_status": True,
        "compensation_order": draw(st.sampled_from(["reverse", "parallel"])),
        "redelivery": draw(_rounded(0.2, 2.0, 2)),
    }
    if has_data:
        policy["isolation"] = isolation
    latency_mean = draw(_rounded(0.001, 0.03, 4))
    network = {
        "latency": {"dist": "lognormal", "mean": latency_mean, "sd": round(latency_mean / 3, 5)},
        "duplicate": draw(st.sampled_from([0.0, 0.0, 0.05, 0.2])),
    }
    workload = {
        "sagas": draw(st.integers(1, 4)),
        "interarrival": {"dist": "exponential", "mean": draw(_rounded(0.02, 1.0))},
    }
    return {
        "name": "safety-case",
        "services": services,
        "steps": steps,
        "network": network,
        "policy": policy,
        "workload": workload,
        "horizon": HORIZON,
    }


# --------------------------------------------------------------------------------------------
# Fault plans


FAULT_KINDS = (
    "fail_step",
    "fail_compensation",
    "crash",
    "crash_trigger",
    "crash_coordinator",
    "drop",
    "duplicate",
    "delay",
    "partition",
)


@st.composite
def fault_plans(draw: st.DrawFn, sc: dict[str, Any]) -> list[dict[str, Any]]:
    """Up to five faults of every kind that heals, referring to this scenario's parts.

    Drawn field by field from module-level strategies (building a tree of ``st.builds`` per
    scenario costs more than the simulation)."""
    model = scenario_from_dict(sc, "safety case")
    steps = [s["name"] for s in sc["steps"]]
    owner = {s["name"]: s["service"] for s in sc["steps"]}
    undoable = [s.name for s in model.steps if s.undoable]
    services = list(sc["services"])
    n_sagas = sc["workload"]["sagas"]
    kinds = FAULT_KINDS if undoable else tuple(k for k in FAULT_KINDS if k != "fail_compensation")
    at, span = _rounded(0.0, FAULT_WINDOW), _rounded(0.01, MAX_FOR)
    small = st.integers(1, 3)

    def pick(options: list) -> Any:
        return options[draw(st.integers(0, len(options) - 1))]

    def saga(f: dict[str, Any]) -> dict[str, Any]:
        g = draw(st.integers(0, n_sagas))  # 0: every saga
        return f if g == 0 else {**f, "saga": g}

    def selector() -> dict[str, Any]:
        if draw(st.integers(0, 5)) == 0:
            return {"message": pick(message_names(model))}
        step = pick(steps)
        out: dict[str, Any] = {"step": step, "leg": pick(["request", "reply"])}
        if step in undoable and draw(st.booleans()):
            out["compensation"] = True
        return saga(out)

    plan: list[dict[str, Any]] = []
    for _ in range(draw(st.integers(0, 5))):
        kind = pick(list(kinds))
        if kind == "fail_step":
            f = saga({"kind": kind, "step": pick(steps), "attempt": draw(small)})
        elif kind == "fail_compensation":
            f = saga({"kind": kind, "step": pick(undoable), "times": draw(small)})
        elif kind == "crash":
            f = {"kind": kind, "service": pick(services), "at": draw(at), "for": draw(span)}
        elif kind == "crash_trigger":
            step = pick(steps)
            when = pick(["before_commit", "after_commit"])
            f = {"kind": "crash", "service": owner[step], "when": when, "step": step}
            f = saga({**f, "for": draw(span)})
        elif kind == "crash_coordinator":
            f = {"kind": kind, "at": draw(at), "for": draw(span)}
        elif kind == "drop":
            f = {"kind": kind, **selector(), "count": draw(small)}
        elif kind == "duplicate":
            f = {"kind": kind, **selector(), "count": draw(small), "lag": draw(_rounded(0, 1))}
        elif kind == "delay":
            f = {"kind": kind, **selector(), "extra": draw(_rounded(0.01, 3.0))}
            if draw(st.booleans()):
                f["count"] = draw(small)  # else every matching message is late
        else:
            a = pick(services)
            b = pick([x for x in ["*", "coordinator", "broker", "client", *services] if x != a])
            f = {"kind": kind, "between": [a, b], "at": draw(at), "for": draw(span)}
        plan.append(f)
    return plan


def _budget(sc: dict[str, Any], faults: list[dict[str, Any]]) -> dict[str, Any]:
    """Retry budgets that outlast the plan: enough attempts for every finite failure, and enough
    waiting (timeouts plus backoff) to sit out every crash, partition and delay."""
    pol = sc["policy"]
    counts = sum(
        f.get("count", 3) if f["kind"] in ("drop", "delay", "duplicate") else f.get("times", 1)
        for f in faults
    )
    end = max(
        [f.get("at", 0) + f.get("for", 0) for f in faults]
        + [f.get("for", 0) for f in faults]
        + [f.get("extra", 0) for f in faults]
        + [0.0]
    )
    slow = max(
        _max_duration(d)
        for s in sc["steps"]
        for d in (s["duration"], s.get("compensation_duration", s["duration"]))
    )
    # a service with one worker runs every saga's steps one after another: a request may queue
    # behind all of them (the coordinator cannot tell a queued request from a lost one)
    queued = sc["workload"]["sagas"] * sum(
        _max_duration(s["duration"]) + _max_duration(s.get("compensation_duration", s["duration"]))
        for s in sc["steps"]
    )
    # waiting outlasts the faults, the queue of work and the arrivals of the last saga
    need = end + queued + 2 * sc["workload"]["interarrival"]["mean"] * sc["workload"]["sagas"] + 2
    attempts, waited = 0, 0.0
    while waited < need or attempts < counts + 3:
        waited += pol["timeout"] + pol["retry_delay"] * pol["backoff"] ** attempts
        attempts += 1
    redeliveries = counts + math.ceil((end + slow + queued) / pol["redelivery"]) + 5
    return {
        **pol,
        "compensation_retries": min(100, attempts),
        "max_redeliveries": min(1000, redeliveries),
    }


@st.composite
def safety_cases(draw: st.DrawFn) -> SafetyCase:
    """A random valid scenario, a healing fault plan, budgets sized to outlast it, and a seed."""
    sc = draw(scenario_dicts())
    faults = draw(fault_plans(sc))
    sc = {**sc, "policy": _budget(sc, faults)}
    return SafetyCase(sc, faults, draw(st.integers(0, 2**32)))


@st.composite
def healthy_cases(draw: st.DrawFn) -> SafetyCase:
    """One saga, no fault, no floor: nothing can make a step abort, so every saga must complete."""
    sc = draw(scenario_dicts())
    steps = [{**s, "data": {**s["data"], "floor": None}} if "data" in s else s for s in sc["steps"]]
    sc = {**sc, "steps": steps, "workload": {**sc["workload"], "sagas": 1}}
    sc = {**sc, "policy": _budget(sc, [])}
    return SafetyCase(sc, [], draw(st.integers(0, 2**32)))
