"""Coursework: the checks students call in the notebooks, and a grader for their own code.

``check(exercise, answer)`` says whether an answer is right, with a hint when it is not, and
never shows the expected answer. Most expected answers are computed here by running the
simulator, so they cannot drift from what the simulator does; answers to conceptual questions
are compared by hash. ``exercises()`` lists them all.

Students can also write a participant's behaviour in Python (a subclass of ``Participant``: an
idempotent consumer, a compensation with a barrier) and plug it into a step with
``simulate(..., participants={step: obj})``. ``grade(exercise, participant)`` runs it under
families of faults on many seeds, some of them hidden (derived here, never listed), in both
styles, and reports which invariants held.
"""

from __future__ import annotations

import copy
import hashlib
import html
import math
import os
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import pandas as pd
import yaml

from .bundled import bundled_scenarios, find_bundled, scenario_dir, scenario_text
from .checks import INVARIANTS, OUTCOMES
from .faults import FAULT_KINDS
from .run import Run, simulate
from .scenario import Scenario, ScenarioError, parse_scenario
from .styles import STYLES
from .world.service import ACTION_VERDICTS, COMPENSATION_VERDICTS, Request

__all__ = [
    "APPLY",
    "NULL",
    "REFUSE",
    "SKIP",
    "UNDO",
    "Feedback",
    "Grade",
    "Participant",
    "Request",
    "bundled",
    "check",
    "exercises",
    "grade",
    "variant",
]

APPLY, SKIP, REFUSE = ACTION_VERDICTS
"""A participant's ``action`` answers: commit the effect; it is already there; refuse it."""
UNDO, NULL = COMPENSATION_VERDICTS[:2]
"""A participant's ``compensation`` answers: undo the effect; nothing to undo (or ``SKIP``)."""

SCENARIO_DIR = scenario_dir()
"""Where the bundled scenarios are read from (see ``saga_sim.bundled``)."""


# --------------------------------------------------------------------------------------------
# Scenarios for the notebooks


@cache
def _bundled(stem: str) -> Scenario:
    return parse_scenario(scenario_text(stem), source=f"{stem}.yaml")


def bundled(name: str) -> Scenario:
    """A bundled scenario by file stem or scenario name (``"trip_booking"``, ``"trip-booking"``).

    Works from any directory, so notebooks in ``notebooks/`` and ``notebooks/solutions/`` read
    the same files, and so does a notebook copied anywhere once the package is installed.
    """
    found = find_bundled(name)
    if found is None:
        raise ValueError(f"no bundled scenario {name!r}; known: {', '.join(bundled_scenarios())}")
    return _bundled(found.name.removesuffix(".yaml"))


def _merge(base: dict, changes: dict) -> dict:
    out = dict(base)
    for k, v in changes.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def variant(scenario: Scenario, **changes: Any) -> Scenario:
    """A copy of ``scenario`` with some sections changed, validated like a scenario file.

    Example: ``variant(sc, policy={"idempotent": False}, workload={"sagas": 20})``. Mappings
    are merged key by key; anything else replaces the value.

    Raises:
        ScenarioError: the changed scenario is invalid (every problem listed).
    """
    data = scenario.model_dump(mode="json", by_alias=True, exclude_none=True)
    text = yaml.safe_dump(_merge(data, changes), sort_keys=False)
    return parse_scenario(text, source=f"variant of {scenario.name}")


# --------------------------------------------------------------------------------------------
# Feedback


_MARKS = {"right": "✔", "wrong": "✘", "unanswered": "…", "malformed": "✘"}
_HEAD = {
    "right": "right",
    "wrong": "not yet",
    "unanswered": "no answer yet",
    "malformed": "not an answer of the expected form",
}
_COLOURS = {"right": "#1b7f3b", "wrong": "#b3261e", "unanswered": "#6b6b6b", "malformed": "#b3261e"}


@dataclass(frozen=True)
class Feedback:
    """The verdict on one answer. True when right; shows itself in a notebook."""

    exercise: str
    status: str  # "right" | "wrong" | "unanswered" | "malformed"
    text: str

    @property
    def correct(self) -> bool:
        return self.status == "right"

    def __bool__(self) -> bool:
        return self.correct

    def __repr__(self) -> str:
        mark = _MARKS[self.status]
        return f"{mark} {self.exercise}: {_HEAD[self.status]}. {self.text}".rstrip()

    def _repr_html_(self) -> str:
        colour = _COLOURS[self.status]
        mark = _MARKS[self.status]
        head = html.escape(f"{self.exercise}: {_HEAD[self.status]}.")
        body = html.escape(self.text).replace("\n", "<br>")
        return (
            f'<div style="border-left:4px solid {colour};padding:4px 10px;margin:4px 0">'
            f'<b style="color:{colour}">{mark} {head}</b> {body}</div>'
        )


class _Malformed(ValueError):
    """The answer is not of the form the exercise asks for (the message says which)."""


# --------------------------------------------------------------------------------------------
# Answer forms


def _as_str(x: Any, what: str) -> str:
    if not isinstance(x, str):
        raise _Malformed(f"expected {what} as a string, got {type(x).__name__} {x!r}")
    return x.strip().lower()


def _one_of(options: Iterable[str], what: str) -> Callable[[Any], str]:
    opts = list(options)

    def norm(x: Any) -> str:
        s = _as_str(x, what)
        if s not in opts:
            raise _Malformed(f"{x!r} is not {what}; choose one of: {', '.join(opts)}")
        return s

    return norm


def _step_of(scenario: str) -> Callable[[Any], str]:
    def norm(x: Any) -> str:
        names = [s.name for s in bundled(scenario).steps]
        return _one_of(names, f"a step of {scenario}")(x)

    return norm


def _step_list(scenario: str) -> Callable[[Any], tuple[str, ...]]:
    def norm(x: Any) -> tuple[str, ...]:
        if isinstance(x, str) or not isinstance(x, (list, tuple)):
            raise _Malformed(f"expected a list of step names, got {x!r}")
        one = _step_of(scenario)
        return tuple(one(s) for s in x)

    return norm


def _service_of(scenario: str) -> Callable[[Any], str]:
    def norm(x: Any) -> str:
        return _one_of(list(bundled(scenario).services), f"a service of {scenario}")(x)

    return norm


def _int(x: Any) -> int:
    if isinstance(x, bool) or not isinstance(x, (int, float)) or x != int(x):
        raise _Malformed(f"expected a whole number, got {x!r}")
    return int(x)


def _float(x: Any) -> float:
    if isinstance(x, bool) or not isinstance(x, (int, float)) or math.isnan(x):
        raise _Malformed(f"expected a number, got {x!r}")
    return float(x)


def _bool(x: Any) -> bool:
    if not isinstance(x, bool):
        raise _Malformed(f"expected True or False, got {x!r}")
    return x


def _int_set(x: Any) -> frozenset[int]:
    if isinstance(x, (str, bytes)) or not isinstance(x, Iterable):
        raise _Malformed(f"expected a list of saga numbers, got {x!r}")
    return frozenset(_int(v) for v in x)


def _str_set(x: Any) -> frozenset[str]:
    if isinstance(x, str) or not isinstance(x, Iterable):
        raise _Malformed(f"expected a list of strings, got {x!r}")
    return frozenset(str(v).strip() for v in x)


