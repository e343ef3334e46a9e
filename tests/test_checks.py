"""Invariants and outcomes on hand-written journals: each check fires when it must, only then."""

from __future__ import annotations

import pytest

import saga_sim as ss
from saga_sim.checks import judge


@pytest.fixture(scope="module")
def steps(signup):
    return signup.steps  # validate_input (nothing to undo), create_user, send_welcome_email (pivot)


def J(*ops):
    """Journal entries for saga 1: (step index, op), one per trace row in order."""
    return [(float(k), k, 1, i, op, "svc") for k, (i, op) in enumerate(ops)]


def outcome(steps, ops, declared=None):
    out, violations = judge(J(*ops), steps, 1, declared or {})
    return out[1], [v.invariant for v in violations], violations


def test_completed(steps):
    assert outcome(steps, [(0, "commit"), (1, "commit"), (2, "commit")])[:2] == ("completed", [])


def test_compensated_after_abort(steps):
    ops = [(0, "commit"), (1, "commit"), (2, "abort"), (1, "comp")]
    assert outcome(steps, ops)[:2] == ("compensated", [])


def test_nothing_happened_is_stalled_not_compensated(steps):
    assert outcome(steps, [])[:2] == ("stalled", [])


def test_partial_without_declaration_is_stalled(steps):
    ops = [(0, "commit"), (1, "commit"), (2, "abort")]
    assert outcome(steps, ops)[:2] == ("stalled", [])


def test_partial_with_declaration_breaks_atomicity(steps):
    ops = [(0, "commit"), (1, "commit"), (2, "abort"), (1, "comp_fail")]
    o, names, vs = outcome(steps, ops, {1: ("failed", 1.0, "coordinator")})
    assert (o, names) == ("inconsistent", ["semantic_atomicity"])
    assert vs[0].rows == (1,) and vs[0].step == "create_user"


def test_pivot_committed_then_earlier_step_undone_breaks_atomicity(steps):
    ops = [(0, "commit"), (1, "commit"), (1, "comp"), (2, "commit")]
    o, names, _ = outcome(steps, ops, {1: ("compensated", 1.0, "coordinator")})
    assert o == "inconsistent" and "semantic_atomicity" in names


def test_duplicate_effect(steps):
    ops = [(0, "commit"), (1, "commit"), (1, "commit"), (2, "commit")]
    o, names, vs = outcome(steps, ops)
    assert (o, names) == ("inconsistent", ["duplicate_effect"])
    assert vs[0].rows == (1, 2)


def test_compensated_twice(steps):
    ops = [(0, "commit"), (1, "commit"), (2, "abort"), (1, "comp"), (1, "comp")]
    assert outcome(steps, ops)[1] == ["duplicate_effect"]


def test_action_after_compensation(steps):
    ops = [(0, "commit"), (1, "comp_null"), (1, "commit")]
    o, names, vs = outcome(steps, ops)
    assert o == "inconsistent" and names == ["action_after_compensation"]
    assert vs[0].rows == (1, 2)


def test_null_compensation_alone_is_fine(steps):
    ops = [(0, "commit"), (1, "comp_null")]
    assert outcome(steps, ops, {1: ("compensated", 1.0, "coordinator")})[:2] == ("compensated", [])


def test_compensation_without_action(steps):
    ops = [(0, "commit"), (1, "comp")]
    assert outcome(steps, ops)[1] == ["compensation_without_action"]


def test_compensation_order():
    sc = ss.load_scenario("scenarios/trip_booking.yaml")
    ops = [(0, "commit"), (1, "commit"), (2, "abort"), (0, "comp"), (1, "comp")]
    o, names, vs = outcome(sc.steps, ops)
    assert o == "inconsistent" and names == ["compensation_order"]
    assert vs[0].step == "reserve_car" and vs[0].rows == (1, 3)
    good = [(0, "commit"), (1, "commit"), (2, "abort"), (1, "comp"), (0, "comp")]
    assert outcome(sc.steps, good)[:2] == ("compensated", [])


def test_every_invariant_has_an_explanation():
    assert set(ss.INVARIANTS) == {
        "duplicate_effect",
        "action_after_compensation",
        "compensation_without_action",
        "compensation_order",
        "semantic_atomicity",
        "lost_update",
        "dirty_read",
        "non_repeatable_read",
    }
    assert all(len(text) > 30 for text in ss.INVARIANTS.values())
