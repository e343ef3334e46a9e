"""The coursework checks and grader, and the participant hook they rely on.

Every exercise has a check that fails on a wrong answer (proved below for each one, and the
list must cover them all), never shows the expected answer, and treats ``...`` as unanswered.
A participant plugged into a step decides what its local transaction does; naive participants
break the invariants the safeguards protect, careful ones keep them.
"""

from __future__ import annotations

import pytest

import saga_sim as ss
from saga_sim import coursework as cw

SIGNUP_DUP = ["{kind: duplicate, step: create_user, leg: request}"]


class _Naive(cw.Participant):
    pass


class _ByMessageId(cw.Participant):
    def action(self, request, db):
        if request.msg_id in db:
            return cw.SKIP
        db[request.msg_id] = True
        return cw.APPLY


class _ByKey(cw.Participant):
    def action(self, request, db):
        key = ("done", request.saga, request.step)
        if key in db:
            return cw.SKIP
        db[key] = True
        return cw.APPLY


class _ByKeyNoBarrier(_ByKey):
    def compensation(self, request, db):
        key = ("undone", request.saga, request.step)
        if key in db:
            return cw.SKIP
        db[key] = True
        return cw.UNDO if ("done", request.saga, request.step) in db else cw.NULL


class _AlwaysUndo(_ByKey):
    def action(self, request, db):
        if ("undone", request.saga, request.step) in db:
            return cw.REFUSE
        return super().action(request, db)

    def compensation(self, request, db):
        return cw.UNDO


class _Safe(_ByKeyNoBarrier):
    def action(self, request, db):
        if ("undone", request.saga, request.step) in db:
            return cw.REFUSE
        return super().action(request, db)


class _Rude(cw.Participant):
    def action(self, request, db):
        return "sure"


# One wrong answer per exercise: the test below checks that the list covers every exercise.
WRONG: dict[str, object] = {
    "01.pivot": "create_user",
    "01.commit_order": ["create_user", "validate_input", "send_welcome_email"],
    "01.messages": 6,
    "01.latency": 0.05,
    "01.slowest_step": "validate_input",
    "01.why_not_2pc": "c",
    "02.compensation_order": ["reserve_car", "reserve_hotel"],
    "02.undone_on_pivot_failure": ["validate_input", "create_user"],
    "02.outcomes_by_step": {
        "create_order": "compensated",
        "charge_card": "compensated",
        "reserve_stock": "completed",
        "schedule_shipment": "compensated",
        "approve_order": "completed",
    },
    "02.stuck_outcome": "compensated",
    "02.stuck_invariant": "compensation_order",
    "02.cancel_room_sends": 2,
    "03.fewer_messages_retriable": "orchestration",
    "03.lost_reply": {"orchestration": "completed", "choreography": "stalled"},
    "03.faster_on_lost_request": "choreography",
    "03.who_declares": "flights",
    "03.divergence_step": "send_welcome_email",
    "03.where_is_the_state": "b",
    "04.duplicate_without_dedup": "semantic_atomicity",
    "04.retry_same_id": True,
    "04.redelivery_same_id": False,
    "04.late_request_without_barrier": "duplicate_effect",
    "04.dedup_key": "b",
    "04.no_outbox": {"orchestration": "stalled", "choreography": "stalled"},
    "04.idempotent_consumer": _ByMessageId,
    "04.safe_participant": _ByKeyNoBarrier,
    "05.max_in_flight": 3,
    "05.dirty_window": 0.5,
    "05.exposed_sagas": [3, 5],
    "05.countermeasure": "a",
    "05.final_stock": 0,
    "05.anomalies": ["lost_update"],
    "05.costly_countermeasure": "reread",
    "05.stock_with_commutative": 0,
    "06.stalled_points": ["create_user/drop_reply"],
    "06.unsurvivable": "drop_reply",
    "06.more_stalls": "orchestration",
    "06.intervals_overlap": True,
    "06.completed_at_10pct_loss": 0.5,
    "06.shrunk_kind": "drop",
    "07.find_problems": ["steps[1].service"],
    "07.my_saga": "name: tiny\nservices: {a: {}}\nsteps: [{name: s, service: a, action: s}]\n",
    "07.survives": "name: tiny\nservices: {a: {}}\nsteps: [{name: s, service: a, action: s}]\n",
}


def test_every_exercise_has_a_wrong_answer_here():
    assert set(WRONG) == set(cw.all_exercise_ids())