def _mapping(keys: Iterable[str], value: Callable[[Any], Any]) -> Callable[[Any], tuple]:
    ks = list(keys)

    def norm(x: Any) -> tuple:
        if not isinstance(x, dict):
            raise _Malformed(f"expected a dict with the keys {', '.join(ks)}, got {x!r}")
        missing = [k for k in ks if k not in x]
        extra = [k for k in x if k not in ks]
        if missing or extra:
            raise _Malformed(
                f"expected exactly the keys {', '.join(ks)}"
                + (f"; missing: {', '.join(missing)}" if missing else "")
                + (f"; unexpected: {', '.join(map(str, extra))}" if extra else "")
            )
        return tuple((k, value(x[k])) for k in ks)

    return norm


def _step_mapping(scenario: str, value: Callable[[Any], Any]) -> Callable[[Any], tuple]:
    def norm(x: Any) -> tuple:
        return _mapping([s.name for s in bundled(scenario).steps], value)(x)

    return norm


_outcome = _one_of(OUTCOMES, "an outcome")
_invariant = _one_of(INVARIANTS, "an invariant name")
_style = _one_of(STYLES, "a style")


def _choice(letters: str) -> Callable[[Any], str]:
    return _one_of(list(letters), "one of the letters")


# --------------------------------------------------------------------------------------------
# The exercises


@dataclass(frozen=True)
class _Exercise:
    id: str
    question: str
    form: str
    normalize: Callable[[Any], Any]
    expected: Callable[[], Any] | None = None  # computed by the simulator
    digest: str | None = None  # or compared by hash
    tolerance: float | None = None
    hint: Callable[[Any, Any], str] | str = ""
    check_answer: Callable[[Any], tuple[bool, str]] | None = None  # judged on its own merits


EXERCISES: dict[str, _Exercise] = {}


def _digest(exercise: str, normalized: Any) -> str:
    return hashlib.sha256(f"saga-sim|{exercise}|{normalized!r}".encode()).hexdigest()


def _add(ex: _Exercise) -> None:
    assert ex.id not in EXERCISES, ex.id
    EXERCISES[ex.id] = ex


def _computed(
    id: str,
    question: str,
    form: str,
    normalize: Callable[[Any], Any],
    hint: Callable[[Any, Any], str] | str = "",
    tolerance: float | None = None,
) -> Callable[[Callable[[], Any]], Callable[[], Any]]:
    def deco(fn: Callable[[], Any]) -> Callable[[], Any]:
        _add(_Exercise(id, question, form, normalize, cache(fn), None, tolerance, hint))
        return fn

    return deco


def _hashed(
    id: str, question: str, form: str, normalize: Callable[[Any], Any], digest: str, hint: str
) -> None:
    _add(_Exercise(id, question, form, normalize, None, digest, None, hint))


def _effects(run: Run, op: str, saga: int = 1) -> tuple[str, ...]:
    return tuple(e[3] for e in run.effects if e[4] == op and e[2] == saga)


def _order_hint(given: tuple, expected: tuple) -> str:
    if sorted(given) == sorted(expected):
        if tuple(reversed(given)) == expected:
            return "You have the right steps, in the opposite order. Which undo must come first?"
        return "You have the right steps but not the right order."
    if set(given) - set(expected):
        return "Your list has a step that does not belong; read the trace rows for this case."
    return "Your list misses a step; read the trace rows for this case."


# --- 01 what is a saga -------------------------------------------------------------------------


@_computed(
    "01.pivot",
    "Which step of the sign-up saga is its pivot?",
    "a step name",
    _step_of("user_registration"),
    "The pivot is the point of no return: after it, the saga can only go forward. Look at each "
    "step's `kind` in the scenario (or in `sc.steps`).",
)
def _pivot() -> str:
    sc = bundled("user_registration")
    return sc.steps[sc.pivot_index].name


@_computed(
    "01.commit_order",
    "In which order do the sign-up's local transactions commit (orchestration, seed 7)?",
    "a list of step names",
    _step_list("user_registration"),
    _order_hint,
)
def _commit_order() -> tuple[str, ...]:
    return _effects(simulate(bundled("user_registration"), "orchestration", seed=7), "commit")


@_computed(
    "01.messages",
    "How many messages does the orchestrated sign-up send (count the `send` events; seed 7)?",
    "a whole number",
    _int,
    lambda g, e: (
        "Too few: count every message, replies and the client's request included."
        if g < e
        else "Too many: count only `send` events (a `deliver` is the same message arriving)."
    ),
)
def _messages() -> int:
    run = simulate(bundled("user_registration"), "orchestration", seed=7)
    return int((run.events["kind"] == "send").sum())


@_computed(
    "01.latency",
    "How many simulated seconds does saga 1 take, orchestrated, seed 7 (within 1 ms)?",
    "a number of seconds",
    _float,
    "Read the `latency` column of `run.sagas` (seconds, not milliseconds).",
    tolerance=1e-3,
)
def _latency() -> float:
    return float(simulate(bundled("user_registration"), "orchestration", seed=7).sagas.latency[0])


def _longest_transaction(run: Run) -> str:
    ev = run.events
    best, name = -1.0, ""
    for _, row in ev[ev["kind"] == "tx_commit"].iterrows():
        arrived = ev[
            (ev["kind"] == "deliver")
            & (ev["target"] == row["source"])
            & (ev["step"] == row["step"])
            & (ev["time"] <= row["time"])
        ]["time"].max()
        if row["time"] - arrived > best:
            best, name = row["time"] - arrived, row["step"]
    return name


@_computed(
    "01.slowest_step",
    "Which step's local transaction takes longest, from the request's delivery at its service to "
    "its `tx_commit` (orchestration, seed 7)?",
    "a step name",
    _step_of("user_registration"),
    "Compute it rather than guess: for each step, subtract the time of the `deliver` to its "
    "service from the time of its `tx_commit`. Two of them are close.",
)
def _slowest() -> str:
    return _longest_transaction(simulate(bundled("user_registration"), "orchestration", seed=7))


_hashed(
    "01.why_not_2pc",
    "Why does a saga not hold locks across the three services until the end, as a distributed "
    "transaction (two-phase commit) would? (a) the services' databases cannot lock rows; (b) each "
    "local transaction commits at once, so no service waits for, or locks data on behalf of, the "
    "others: the price is that others can see intermediate states and failures need "
    "compensations; (c) sagas are always faster.",
    "a letter",
    _choice("abc"),
    "5f13d15ec72135e0fc162151d0f604f183c56a5645d94fd31845aef2176f4f2b",
    "Think about what each service does right after its local transaction, and what that costs.",
)


# --- 02 failures and compensations -----------------------------------------------------------


@_computed(
    "02.compensation_order",
    "When book_flight fails (trip booking, one saga, orchestration, seed 3), in which order do "
    "the compensations run?",
    "a list of step names",
    _step_list("trip_booking"),
    _order_hint,
)
def _comp_order() -> tuple[str, ...]:
    run = simulate(
        bundled("trip_booking"),
        "orchestration",
        ["{kind: fail_step, step: book_flight}"],
        seed=3,
        sagas=1,
    )
    return _effects(run, "comp")


