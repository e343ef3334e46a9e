"""Safety under adversarial faults (issue 10): no wrong answer with every safeguard on.

The property draws random valid sagas and fault plans that heal (``strategies.safety_cases``) and
checks both styles with ``safety_oracle.check``: no invariant violated, orchestration never
``inconsistent``, a choreographed saga stalled only for a reason the trace shows, an orchestrated
saga that started always ends, and a saga's declared end never before its last effect.

Budgets: the "ci" profile (tests/conftest.py) runs 300 derandomized examples; run thousands with
``pytest tests/test_safety.py --hypothesis-profile=deep`` (or ``tests/safety_fuzz.py``, which
collects every distinct failure and shrinks each to a case file).

Known failures are listed in ``KNOWN``: the property tolerates them (so the suite stays green and
still catches any new kind of failure), and each has a shrunk reproduction under
tests/safety_cases/ replayed below as a strict xfail. Fixing one turns its replay into an XPASS:
remove the case's ``xfail`` key, and drop a ``KNOWN`` entry once every case it names passes.
Two more properties: with no fault, one saga and no floor, every saga completes; and the
generator reaches each feature issue 10 asks for (``test_the_generator_reaches``).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import Phase, find, given, settings

import saga_sim as ss
from saga_sim.scenario import scenario_from_dict
from tests.safety_oracle import PUBLISHER_ACKS, Failure, check, check_healthy, check_run
from tests.strategies import SafetyCase, healthy_cases, safety_cases

CASES = Path(__file__).resolve().parent / "safety_cases"

KNOWN: dict[tuple[str, str, str], tuple[str, ...]] = {
    # (style, assertion, detail): the case files (tests/safety_cases) known to show it. None
    # left: every class found so far is fixed, and each case file replays its reproduction.
}
"""Failure kinds the current code shows, each with its reproductions (tests/safety_cases)."""


def unexpected(case: SafetyCase) -> list[Failure]:
    """The failures of a case that are neither the plan's doing nor already known."""
    return [f for f in check(case.model, case.faults, case.seed) if f.signature not in KNOWN]


@given(safety_cases())
def test_every_safeguard_on_no_wrong_answer(case: SafetyCase) -> None:
    found = unexpected(case)
    assert not found, "\n".join(str(f) for f in found) + "\n\n" + case.to_yaml()


# a third of the profile's budget: with no fault the runs are short, but slow steps are many
@settings(max_examples=max(20, settings.default.max_examples // 3))
@given(healthy_cases())
def test_no_fault_one_saga_completes(case: SafetyCase) -> None:
    found = [f for f in check_healthy(case.model, case.seed) if f.signature not in KNOWN]
    assert not found, "\n".join(str(f) for f in found) + "\n\n" + case.to_yaml()


# --------------------------------------------------------------------------------------------
# The shrunk reproductions


def _load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def _case_params() -> list:
    out = []
    for path in sorted(CASES.glob("*.yaml")):
        data = _load(path)
        marks = []
        if data.get("xfail"):
            marks.append(pytest.mark.xfail(strict=True, reason=data["xfail"]))
        out.append(pytest.param(path, id=path.stem, marks=marks))
    return out


@pytest.mark.parametrize("path", _case_params())
def test_safety_case(path: Path) -> None:
    """Replay one reproduction: the named style(s), and the assertion that it once broke."""
    data = _load(path)
    sc = scenario_from_dict(data["scenario"], path.name)
    styles = data["style"] if isinstance(data["style"], list) else [data["style"]]
    acks = data.get("publisher_acks", PUBLISHER_ACKS)
    assertion = tuple(data["assertion"])
    for style in styles:
        run = ss.simulate(sc, style, faults=data.get("faults", []), seed=data["seed"])
        found = [f for f in check_run(run, publisher_acks=acks) if f.assertion == assertion[0]]
        if assertion[0] == "healthy_not_completed" and run.outcome != "completed":
            found.append(Failure(style, assertion[0], run.outcome, 1, "no fault, not completed"))
        assert not found, "\n".join(str(f) for f in found)
        if "outcome" in data:  # the outcome the protocol should reach, where the case says
            assert run.sagas["outcome"].astype(str).tolist() == data["outcome"], style


def test_every_known_failure_has_a_reproduction() -> None:
    names = {p.stem for p in CASES.glob("*.yaml")}
    missing = {sig: files for sig, files in KNOWN.items() if not set(files) <= names}
    assert not missing


def test_the_oracle_sees_a_broken_invariant() -> None:
    """The oracle is not vacuous: a compensation that fails for good is reported."""
    sc = ss.load_scenario(Path(__file__).resolve().parent.parent / "scenarios/trip_booking.yaml")
    faults = [
        {"kind": "fail_step", "step": sc.steps[-1].name},
        {"kind": "fail_compensation", "step": next(s.name for s in sc.steps if s.undoable)},
    ]
    found = check(sc, faults, seed=0, styles=("orchestration",))
    assert any(f.signature == ("orchestration", "violation", "semantic_atomicity") for f in found)


def _sources_and_sinks(case: SafetyCase) -> tuple[int, int]:
    preds = case.model.predecessors
    n = len(preds)
    sinks = [i for i in range(n) if not any(i in p for p in preds)]
    return sum(1 for p in preds if not p), len(sinks)


_COVERAGE = {
    "several sources": lambda c: _sources_and_sinks(c)[0] >= 2,
    "several sinks": lambda c: _sources_and_sinks(c)[1] >= 2,
    "pivot and retriable": lambda c: {"pivot", "retriable"} <= {s.kind for s in c.model.steps},
    "shared data with a floor": lambda c: any(
        s.data is not None and s.data.change and s.data.floor is not None for s in c.model.steps
    ),
    "several sagas on shared data": lambda c: (
        c.model.workload.sagas >= 3 and any(s.data is not None for s in c.model.steps)
    ),
    "parallel compensation": lambda c: c.model.policy.compensation_order == "parallel",
    "a slow step": lambda c: any(
        getattr(s.duration, "value", 0) > c.model.policy.timeout for s in c.model.steps
    ),
    **{
        f"fault {kind}": (lambda c, kind=kind: kind in {f["kind"] for f in c.faults})
        for kind in ss.FAULT_KINDS
    },
    "crash trigger after commit": lambda c: any(f.get("when") == "after_commit" for f in c.faults),
    "five faults": lambda c: len(c.faults) == 5,
}


@pytest.mark.parametrize("feature", list(_COVERAGE))
def test_the_generator_reaches(feature: str) -> None:
    """The strategy covers what issue 10 asks for (found within a small budget, no simulation)."""
    found = find(
        safety_cases(),
        _COVERAGE[feature],
        settings=settings(
            max_examples=500, database=None, derandomize=True, phases=[Phase.generate]
        ),
    )
    assert _COVERAGE[feature](found)