@pytest.mark.parametrize("exercise", sorted(WRONG))
def test_check_says_wrong_on_a_wrong_answer(exercise: str):
    fb = cw.check(exercise, WRONG[exercise])
    assert not fb and fb.status == "wrong", repr(fb)
    assert repr(fb).startswith(f"✘ {exercise}: not yet.")
    assert "not yet" in fb._repr_html_()


@pytest.mark.parametrize("exercise", sorted(cw.EXERCISES))
def test_feedback_never_shows_the_expected_answer(exercise: str):
    ex = cw.EXERCISES[exercise]
    if ex.expected is None:
        return
    expected = ex.expected()
    shown = repr(cw.check(exercise, WRONG[exercise]))
    if isinstance(expected, float):
        assert f"{expected:.3f}" not in shown and f"{expected:.2f}" not in shown
    elif isinstance(expected, (str, int)) and not isinstance(expected, bool):
        assert str(expected) not in shown.split(":", 1)[1]
    elif isinstance(expected, tuple) and expected and isinstance(expected[0], str):
        assert repr(list(expected)) not in shown


@pytest.mark.parametrize("exercise", sorted(cw.all_exercise_ids()))
def test_placeholder_is_unanswered_not_an_error(exercise: str):
    for blank in (..., None, [], {}):
        fb = cw.check(exercise, blank)
        assert fb.status == "unanswered" and not fb, repr(fb)
        assert repr(fb).startswith("…")


def test_answers_of_the_wrong_form_are_told_so():
    fb = cw.check("02.compensation_order", "reserve_hotel")
    assert fb.status == "malformed" and "list of step names" in repr(fb)
    fb = cw.check("01.pivot", "book_flight")
    assert fb.status == "malformed" and "validate_input" in repr(fb)  # lists the choices
    fb = cw.check("03.lost_reply", {"orchestration": "completed"})
    assert fb.status == "malformed" and "missing: choreography" in repr(fb)
    assert cw.check("07.my_saga", "steps: [").status == "malformed"


def test_unknown_exercise_lists_the_known_ones():
    with pytest.raises(KeyError, match=r"02\.compensation_order"):
        cw.check("02.nope", 1)


def test_a_few_right_answers_pass():
    # The instructors' notebooks prove every right answer; these keep a fast unit test.
    assert cw.check("01.pivot", "send_welcome_email")
    assert cw.check("02.compensation_order", ("reserve_hotel", "reserve_car"))
    assert cw.check("01.messages", 7.0)
    assert cw.check("04.dedup_key", " A ")


def test_exercises_table_lists_questions_per_notebook():
    table = cw.exercises("04")
    assert list(table.index) == sorted(e for e in cw.all_exercise_ids() if e.startswith("04."))
    assert (table["question"].str.len() > 20).all()


# --- the participant hook -------------------------------------------------------------------


def test_runs_without_participants_are_unchanged(signup):
    for style in ss.STYLES:
        a = ss.simulate(signup, style, SIGNUP_DUP, seed=3)
        b = ss.simulate(signup, style, SIGNUP_DUP, seed=3, participants={})
        assert a.events.equals(b.events)


@pytest.mark.parametrize("style", ss.STYLES)
def test_a_naive_participant_applies_a_duplicate_twice(signup, style):
    run = ss.simulate(signup, style, SIGNUP_DUP, seed=3, participants={"create_user": _Naive()})
    assert run.outcome == "inconsistent"
    assert {v.invariant for v in run.violations} == {"duplicate_effect"}


@pytest.mark.parametrize("style", ss.STYLES)
def test_a_keyed_participant_skips_the_duplicate(signup, style):
    run = ss.simulate(signup, style, SIGNUP_DUP, seed=3, participants={"create_user": _ByKey()})
    assert run.outcome == "completed" and not run.violations
    ev = run.events
    assert (ev["detail"] == "the participant skipped it: already applied").sum() == 1


def test_a_retry_carries_a_new_message_id(signup):
    lost_reply = ["{kind: drop, step: create_user, leg: reply}"]
    run = ss.simulate(
        signup, "orchestration", lost_reply, 3, participants={"create_user": _ByMessageId()}
    )
    assert [v.invariant for v in run.violations] == ["duplicate_effect"]
    run = ss.simulate(
        signup, "orchestration", lost_reply, 3, participants={"create_user": _ByKey()}
    )
    assert run.outcome == "completed" and not run.violations