@_computed(
    "02.undone_on_pivot_failure",
    "When the pivot send_welcome_email fails (sign-up, seed 7), which steps are compensated?",
    "a list of step names",
    _step_list("user_registration"),
    lambda g, e: (
        "A step whose compensation is null has nothing to undo: nobody sends it a compensation."
        if "validate_input" in g
        else "A failed step has no effect to undo (its local transaction aborted)."
        if "send_welcome_email" in g
        else "Run it and list the `comp_commit` rows."
    ),
)
def _undone() -> tuple[str, ...]:
    run = simulate(
        bundled("user_registration"),
        "orchestration",
        ["{kind: fail_step, step: send_welcome_email}"],
        seed=7,
    )
    return _effects(run, "comp")


def _outcomes_by_step() -> tuple:
    sc = bundled("order_fulfillment")
    out = []
    for s in sc.steps:
        run = simulate(sc, "orchestration", [{"kind": "fail_step", "step": s.name}], 5, sagas=1)
        out.append((s.name, run.outcome))
    return tuple(out)


_add(
    _Exercise(
        "02.outcomes_by_step",
        "Order fulfilment, one saga, seed 5: for each step, the outcome when that step fails at "
        "its first attempt.",
        "a dict {step name: outcome}",
        _step_mapping("order_fulfillment", _outcome),
        cache(_outcomes_by_step),
        hint=lambda g, e: (
            f"{sum(a != b for a, b in zip(g, e))} of the {len(e)} outcomes are wrong. What "
            "happens to a failed retriable step after the pivot? And at the pivot itself?"
        ),
    )
)


@_computed(
    "02.stuck_outcome",
    "Trip booking, one saga, seed 3: book_flight fails and cancel_car fails forever. What is "
    "the outcome (orchestration)?",
    "an outcome",
    _outcome,
    "The coordinator gives up after `policy.compensation_retries`; which effect still stands, "
    "and what do the four outcomes mean?",
)
def _stuck() -> str:
    return _stuck_run().outcome


@cache
def _stuck_run() -> Run:
    return simulate(
        bundled("trip_booking"),
        "orchestration",
        ["{kind: fail_step, step: book_flight}", "{kind: fail_compensation, step: reserve_car}"],
        seed=3,
        sagas=1,
    )


@_computed(
    "02.stuck_invariant",
    "In that same run, which invariant is violated?",
    "an invariant name (see ss.INVARIANTS)",
    _invariant,
    "Read `run.violations` (or `run.violations_frame()`).",
)
def _stuck_inv() -> str:
    return _stuck_run().violations[0].invariant


@_computed(
    "02.cancel_room_sends",
    "Trip booking, one saga, seed 3, orchestration: book_flight fails and cancel_room fails "
    "twice before it succeeds. How many `cancel_room` commands does the coordinator send?",
    "a whole number",
    _int,
    "Count the `send` events whose message is cancel_room: every failure is followed by a retry.",
)
def _cancel_room() -> int:
    run = simulate(
        bundled("trip_booking"),
        "orchestration",
        [
            "{kind: fail_step, step: book_flight}",
            "{kind: fail_compensation, step: reserve_hotel, times: 2}",
        ],
        seed=3,
        sagas=1,
    )
    ev = run.events
    return int(((ev["kind"] == "send") & (ev["message"] == "cancel_room")).sum())


# --- 03 orchestration vs choreography ----------------------------------------------------------


@_computed(
    "03.fewer_messages_retriable",
    "Order fulfilment, one saga, seed 11: schedule_shipment fails once. Which style sends fewer "
    "messages?",
    "a style",
    _style,
    "Who retries a failed retriable step in each style, and does the retry cross the network?",
)
def _fewer() -> str:
    from .run import compare

    c = compare(bundled("order_fulfillment"), ["{kind: fail_step, step: schedule_shipment}"], 11, 1)
    m = c.metrics.loc["messages"]
    return "orchestration" if m["orchestration"] < m["choreography"] else "choreography"


@_computed(
    "03.lost_reply",
    "Sign-up, seed 7: the reply of create_user is lost (`{kind: drop, step: create_user, leg: "
    "reply}`). What is the outcome in each style?",
    "a dict {style: outcome}",
    _mapping(STYLES, _outcome),
    lambda g, e: (
        "One style is right. In choreography the 'reply' is the event the service publishes: "
        "the broker never acknowledged it. What does the service's outbox relay do with an "
        "event the broker did not acknowledge (`policy.outbox`, `policy.relay_timeout`)?"
        if sum(a == b for a, b in zip(g, e)) == 1
        else "Who sends a lost message again in each style?"
    ),
)
def _lost_reply() -> tuple:
    return tuple(
        (st, simulate(bundled("user_registration"), st, _LOST_REPLY, seed=7).outcome)
        for st in STYLES
    )


_LOST_REPLY = ["{kind: drop, step: create_user, leg: reply}"]


@_computed(
    "03.faster_on_lost_request",
    "Sign-up, seed 7: the request that makes the identity service create the user is lost once. "
    "Which style finishes the saga sooner?",
    "a style",
    _style,
    "Compare the orchestrator's `policy.timeout` (plus retry delay) with the broker's "
    "`policy.redelivery`.",
)
def _faster() -> str:
    lat = {
        st: simulate(
            bundled("user_registration"), st, ["{kind: drop, step: create_user, leg: request}"], 7
        ).sagas.latency[0]
        for st in STYLES
    }
    return min(STYLES, key=lambda s: lat[s])


@_computed(
    "03.who_declares",
    "Trip booking, seed 11, choreography: book_flight fails. Which service is the first to know "
    "that saga 1 has ended compensated?",
    "a service name",
    _service_of("trip_booking"),
    "Look at the `declared_by` column of `run.sagas`, or at the `state` events: in "
    "choreography the service that does the last compensation finds out.",
)
def _who() -> str:
    run = simulate(
        bundled("trip_booking"), "choreography", ["{kind: fail_step, step: book_flight}"], 11
    )
    return str(run.sagas.declared_by[0])


_IDENTITY_DOWN = ["{kind: crash, service: identity, at: 0.01, for: 2.0}"]


@_computed(
    "03.divergence_step",
    "Sign-up, seed 7: the identity service is down from 0.01 s for 2 s (`{kind: crash, "
    "service: identity, at: 0.01, for: 2.0}`). At which step do the two styles' effects first "
    "differ (`compare(...).divergence`)?",
    "a step name",
    _step_of("user_registration"),
    "Read `cmp.sentence()`: which step commits in one style and not in the other?",
)
def _div_step() -> str:
    from .run import compare

    c = compare(bundled("user_registration"), _IDENTITY_DOWN, seed=7)
    d = c.divergence
    text = d.orchestration + " " + d.choreography
    names = [s.name for s in bundled("user_registration").steps]
    return next(n for n in names if n in text)


_hashed(
    "03.where_is_the_state",
    "In choreography, where can an operator look up the current state of one saga? (a) in the "
    "coordinator's saga log; (b) in the broker, which knows every saga's state; (c) nowhere in "
    "one place: each service knows only its own part, so you must gather it from all of them "
    "(or build a tracking view).",
    "a letter",
    _choice("abc"),
    "b85dd770d3bcaaaa26e6347dd4ff6354ff6ce87e737c3c05476e88fe5caeefd8",
    "Is there a coordinator in choreography? What does a broker keep, messages or sagas?",
)


# --- 04 unreliable networks --------------------------------------------------------------------

