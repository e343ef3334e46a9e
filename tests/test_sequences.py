"""Exact sequences: the sign-up saga with no fault sends exactly these messages, in this order."""

from __future__ import annotations

import pytest

import saga_sim as ss


def _messages(run: ss.Run) -> list[tuple[str, str, str]]:
    ev = run.events
    sends = ev[ev["kind"] == "send"]
    return list(zip(sends["source"], sends["target"], sends["message"]))


def test_orchestration_happy_path_messages(signup):
    run = ss.simulate(signup, "orchestration", seed=3)
    assert _messages(run) == [
        ("client", "coordinator", "start_saga"),
        ("coordinator", "validator", "validate"),
        ("validator", "coordinator", "validate.ok"),
        ("coordinator", "identity", "create_user"),
        ("identity", "coordinator", "create_user.ok"),
        ("coordinator", "notifier", "send_email"),
        ("notifier", "coordinator", "send_email.ok"),
    ]
    ev = run.events
    states = ev.loc[ev["kind"] == "state", "detail"].tolist()
    assert states == [
        "started",
        "executing:validate_input",
        "executing:create_user",
        "executing:send_welcome_email",
        "completed",
    ]
    assert run.outcome == "completed"


def test_choreography_happy_path_messages(signup):
    run = ss.simulate(signup, "choreography", seed=3)
    assert _messages(run) == [
        ("client", "broker", "saga_requested"),
        ("broker", "validator", "saga_requested"),
        ("validator", "broker", "validate_input.succeeded"),
        ("broker", "identity", "validate_input.succeeded"),
        ("identity", "broker", "create_user.succeeded"),
        ("broker", "notifier", "create_user.succeeded"),
        ("notifier", "broker", "send_welcome_email.succeeded"),
    ]
    ev = run.events
    # nobody owns the saga: the last participant is the one that sees it complete
    end = ev[ev["kind"] == "state"]
    assert end[["source", "detail"]].values.tolist() == [["notifier", "completed"]]
    assert run.outcome == "completed"


def test_every_send_is_delivered_once_without_faults(signup):
    for style in ss.STYLES:
        ev = ss.simulate(signup, style, seed=11, sagas=20).events
        sent = ev.loc[ev["kind"] == "send", "msg_id"]
        delivered = ev.loc[ev["kind"] == "deliver", "msg_id"]
        assert sorted(sent) == sorted(delivered)
        assert sent.is_unique


def test_local_transactions_in_step_order(signup):
    for style in ss.STYLES:
        ev = ss.simulate(signup, style, seed=5).events
        commits = ev.loc[ev["kind"] == "tx_commit", ["source", "step", "detail"]].values.tolist()
        assert commits == [
            ["validator", "validate_input", "form=cleaned"],
            ["identity", "create_user", "user_id=usr-0001"],
            ["notifier", "send_welcome_email", "template_id=welcome-v2, user_id=usr-0001"],
        ]


def test_common_random_numbers_give_equal_effect_times_without_faults(signup):
    cmp = ss.compare(signup, seed=9, sagas=5)
    a = cmp.orchestration.effects
    b = cmp.choreography.effects
    assert [(t, saga, step, op) for t, _, saga, step, op, _ in a] == [
        (t, saga, step, op) for t, _, saga, step, op, _ in b
    ]
    assert cmp.divergence is None


@pytest.mark.parametrize("style", ss.STYLES)
def test_time_is_sorted_and_seq_is_the_index(signup, style):
    ev = ss.simulate(signup, style, seed=2, sagas=30).events
    assert ev["time"].is_monotonic_increasing
    assert list(ev.index) == list(range(len(ev)))
    assert list(ev.columns) == list(ss.EVENT_COLUMNS)