def test_participant_decides_null_compensation_and_barrier(signup):
    signup = cw.variant(signup, policy={"query_status": False})  # late requests reach the code
    late = ["{kind: delay, step: create_user, leg: request, extra: 5}"]
    run = ss.simulate(signup, "orchestration", late, 3, participants={"create_user": _Safe()})
    assert run.outcome == "compensated" and not run.violations
    ops = [e[4] for e in run.effects if e[3] == "create_user"]
    assert ops[0] == "comp_null" and set(ops[1:]) == {"refused"}
    run = ss.simulate(
        signup, "orchestration", late, 3, participants={"create_user": _ByKeyNoBarrier()}
    )
    assert "action_after_compensation" in {v.invariant for v in run.violations}
    lost = ["{kind: drop, step: create_user, leg: request, count: 4}"]
    run = ss.simulate(signup, "orchestration", lost, 3, participants={"create_user": _AlwaysUndo()})
    assert "compensation_without_action" in {v.invariant for v in run.violations}


def test_the_service_keeps_the_fence_of_a_status_query(signup):
    late = ["{kind: delay, step: create_user, leg: request, extra: 5}"]
    run = ss.simulate(
        signup, "orchestration", late, 3, participants={"create_user": _ByKeyNoBarrier()}
    )
    assert run.outcome == "compensated" and not run.violations
    refused = run.events[run.events["kind"] == "tx_refused"]
    assert not refused.empty
    assert refused["detail"].str.contains("declared not run").all()


def test_the_participant_db_survives_a_crash(signup):
    crash = ["{kind: crash, service: identity, at: 0.03, for: 1.0}"]
    for style in ss.STYLES:
        run = ss.simulate(signup, style, crash, 3, participants={"create_user": _ByKey()})
        assert run.outcome == "completed" and not run.violations


def test_a_bad_verdict_or_step_is_an_error(signup):
    with pytest.raises(ValueError, match="answered 'sure'"):
        ss.simulate(signup, faults=None, seed=1, participants={"create_user": _Rude()})
    with pytest.raises(ss.ScenarioError, match=r"participants\.create"):
        ss.simulate(signup, seed=1, participants={"create": _ByKey()})


# --- the grader -------------------------------------------------------------------------------


def test_grader_passes_a_correct_participant_and_reports_by_invariant():
    g = cw.grade("04.safe_participant", _Safe, seeds=2, hidden=3)
    assert g.passed and bool(g)
    table = g.invariants()
    assert (table["held"] == table["runs"]).all()
    assert g.failures().empty
    assert "All" in repr(g) and "<table" in g._repr_html_()


def test_grader_hides_hidden_seeds_and_names_visible_ones():
    g = cw.grade("04.idempotent_consumer", _Naive, seeds=1, hidden=2)
    assert not g.passed
    seeds = set(g.failures()["seed"])
    assert "hidden" in seeds and 1 in seeds
    assert len(seeds) == 2  # the hidden seeds never appear


def test_grader_reports_a_participant_that_raises():
    g = cw.grade("04.idempotent_consumer", _Rude, seeds=1, hidden=0)
    assert not g.passed
    assert all("ValueError" in w for w in g.failures()["what went wrong"])


def test_hidden_seeds_follow_the_salt(monkeypatch):
    a = cw._hidden_seeds("04.safe_participant", 4)
    monkeypatch.setenv(cw.SALT_VARIABLE, "exam-2026")
    b = cw._hidden_seeds("04.safe_participant", 4)
    assert a != b and len(set(a)) == 4 and not set(a) & set(range(1, 5))


def test_grader_accepts_an_instance_and_copies_it():
    instance = _ByKey()
    g = cw.grade("04.idempotent_consumer", instance, seeds=1, hidden=1)
    assert g.passed and instance.__dict__ == {}


def test_variant_validates_changes(signup):
    assert cw.variant(signup, policy={"idempotent": False}).policy.idempotent is False
    assert cw.variant(signup, policy={"idempotent": False}).policy.timeout == signup.policy.timeout
    with pytest.raises(ss.ScenarioError, match=r"policy\.timeout"):
        cw.variant(signup, policy={"timeout": -1})
    assert cw.bundled("trip-booking") is cw.bundled("trip_booking")
    with pytest.raises(ValueError, match="user_registration"):
        cw.bundled("nope")