_DUP_REQUEST = ["{kind: duplicate, step: create_user, leg: request}"]
_LATE_REQUEST = ["{kind: delay, step: create_user, leg: request, extra: 5}"]


@_computed(
    "04.duplicate_without_dedup",
    "Sign-up with `policy.idempotent: false`, seed 7, orchestration: the create_user request is "
    "duplicated. Which invariant breaks?",
    "an invariant name",
    _invariant,
    "Two copies of one request reached the identity service. What did each do to its store?",
)
def _dup_inv() -> str:
    sc = variant(bundled("user_registration"), policy={"idempotent": False})
    run = simulate(sc, "orchestration", _DUP_REQUEST, seed=7)
    return run.violations[0].invariant


def _same_id(style: str, leg: str) -> bool:
    run = simulate(
        bundled("user_registration"),
        style,
        [f"{{kind: drop, step: create_user, leg: {leg}}}"],
        seed=7,
    )
    ev = run.events
    name = "create_user" if style == "orchestration" else "validate_input.succeeded"
    sends = ev[(ev["kind"] == "send") & (ev["message"] == name) & (ev["step"] == "create_user")]
    return bool(sends["msg_id"].nunique() == 1 and len(sends) > 1)


@_computed(
    "04.retry_same_id",
    "Orchestration, sign-up, seed 7, the create_user reply is lost: does the coordinator's "
    "retry carry the same `msg_id` as its first command?",
    "True or False",
    _bool,
    "Look at the `send` rows of the create_user command: compare their `msg_id` and `attempt`.",
)
def _retry_id() -> bool:
    return _same_id("orchestration", "reply")


@_computed(
    "04.redelivery_same_id",
    "Choreography, sign-up, seed 7, the broker's delivery to the identity service is lost: does "
    "the redelivery carry the same `msg_id`?",
    "True or False",
    _bool,
    "Look at the broker's `send` rows to `identity`.",
)
def _redelivery_id() -> bool:
    return _same_id("choreography", "request")


@_computed(
    "04.late_request_without_barrier",
    "Orchestration, sign-up with `policy.barrier: false` and `policy.query_status: false`, seed "
    "7: every create_user request is delayed by 5 s. Which invariant breaks?",
    "an invariant name",
    _invariant,
    "The coordinator gives up and compensates; then the requests arrive. What runs after what?",
)
def _late_inv() -> str:
    sc = variant(bundled("user_registration"), policy={"barrier": False, "query_status": False})
    return simulate(sc, "orchestration", _LATE_REQUEST, seed=7).violations[0].invariant


_hashed(
    "04.dedup_key",
    "Which key should an idempotent consumer remember to recognise a request it has already "
    "applied, in both styles? (a) the saga and the step (the business key of the effect); (b) the "
    "message id; (c) the time the message arrived.",
    "a letter",
    _choice("abc"),
    "2be9424dbd531af7b09b9c43b522ab05e0a1f44461058cad310d40b2e3df9008",
    "Think of 04.retry_same_id: what changes between a command and its retry, and what does not?",
)


@_computed(
    "04.no_outbox",
    "Sign-up with `policy.outbox: false`, seed 7: the message that identity sends after "
    "create_user commits is lost on its way (`{kind: drop, step: create_user, leg: reply}`: "
    "the reply to the coordinator; in choreography the event to the broker). What is the "
    "outcome in each style?",
    "a dict {style: outcome}",
    _mapping(STYLES, _outcome),
    lambda g, e: (
        "One style is right. Who holds a copy of the lost message, or of what triggered it: "
        "the coordinator, the broker (which never received the event), the service's relay "
        "(switched off here)?"
        if sum(a == b for a, b in zip(g, e)) == 1
        else "Who is waiting for the lost message in each style?"
    ),
)
def _no_outbox() -> tuple:
    sc = variant(bundled("user_registration"), policy={"outbox": False})
    return tuple((st, simulate(sc, st, _LOST_REPLY, seed=7).outcome) for st in STYLES)


# --- 05 concurrent sagas ------------------------------------------------------------------------

_CONCURRENT = {"sagas": 12, "interarrival": {"dist": "exponential", "mean": 0.03}}


@cache
def _concurrent_run() -> Run:
    sc = variant(bundled("order_fulfillment"), workload=_CONCURRENT)
    return simulate(sc, "orchestration", ["{kind: fail_step, step: reserve_stock, saga: 4}"], 2)


def _max_in_flight(sagas: pd.DataFrame) -> int:
    points = []
    for _, s in sagas.iterrows():
        points.append((s["start"], 1))
        points.append((s["end"], -1))
    best = cur = 0
    for _t, d in sorted(points, key=lambda p: (p[0], p[1])):
        cur += d
        best = max(best, cur)
    return best


@_computed(
    "05.max_in_flight",
    "Order fulfilment with 12 sagas about 30 ms apart (the notebook's run, seed 2): at most how "
    "many sagas are in flight at the same moment (started, not yet ended)?",
    "a whole number",
    _int,
    "Sweep through the sagas' `start` and `end` times: +1 at a start, -1 at an end; keep the "
    "maximum.",
)
def _in_flight() -> int:
    return _max_in_flight(_concurrent_run().sagas)


def _dirty_window(run: Run, saga: int, step: str) -> tuple[float, float]:
    commit = [e[0] for e in run.effects if e[2] == saga and e[3] == step and e[4] == "commit"]
    undo = [e[0] for e in run.effects if e[2] == saga and e[3] == step and e[4] == "comp"]
    return commit[0], undo[0]


@_computed(
    "05.dirty_window",
    "In that run saga 4 fails at reserve_stock. For how many seconds did saga 4's card charge "
    "stand before it was refunded (within 1 ms)?",
    "a number of seconds",
    _float,
    "Find saga 4's charge_card `commit` and `comp` in `run.effects` (or the `tx_commit` and "
    "`comp_commit` rows) and subtract.",
    tolerance=1e-3,
)
def _dirty() -> float:
    a, b = _dirty_window(_concurrent_run(), 4, "charge_card")
    return b - a


@_computed(
    "05.exposed_sagas",
    "Which other sagas committed a step while saga 4's charge stood (they could have read a "
    "balance that was about to change back)?",
    "a list of saga numbers",
    _int_set,
    "Filter `run.effects` to commits of sagas other than 4 with a time inside the window of "
    "05.dirty_window (both ends excluded).",
)
def _exposed() -> frozenset[int]:
    run = _concurrent_run()
    a, b = _dirty_window(run, 4, "charge_card")
    return frozenset(e[2] for e in run.effects if e[2] != 4 and e[4] == "commit" and a < e[0] < b)


@cache
def _race(isolation: str = "") -> Run:
    sc = bundled("inventory_concurrency")
    if isolation:
        sc = variant(sc, policy={"isolation": {isolation: True}})
    return simulate(sc, "orchestration", seed=0)


def _final_stock(run: Run) -> int:
    ev = run.events
    writes = ev[
        ev["kind"].isin(["tx_commit", "comp_commit"]) & ev["detail"].str.startswith("stock:")
    ]
    return int(writes["detail"].iloc[-1].split("->")[1])


