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


# --- presets: each preset's text says what the run shows, as the app runs it (seed 7, the
# scenario's own workload), on every bundled scenario. Saga 1 is the one the faults hit.

PRESET_CASES = [(name, p.key) for name in NAMES for p in ss.presets(scenario(name))]
SAGA1 = {  # (orchestration, choreography) outcome of saga 1
    "happy": ("completed", "completed"),
    "late_step_fails": ("compensated", "compensated"),
    "first_step_fails": ("compensated", "compensated"),
    "service_down": (None, "completed"),
    "reply_lost": ("completed", "completed"),
    "compensation_fails": ("inconsistent", "inconsistent"),
    "partition": (None, "completed"),
    "duplicate": ("completed", "completed"),
    "coordinator_crash": ("completed", "completed"),
}


def _committed(run: ss.Run, step: str, saga: int = 1) -> bool:
    return any(e[2] == saga and e[3] == step and e[4] == "commit" for e in run.effects)


@pytest.mark.parametrize("name,key", PRESET_CASES)
def test_preset_text_matches_the_run(name, key):
    sc = scenario(name)
    (p,) = [x for x in ss.presets(sc) if x.key == key]
    runs = ss.compare(sc, faults=list(p.faults), seed=7).runs
    first = {style: str(runs[style].sagas["outcome"].iloc[0]) for style in ss.STYLES}
    racing = "race for shared data" in ss.presets(sc)[0].lesson
    if key == "happy" and racing:
        for style in ss.STYLES:
            assert "inconsistent" in outcomes(runs[style])
            assert violations(runs[style]) & {"lost_update", "non_repeatable_read"}
        return
    if "race for shared data" in p.lesson:
        assert set().union(*(violations(r) for r in runs.values())) & {
            "lost_update",
            "dirty_read",
            "non_repeatable_read",
        }
    want = SAGA1[key]
    undo = next(s for s in sc.steps if s.undoable)
    if key in ("service_down", "partition"):
        # the orchestrator compensates around the step unless it committed before the fault
        want = ("completed" if _committed(runs[ORCH], undo.name) else "compensated", want[1])
    assert (first[ORCH], first[CHOR]) == want, p.lesson
    if not racing and key not in ("service_down", "partition"):
        for style in ss.STYLES:  # every saga of the workload tells the same story
            assert outcomes(runs[style]) == {want[ss.STYLES.index(style)]}, p.lesson
    if key == "reply_lost":  # both recover, each by its own safeguard, each a little late
        ev = runs[CHOR].events
        relay = ev[(ev["kind"] == "retry") & (ev["source"] == undo.service)]
        assert relay["detail"].str.contains("outbox relay").any()
        assert int(runs[ORCH].sagas["timeouts"].iloc[0]) >= 1
    if key == "first_step_fails" and "alongside" in p.lesson:
        beside = p.lesson.split("while ", 1)[1].split(" runs", 1)[0].split(", ")
        for style in ss.STYLES:
            ops = {e[4] for e in runs[style].effects if e[2] == 1 and e[3] in beside}
            assert ops & {"comp", "comp_null"}, (style, ops)
    if key == "first_step_fails" and "nothing to undo" in p.lesson:
        for style in ss.STYLES:
            assert not [e for e in runs[style].effects if e[4] == "comp"]
