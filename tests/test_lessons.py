"""Each safeguard lesson does what it says: the failure with the switch off, the fix with it on,
on every bundled scenario it applies to (run through the library, as the app runs it)."""

from __future__ import annotations

from pathlib import Path

import pytest

import saga_sim as ss
from saga_sim import share

ROOT = Path(__file__).resolve().parent.parent
NAMES = sorted(p.stem for p in (ROOT / "scenarios").glob("*.yaml"))
ORCH, CHOR = ss.STYLES


def scenario(name: str) -> ss.Scenario:
    return ss.load_scenario(ROOT / "scenarios" / f"{name}.yaml")


def play(sc: ss.Scenario, lesson: ss.Lesson, fixed: bool) -> dict[str, ss.Run]:
    knobs = lesson.fix if fixed else lesson.without
    eff = share.apply_knobs(sc, share.RunConfig(**dict(knobs)))
    cmp = ss.compare(eff, faults=list(lesson.faults), seed=lesson.seed, sagas=lesson.sagas)
    return cmp.runs


def outcomes(run: ss.Run) -> set[str]:
    return {str(o) for o in run.sagas["outcome"]}


def violations(run: ss.Run) -> set[str]:
    return {v.invariant for v in run.violations}


def dead_letters(run: ss.Run) -> int:
    return int((run.events["kind"] == "dead_letter").sum())


def clean(run: ss.Run, outcome: str) -> bool:
    return outcomes(run) == {outcome} and not run.violations


def check_no_idempotency(off, on):
    for style in ss.STYLES:
        assert outcomes(off[style]) == {"inconsistent"}
        assert violations(off[style]) == {"duplicate_effect"}
        assert clean(on[style], "completed")


def check_no_outbox(off, on):
    assert clean(off[ORCH], "completed") and outcomes(off[CHOR]) == {"stalled"}
    assert clean(on[ORCH], "completed") and clean(on[CHOR], "completed")


def check_hanging(off, on):
    assert violations(off[ORCH]) == {"action_after_compensation"}
    assert clean(on[ORCH], "compensated")
    assert clean(off[CHOR], "completed") and clean(on[CHOR], "completed")


def check_timed_out_but_ran(off, on):
    assert outcomes(off[ORCH]) == {"inconsistent"}
    assert violations(off[ORCH]) == {"semantic_atomicity"}
    assert clean(on[ORCH], "compensated")
    assert clean(off[CHOR], "completed")


def check_parallel_compensation(off, on):
    for style in ss.STYLES:
        assert violations(off[style]) == {"compensation_order"}
        assert clean(on[style], "compensated")


def check_compensation_fails(off, on):
    for style in ss.STYLES:
        assert outcomes(off[style]) == {"inconsistent"}
        assert set(off[style].sagas["believed"]) == {"needs_intervention"}
        assert dead_letters(off[style]) == 1
        assert clean(on[style], "compensated")


def check_dead_letter(off, on):
    assert clean(off[ORCH], "completed")
    assert outcomes(off[CHOR]) == {"stalled"} and dead_letters(off[CHOR]) == 1
    assert clean(on[CHOR], "completed") and dead_letters(on[CHOR]) == 0


def check_no_redelivery(off, on):
    assert clean(off[ORCH], "completed") and outcomes(off[CHOR]) == {"stalled"}
    assert clean(on[CHOR], "completed")


ANOMALIES = {"lost_update", "dirty_read", "non_repeatable_read"}
REMOVES = {
    "semantic_lock": ANOMALIES,
    "commutative": {"lost_update"},
    "reread": {"lost_update", "non_repeatable_read"},
    "version": {"lost_update"},
}


def check_race(off, on):
    assert on is None
    for style in ss.STYLES:
        assert violations(off[style]) >= ANOMALIES


def check_isolation(switch):
    def check(off, on):
        for style in ss.STYLES:
            assert REMOVES[switch] <= violations(off[style])
            assert not REMOVES[switch] & violations(on[style]), violations(on[style])

    return check


CHECKS = {
    "no_idempotency": check_no_idempotency,
    "no_outbox": check_no_outbox,
    "hanging": check_hanging,
    "timed_out_but_ran": check_timed_out_but_ran,
    "parallel_compensation": check_parallel_compensation,
    "compensation_fails": check_compensation_fails,
    "dead_letter": check_dead_letter,
    "no_redelivery": check_no_redelivery,
    "race": check_race,
    **{f"isolation_{s}": check_isolation(s) for s in REMOVES},
}

CASES = [
    (name, lesson.key) for name in NAMES for lesson in ss.lessons(scenario(name)) if lesson.applies
]


def test_every_lesson_is_checked_and_each_switch_is_a_safeguard():
    keys = {lesson.key for lesson in ss.lessons(scenario(NAMES[0]))}
    assert keys == set(CHECKS)
    for lesson in ss.lessons(scenario(NAMES[0])):
        assert lesson.switch is None or lesson.switch in share.SAFEGUARDS
        for knobs in (lesson.without, lesson.fix or ()):
            assert {k for k, _ in knobs} <= set(share.SAFEGUARDS)


@pytest.mark.parametrize("name,key", CASES)
def test_lesson_shows_the_failure_and_the_fix(name, key):
    sc = scenario(name)
    (lesson,) = [x for x in ss.lessons(sc) if x.key == key]
    off = play(sc, lesson, fixed=False)
    on = play(sc, lesson, fixed=True) if lesson.fix is not None else None
    CHECKS[key](off, on)


def test_each_bundled_scenario_has_its_lessons():
    applies = {n: {x.key for x in ss.lessons(scenario(n)) if x.applies} for n in NAMES}
    assert "parallel_compensation" in applies["trip_booking"]
    assert "timed_out_but_ran" in applies["user_registration"]
    assert {"race", *(f"isolation_{s}" for s in REMOVES)} <= applies["inventory_concurrency"]
    for n in NAMES:
        assert {"no_idempotency", "no_outbox", "compensation_fails"} <= applies[n]
    reasons = {x.key: x.reason for x in ss.lessons(scenario("user_registration"))}
    assert "shared data" in reasons["race"]
    assert "two compensatable steps" in reasons["parallel_compensation"]