@_computed(
    "05.final_stock",
    "Orders racing for stock (`inventory_concurrency`, orchestration, seed 0): what stock value "
    "does the inventory hold at the end?",
    "a whole number",
    _int,
    "Read the last write of the stock in the trace: the `tx_commit`/`comp_commit` rows whose "
    "detail reads `stock: a -> b`. Is it what the orders that went through would leave?",
)
def _stock() -> int:
    return _final_stock(_race())


def _isolation_name(x: Any) -> str:
    from .scenario import Isolation

    return _one_of(Isolation.model_fields, "an isolation countermeasure")(x)


@_computed(
    "05.anomalies",
    "In that run, which isolation anomalies does the checker report?",
    "a list of invariant names",
    _str_set,
    lambda g, e: (
        f"{len(g & e)} of yours are reported"
        + (f"; {len(g - e)} are not" if g - e else "")
        + ("; some are missing" if e - g else "")
        + ". Read `run.violations_frame()`."
    ),
)
def _anomalies() -> frozenset[str]:
    iso = {"lost_update", "dirty_read", "non_repeatable_read"}
    return frozenset(v.invariant for v in _race().violations if v.invariant in iso)


@_computed(
    "05.costly_countermeasure",
    "Switch on each countermeasure of `policy.isolation` alone. All of them remove the "
    "anomalies here; which one lets no order through at all (every saga compensated)?",
    "a countermeasure (a key of `policy.isolation`)",
    _isolation_name,
    "Run the race once per countermeasure and compare `run.metrics['outcomes']`.",
)
def _costly() -> str:
    from .scenario import Isolation

    return next(k for k in Isolation.model_fields if _race(k).metrics["outcomes"]["completed"] == 0)


@_computed(
    "05.stock_with_commutative",
    "With `policy.isolation.commutative: true`, what stock is left at the end?",
    "a whole number",
    _int,
    "Increments commute: the final value is the initial stock minus the reservations that "
    "stand. Check it against the completed orders.",
)
def _stock_commutative() -> int:
    return _final_stock(_race("commutative"))


_hashed(
    "05.countermeasure",
    "create_order writes `status: pending` and approve_order later writes `status: approved`. "
    "Which countermeasure against isolation anomalies is that? (a) commutative updates; (b) "
    "reread value; (c) semantic lock; (d) version file.",
    "a letter",
    _choice("abcd"),
    "73f7ee13cfb93270c4dac569893568dcf616eb8d82e91b66eb57bc757612d06c",
    "Which one marks a record as 'in the middle of a saga' so that others can act on that?",
)


# --- 06 experiments ------------------------------------------------------------------------


@cache
def _matrix() -> pd.DataFrame:
    from .experiments import fault_matrix

    return fault_matrix(bundled("user_registration"), seed=7)


def _no_outbox_signup() -> Scenario:
    return variant(bundled("user_registration"), policy={"outbox": False})


@cache
def _bare_matrix() -> pd.DataFrame:
    from .experiments import fault_matrix

    return fault_matrix(_no_outbox_signup(), seed=7)


@_computed(
    "06.stalled_points",
    "In the fault matrix of the sign-up with `policy.outbox: false` (seed 7), which fault "
    "points leave the choreography stalled?",
    "a list of values of the `point` column",
    _str_set,
    lambda g, e: (
        f"{len(g & e)} of yours are right"
        + (f", {len(g - e)} are not stalled points" if g - e else "")
        + (", and some are missing" if e - g else "")
        + ". Filter the matrix on style and outcome."
    ),
)
def _stalled_points() -> frozenset[str]:
    m = _bare_matrix()
    sel = m[(m["style"] == "choreography") & (m["outcome"] == "stalled")]
    return frozenset(sel["point"])


def _fault_type(x: Any) -> str:
    from .experiments import FAULT_TYPES

    return _one_of(FAULT_TYPES, "a fault type of the matrix")(x)


@_computed(
    "06.unsurvivable",
    "Which fault type of the matrix leaves both styles inconsistent, whatever the step?",
    "a fault type (a key of `ss.experiments.FAULT_TYPES`)",
    _fault_type,
    "Group the inconsistent rows by `fault_type`. Could any coordination style fix it?",
)
def _unsurvivable() -> str:
    m = _matrix()
    bad = m[m["outcome"] == "inconsistent"]
    types = bad.groupby("fault_type")["style"].nunique()
    return str(types[types == len(STYLES)].index[0])


@cache
def _mc() -> Any:
    from .experiments import monte_carlo

    return monte_carlo(_no_outbox_signup(), 2000, seed=1, executor="serial")


def _stalled_row(style: str) -> pd.Series:
    o = _mc().outcomes
    return o[(o["style"] == style) & (o["outcome"] == "stalled")].iloc[0]


@_computed(
    "06.more_stalls",
    "Monte Carlo, sign-up with `policy.outbox: false`, 2,000 sagas per style, seed 1, default "
    "rates: which style ends more sagas stalled?",
    "a style",
    _style,
    "Read the `stalled` rows of `mc_off.outcomes`. Without the outbox relay, which style can "
    "lose an event that nobody waits for?",
)
def _more_stalls() -> str:
    return max(STYLES, key=lambda st: _stalled_row(st)["share"])


@_computed(
    "06.intervals_overlap",
    "In that Monte Carlo (outbox off), do the two styles' 95 % intervals for the stalled share "
    "overlap?",
    "True or False",
    _bool,
    "Compare `ci_low` and `ci_high` of the two `stalled` rows: do the ranges share any value?",
)
def _overlap() -> bool:
    a, b = _stalled_row("orchestration"), _stalled_row("choreography")
    return bool(a["ci_low"] <= b["ci_high"] and b["ci_low"] <= a["ci_high"])


@cache
def _sweep() -> pd.DataFrame:
    from .experiments import sweep

    return sweep(
        _no_outbox_signup(),
        "network.loss",
        [0.0, 0.05, 0.1, 0.2],
        replications=5,
        seed=1,
        sagas=20,
        executor="serial",
    )


@_computed(
    "06.completed_at_10pct_loss",
    "Sweep of `network.loss` over 0, 0.05, 0.1, 0.2 on the sign-up with `policy.outbox: false` "
    "(5 replications of 20 sagas, seed 1): the mean share of choreographed sagas that complete "
    "at a loss of 0.1 (within 0.01)?",
    "a number between 0 and 1",
    _float,
    "Use `ss.summarize_sweep(df, 'completed')` and pick the row for value 0.1 and choreography "
    "(a share, not a percentage).",
    tolerance=0.01,
)
def _completed_at() -> float:
    from .experiments import summarize_sweep

    s = summarize_sweep(_sweep(), "completed")
    row = s[(s["value"] == 0.1) & (s["style"] == "choreography")]
    return float(row["mean"].iloc[0])


_fault_kind = _one_of(FAULT_KINDS, "a fault kind")


@_computed(
    "06.shrunk_kind",
    "`find_and_shrink` on the sign-up with `policy.idempotent: false` (orchestration, seed 3): "
    "the minimal plan has one fault. Of which kind?",
    "a fault kind",
    _fault_kind,
    "Print the `Shrunk` result: it is a YAML fault list.",
)
def _shrunk() -> str:
    from .experiments import find_and_shrink

    sc = variant(bundled("user_registration"), policy={"idempotent": False})
    found = find_and_shrink(sc, "orchestration", seed=3)
    return str(found.faults[0]["kind"])


# --- 07 design your own saga -------------------------------------------------------------------

BROKEN_SCENARIO = """\
name: ticket-purchase
title: Buy a concert ticket
services:
  seats: {}
  payments: {}
  tickets: {}
steps:
  - name: hold_seat
    service: seats
    action: hold_seat
    compensation: release_seat
  - name: charge
    service: payment
    action: charge_card
    compensation: refund_card
  - name: issue_ticket
    service: tickets
    action: issue_ticket
    compensation: void_ticket
    kind: pivot
  - name: email_ticket
    service: tickets
    action: email_ticket
    kind: retriable
policy: {timeout: 0.5, retries: 3, backof: 2.0}
"""
"""The scenario with mistakes that exercise 07.find_problems asks about."""


def _problem_paths() -> frozenset[str]:
    try:
        parse_scenario(BROKEN_SCENARIO, "broken.yaml")
    except ScenarioError as err:
        first = {p.path for p in err.problems}
    else:  # pragma: no cover - the text is broken on purpose
        raise AssertionError("BROKEN_SCENARIO parses")
    # Schema errors hide reference errors: fix them and look again, as a student would.
    fixed = BROKEN_SCENARIO.replace("backof:", "backoff:")
    try:
        parse_scenario(fixed, "broken.yaml")
    except ScenarioError as err:
        return frozenset(first | {p.path for p in err.problems})
    return frozenset(first)  # pragma: no cover


_add(
    _Exercise(
        "07.find_problems",
        "List the field paths of every problem in `cw.BROKEN_SCENARIO` (as `steps[1].service`). "
        "Fixing one kind of problem may reveal others.",
        "a list of field paths",
        _str_set,
        cache(_problem_paths),
        hint=lambda g, e: (
            f"You found {len(g & e)} of them"
            + (f", and {len(g - e)} path(s) that are not problems" if g - e else "")
            + ". Validate with `ss.parse_scenario(text)` and read `err.problems`; then fix and "
            "validate again."
        ),
    )
)

_REQUIRE = (
    "at least 4 steps, at least 3 services, a pivot, at least one retriable step and at least "
    "two steps with a compensation"
)


def _parse_student_scenario(text: Any) -> Scenario:
    if isinstance(text, Scenario):
        return text
    if not isinstance(text, str):
        raise _Malformed("expected the scenario as YAML text (a string) or a Scenario")
    try:
        return parse_scenario(text, "your scenario")
    except ScenarioError as err:
        raise _Malformed("it does not validate:\n" + "\n".join(map(str, err.problems))) from None


def _design_problems(sc: Scenario) -> list[str]:
    out = []
    if len(sc.steps) < 4:
        out.append(f"it has {len(sc.steps)} steps (at least 4)")
    if len(sc.services) < 3:
        out.append(f"it has {len(sc.services)} services (at least 3)")
    if sc.pivot_index is None:
        out.append("it has no pivot")
    if not any(s.kind == "retriable" for s in sc.steps):
        out.append("it has no retriable step")
    if sum(s.undoable for s in sc.steps) < 2:
        out.append("fewer than two steps have a compensation")
    return out


def _judge_my_saga(text: Any) -> tuple[bool, str]:
    sc = _parse_student_scenario(text)
    problems = _design_problems(sc)
    if problems:
        return False, f"It validates, but {'; '.join(problems)}. The brief: {_REQUIRE}."
    for st in STYLES:
        run = simulate(sc, st, seed=1, sagas=1)
        if run.outcome != "completed":
            return False, f"Without faults, saga 1 ends {run.outcome} in {st}: it should complete."
    return True, f"'{sc.name}' has {len(sc.steps)} steps and completes in both styles."


_add(
    _Exercise(
        "07.my_saga",
        f"Write your own saga as a scenario: {_REQUIRE}. It must complete in both styles without "
        "faults.",
        "YAML text",
        lambda x: x,
        check_answer=_judge_my_saga,
    )
)


def survival_faults(sc: Scenario) -> list[tuple[str, list[dict]]]:
    """The fault plans exercise 07.survives runs a scenario through, each with a label."""
    plans: list[tuple[str, list[dict]]] = []
    pivot = sc.pivot_index if sc.pivot_index is not None else len(sc.steps) - 1
    for s in sc.steps:
        plans.append((f"{s.name} fails", [{"kind": "fail_step", "step": s.name}]))
        plans.append(
            (
                f"{s.name} request duplicated",
                [{"kind": "duplicate", "step": s.name, "leg": "request"}],
            )
        )
        plans.append(
            (f"{s.name} request lost", [{"kind": "drop", "step": s.name, "leg": "request"}])
        )
        if s.undoable:
            plans.append(
                (
                    f"{sc.steps[pivot].name} fails, undoing {s.name} fails 7 times",
                    [
                        {"kind": "fail_step", "step": sc.steps[pivot].name},
                        {"kind": "fail_compensation", "step": s.name, "times": 7},
                    ],
                )
            )
    slow = {"kind": "delay", "step": sc.steps[pivot].name, "leg": "request", "extra": 3.0}
    plans.append((f"{sc.steps[pivot].name} requests delayed 3 s", [slow]))
    for name in sc.services:
        crash = {"kind": "crash", "service": name, "at": 0.0, "for": 3.0}
        plans.append((f"{name} down for 3 s", [crash]))
    return plans


def _judge_survives(text: Any) -> tuple[bool, str]:
    sc = _parse_student_scenario(text)
    problems = _design_problems(sc)
    if problems:
        return False, f"First make it meet the brief of 07.my_saga: {'; '.join(problems)}."
    bad = []
    total = 0
    for label, faults in survival_faults(sc):
        for st in STYLES:
            total += 1
            run = simulate(sc, st, faults, seed=1, sagas=1)
            if run.outcome not in ("completed", "compensated"):
                why = ", ".join(sorted({v.invariant for v in run.violations}))
                bad.append(f"{label} ({st}): {run.outcome}" + (f" [{why}]" if why else ""))
    if bad:
        return False, (
            f"{len(bad)} of {total} runs did not end completed or compensated:\n  "
            + "\n  ".join(bad[:8])
            + ("\n  ..." if len(bad) > 8 else "")
            + "\nWhich policy settings decide how long the saga keeps trying?"
        )
    return True, f"All {total} runs ended completed or compensated, with no violation."


_add(
    _Exercise(
        "07.survives",
        "Make your saga survive `cw.survival_faults(sc)`: every run ends completed or "
        "compensated, in both styles.",
        "YAML text",
        lambda x: x,
        check_answer=_judge_survives,
    )
)


# --------------------------------------------------------------------------------------------
# check and exercises


def _is_blank(answer: Any) -> bool:
    if answer is Ellipsis or answer is None:
        return True
    if isinstance(answer, str):
        return not answer.strip()
    if isinstance(answer, dict):
        answer = list(answer.values())
    if isinstance(answer, (list, tuple, set, frozenset)):  # empty, or only placeholders
        return all(a is Ellipsis for a in answer)
    return False


def check(exercise: str, answer: Any) -> Feedback:
    """Say whether ``answer`` to ``exercise`` is right, with a hint when it is not.

    The expected answer is never shown. ``...`` (or ``None``) means "not answered yet".
    Graded exercises (see ``grade``) take your ``Participant`` subclass as the answer.

    Raises:
        KeyError: no such exercise (the message lists them).
    """
    if exercise in GRADED:
        if _is_blank(answer):
            return Feedback(exercise, "unanswered", "Write your participant class, then check it.")
        g = grade(exercise, answer)
        return Feedback(exercise, "right" if g.passed else "wrong", g.summary())
    ex = EXERCISES.get(exercise)
    if ex is None:
        raise KeyError(f"no exercise {exercise!r}; known: {', '.join(sorted(all_exercise_ids()))}")
    if _is_blank(answer):
        return Feedback(exercise, "unanswered", f"Expected {ex.form}.")
    try:
        if ex.check_answer is not None:
            ok, text = ex.check_answer(answer)
            return Feedback(exercise, "right" if ok else "wrong", text)
        given = ex.normalize(answer)
    except _Malformed as err:
        return Feedback(exercise, "malformed", f"Expected {ex.form}: {err}")
    if ex.digest is not None:
        ok = _digest(exercise, given) == ex.digest
    else:
        expected = ex.expected()
        if ex.tolerance is not None:
            ok = abs(given - expected) <= ex.tolerance
        else:
            ok = given == expected
    if ok:
        return Feedback(exercise, "right", "")
    hint = ex.hint if isinstance(ex.hint, str) else ex.hint(given, ex.expected())
    return Feedback(exercise, "wrong", f"Hint: {hint}" if hint else "")


def all_exercise_ids() -> list[str]:
    """Every exercise id, checked and graded, in notebook order."""
    return sorted([*EXERCISES, *GRADED])


def exercises(notebook: str | None = None) -> pd.DataFrame:
    """The exercises (of one notebook: ``"02"``), with their question and the answer's form."""
    rows = []
    for eid in all_exercise_ids():
        if notebook is not None and not eid.startswith(f"{notebook}."):
            continue
        if eid in GRADED:
            g = GRADED[eid]
            rows.append((eid, g.question, "a Participant subclass (graded)"))
        else:
            ex = EXERCISES[eid]
            rows.append((eid, ex.question, ex.form))
    return pd.DataFrame(rows, columns=["exercise", "question", "answer"]).set_index("exercise")


# --------------------------------------------------------------------------------------------
# Participants and the grader


class Participant:
    """Your own behaviour for one step's service, plugged in with
    ``ss.simulate(..., participants={"create_user": MyParticipant()})``.

    The service calls you at the commit point of its local transaction (after the step's work
    took its time, and unless the transaction aborted or the service crashed first):

    - ``action(request, db)`` returns ``APPLY`` (commit the effect), ``SKIP`` (it is already
      there: commit nothing and answer success) or ``REFUSE`` (commit nothing and answer
      failure);
    - ``compensation(request, db)`` (define it to plug compensations too) returns ``UNDO``
      (undo the effect), ``NULL`` (nothing to undo: record a null compensation) or ``SKIP``
      (already undone).

    ``request`` has ``saga``, ``step``, ``phase``, ``msg_id``, ``attempt``, ``message``,
    ``source`` and ``time``. ``db`` is a dict, the service's own table: what you write there
    is committed with the transaction and survives crashes. For the phases you plug, the
    service's built-in safeguards (deduplication, barrier, null compensation) are off: they are
    your job. This base class applies everything, like a service written without them.
    """

    def action(self, request: Request, db: dict) -> str:
        """Decide what this delivery of the step's action does. Default: always apply."""
        return APPLY


@dataclass(frozen=True)
class _Family:
    name: str
    description: str
    make: Callable[[random.Random], tuple[list[dict], dict]]  # -> (faults, scenario changes)


@dataclass(frozen=True)
class _Graded:
    question: str
    scenario: str
    step: str
    families: tuple[_Family, ...]


def _f_dup(r: random.Random) -> tuple[list[dict], dict]:
    n = r.randint(1, 3)
    return [{"kind": "duplicate", "step": "create_user", "leg": "request", "count": n}], {}


def _f_lost_reply(r: random.Random) -> tuple[list[dict], dict]:
    n = r.randint(1, 2)
    return [{"kind": "drop", "step": "create_user", "leg": "reply", "count": n}], {}


def _f_slow_reply(r: random.Random) -> tuple[list[dict], dict]:
    extra = round(r.uniform(0.45, 1.5), 3)
    return [
        {"kind": "delay", "step": "create_user", "leg": "reply", "extra": extra, "count": 1}
    ], {}


def _f_crash(r: random.Random) -> tuple[list[dict], dict]:
    at, dur = round(r.uniform(0.015, 0.06), 4), round(r.uniform(0.1, 1.5), 3)
    return [{"kind": "crash", "service": "identity", "at": at, "for": dur}], {}


def _f_flaky(r: random.Random) -> tuple[list[dict], dict]:
    dup, loss = round(r.uniform(0.15, 0.35), 3), round(r.uniform(0.0, 0.05), 3)
    sagas = r.randint(3, 6)
    return [], {"network": {"duplicate": dup, "loss": loss}, "workload": {"sagas": sagas}}


def _f_late_request(r: random.Random) -> tuple[list[dict], dict]:
    extra = round(r.uniform(0.6, 6.0), 3)
    return [{"kind": "delay", "step": "create_user", "leg": "request", "extra": extra}], {}


def _f_fail_after(r: random.Random) -> tuple[list[dict], dict]:
    return [{"kind": "fail_step", "step": "send_welcome_email"}], {
        "workload": {"sagas": r.randint(1, 4)}
    }


def _f_lost_requests(r: random.Random) -> tuple[list[dict], dict]:
    n = r.randint(4, 6)
    return [{"kind": "drop", "step": "create_user", "leg": "request", "count": n}], {}


def _f_dup_compensation(r: random.Random) -> tuple[list[dict], dict]:
    n = r.randint(1, 2)
    return [
        {"kind": "fail_step", "step": "send_welcome_email"},
        {"kind": "duplicate", "step": "create_user", "compensation": True, "count": n},
    ], {}


def _f_late_then_fail(r: random.Random) -> tuple[list[dict], dict]:
    extra = round(r.uniform(0.3, 1.2), 3)
    return [
        {"kind": "delay", "step": "create_user", "leg": "request", "extra": extra, "count": 1},
        {"kind": "fail_step", "step": "send_welcome_email"},
    ], {}


_CONSUMER_FAMILIES = (
    _Family("duplicated request", "the create_user request arrives twice or more", _f_dup),
    _Family("lost reply", "the answer is lost: the coordinator retries", _f_lost_reply),
    _Family("slow reply", "the answer comes after the timeout: a retry crosses it", _f_slow_reply),
    _Family("crash", "the identity service crashes during the step", _f_crash),
    _Family("flaky network", "several sagas; random duplicates and losses everywhere", _f_flaky),
)
_SAFE_FAMILIES = (
    *_CONSUMER_FAMILIES,
    _Family("late request", "requests arrive after the coordinator gave up", _f_late_request),
    _Family("failure after", "send_welcome_email fails: create_user is undone", _f_fail_after),
    _Family("lost requests", "every request is lost: a compensation for nothing", _f_lost_requests),
    _Family("duplicated compensation", "the undo request arrives twice", _f_dup_compensation),
    _Family("late, then failure", "a late request and a failure later", _f_late_then_fail),
)

GRADED: dict[str, _Graded] = {
    "04.idempotent_consumer": _Graded(
        "Write an idempotent consumer for create_user: however often a request is delivered or "
        "retried, the user is created once.",
        "user_registration",
        "create_user",
        _CONSUMER_FAMILIES,
    ),
    "04.safe_participant": _Graded(
        "Write a safe create_user participant: idempotent action and compensation, a null "
        "compensation when the user was never created, and a barrier that refuses a request "
        "arriving after its compensation.",
        "user_registration",
        "create_user",
        _SAFE_FAMILIES,
    ),
}

GRADER_POLICY = {"policy": {"query_status": False}}
"""What the grader changes in every scenario: the coordinator does not ask a service whether a
timed-out step ran (a status query, whose fence the service keeps itself), so late requests
reach the participant and its own barrier is what is tested."""

SALT_VARIABLE = "SAGA_SIM_GRADER_SALT"
"""Set this environment variable to change the hidden seeds (for example, for an exam)."""


def _hidden_seeds(exercise: str, n: int) -> list[int]:
    salt = os.environ.get(SALT_VARIABLE, "saga-sim")
    out = []
    for k in range(n):
        h = hashlib.sha256(f"{salt}|{exercise}|hidden|{k}".encode()).digest()
        out.append(1000 + int.from_bytes(h[:4], "big") % 1_000_000)
    return out


@dataclass(frozen=True)
class Case:
    """One graded run: a fault family, a style, a seed (None when hidden) and what happened."""

    family: str
    style: str
    seed: int | None
    outcomes: tuple[str, ...]
    reference: tuple[str, ...]
    violations: tuple[str, ...]
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error and not self.violations and self.outcomes == self.reference


@dataclass(frozen=True)
class Grade:
    """A graded participant: every case, and whether all of them passed."""

    exercise: str
    cases: tuple[Case, ...] = field(repr=False)

    @property
    def passed(self) -> bool:
        return all(c.ok for c in self.cases)

    def __bool__(self) -> bool:
        return self.passed

    def invariants(self) -> pd.DataFrame:
        """For each invariant (and for 'outcome as a correct service'), in how many runs it held."""
        n = len(self.cases)
        rows = []
        for name in INVARIANTS:
            broke = sum(
                1 for c in self.cases if any(v.startswith(name + ":") for v in c.violations)
            )
            rows.append((name, n - broke, n))
        same = sum(1 for c in self.cases if not c.error and c.outcomes == c.reference)
        rows.append(("same outcome as a correct service", same, n))
        errors = sum(1 for c in self.cases if c.error)
        rows.append(("ran without an exception", n - errors, n))
        return pd.DataFrame(rows, columns=["check", "held", "runs"]).set_index("check")

    def failures(self) -> pd.DataFrame:
        """The failed cases: visible seeds in full; hidden ones by family and style only."""
        rows = []
        for c in self.cases:
            if c.ok:
                continue
            what = (
                c.error
                or "; ".join(c.violations)
                or (
                    f"outcomes {', '.join(c.outcomes)} where a correct service gives "
                    f"{', '.join(c.reference)}"
                )
            )
            rows.append((c.family, c.style, "hidden" if c.seed is None else c.seed, what))
        return pd.DataFrame(rows, columns=["family", "style", "seed", "what went wrong"])

    def summary(self) -> str:
        """A short text: how many runs passed, and the first problems."""
        n = len(self.cases)
        bad = [c for c in self.cases if not c.ok]
        if not bad:
            fams = len({c.family for c in self.cases})
            return f"All {n} runs passed ({fams} fault families, both styles, hidden seeds too)."
        lines = [f"{n - len(bad)} of {n} runs passed."]
        shown = set()
        for c in bad:
            key = (c.family, c.style)
            if key in shown:
                continue
            shown.add(key)
            seed = "a hidden seed" if c.seed is None else f"seed {c.seed}"
            what = (
                c.error
                or "; ".join(c.violations[:2])
                or (
                    f"outcomes {', '.join(c.outcomes)}, expected as a correct service "
                    f"{', '.join(c.reference)}"
                )
            )
            lines.append(f"- {c.family}, {c.style}, {seed}: {what}")
            if len(shown) >= 5:
                break
        return "\n".join(lines)

    def __repr__(self) -> str:
        mark = "✔" if self.passed else "✘"
        return f"{mark} {self.exercise}: {self.summary()}"

    def _repr_html_(self) -> str:
        fb = Feedback(self.exercise, "right" if self.passed else "wrong", self.summary())
        return fb._repr_html_() + self.invariants().to_html()


def _factory(participant: Any) -> Callable[[], Any]:
    if isinstance(participant, type):
        return participant
    if callable(participant) and not hasattr(participant, "action"):
        return participant
    return lambda: copy.deepcopy(participant)


@cache
def _reference(scenario: str, changes: str, faults: str, style: str, seed: int) -> tuple:
    sc = _scenario_with(scenario, changes)
    run = simulate(sc, style, yaml.safe_load(faults), seed)
    return tuple(run.sagas["outcome"].astype(str))


@cache
def _scenario_with(scenario: str, changes: str) -> Scenario:
    ch = yaml.safe_load(changes)
    return variant(bundled(scenario), **ch) if ch else bundled(scenario)


def grade(exercise: str, participant: Any, seeds: int = 4, hidden: int = 16) -> Grade:
    """Run a participant under every fault family of a graded exercise, in both styles.

    Args:
        exercise: a graded exercise id (``"04.idempotent_consumer"``, ``"04.safe_participant"``).
        participant: your ``Participant`` subclass (a fresh instance is made for every run), or
            an instance (copied for every run).
        seeds: how many visible seeds per family (1, 2, ...): failures on them show the seed.
        hidden: how many hidden seeds per family, derived here and never listed.

    Returns:
        A ``Grade``: it passes when no invariant broke and every run ended as it does with a
        correct service, on every seed.
    """
    if exercise not in GRADED:
        raise KeyError(f"no graded exercise {exercise!r}; known: {', '.join(GRADED)}")
    g = GRADED[exercise]
    make = _factory(participant)
    all_seeds: list[int | None] = list(range(1, seeds + 1))
    secret = _hidden_seeds(exercise, hidden)
    cases = []
    for fam in g.families:
        for k, seed in enumerate([*all_seeds, *secret]):
            visible = k < len(all_seeds)
            faults, changes = fam.make(random.Random(f"{exercise}|{fam.name}|{seed}"))
            changes = _merge(GRADER_POLICY, changes)
            f_key, c_key = yaml.safe_dump(faults), yaml.safe_dump(changes)
            sc = _scenario_with(g.scenario, c_key)
            for st in STYLES:
                ref = _reference(g.scenario, c_key, f_key, st, seed)
                try:
                    run = simulate(sc, st, faults, seed, participants={g.step: make()})
                except Exception as exc:  # the student's code failed: report it, keep grading
                    cases.append(
                        Case(
                            fam.name,
                            st,
                            seed if visible else None,
                            (),
                            ref,
                            (),
                            f"{type(exc).__name__}: {exc}",
                        )
                    )
                    continue
                viol = tuple(f"{v.invariant}: {v.message}" for v in run.violations)
                outs = tuple(run.sagas["outcome"].astype(str))
                cases.append(Case(fam.name, st, seed if visible else None, outs, ref, viol))
    return Grade(exercise, tuple(cases))
