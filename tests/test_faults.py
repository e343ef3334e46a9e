"""Every fault kind, in both styles, with the effect it must leave in the trace."""

from __future__ import annotations

import pytest

import saga_sim as ss

STYLES = ss.STYLES


def rows(run: ss.Run, kind: str, **where) -> list:
    ev = run.events
    sel = ev[ev["kind"] == kind]
    for col, val in where.items():
        sel = sel[sel[col] == val]
    return sel.to_dict("records")


# --- fail_step: every step of every bundled scenario ----------------------------------------


def _cases():
    import pathlib

    root = pathlib.Path(__file__).resolve().parent.parent / "scenarios"
    for path in sorted(root.glob("*.yaml")):
        sc = ss.load_scenario(path)
        for i, step in enumerate(sc.steps):
            for style in STYLES:
                yield pytest.param(path, i, style, id=f"{sc.name}-{step.name}-{style}")


@pytest.mark.parametrize("path,i,style", list(_cases()))
def test_fail_step_outcome_and_compensation_order(path, i, style):
    sc = ss.load_scenario(path)
    step = sc.steps[i]
    run = ss.simulate(sc, style, faults=[{"kind": "fail_step", "step": step.name}], seed=4, sagas=1)
    assert [r["step"] for r in rows(run, "tx_abort")] == [step.name]
    comps = [r["step"] for r in rows(run, "comp_commit")]
    if step.kind == "retriable":
        # retried until it succeeds: nothing is undone, the saga completes
        assert run.outcome == "completed"
        assert comps == []
        assert rows(run, "retry")
    else:
        committed = [r["step"] for r in rows(run, "tx_commit")]
        undoable = {s.name for s in sc.steps if s.undoable}
        # every committed step that can be undone is undone, last committed first
        assert sorted(comps) == sorted(c for c in committed if c in undoable)
        if sc.is_linear:
            assert comps == [s.name for s in reversed(sc.steps[:i]) if s.undoable]
            # nothing after the failed step ran
            assert set(committed) == {s.name for s in sc.steps[:i]}
        # nothing that depends on the failed step ran
        below = {sc.steps[j].name for j in sc.descendants(i)}
        assert not below & set(committed)
        assert run.outcome == "compensated"
    assert run.violations == ()


@pytest.mark.parametrize("style", STYLES)
def test_fail_step_only_hits_the_chosen_saga(signup, style):
    run = ss.simulate(
        signup, style, faults=["{kind: fail_step, step: create_user, saga: 2}"], seed=1, sagas=3
    )
    assert run.sagas["outcome"].tolist() == ["completed", "compensated", "completed"]


# --- fail_compensation ----------------------------------------------------------------------


EMAIL_FAILS = {"kind": "fail_step", "step": "send_welcome_email"}


@pytest.mark.parametrize("style", STYLES)
def test_compensation_failing_twice_is_retried(signup, style):
    run = ss.simulate(
        signup,
        style,
        seed=2,
        faults=[EMAIL_FAILS, {"kind": "fail_compensation", "step": "create_user", "times": 2}],
    )
    assert [r["attempt"] for r in rows(run, "comp_fail")] == [1, 2]
    assert [r["attempt"] for r in rows(run, "comp_commit")] == [3]
    assert run.outcome == "compensated"


@pytest.mark.parametrize("style", STYLES)
def test_compensation_failing_forever_is_reported(signup, style):
    run = ss.simulate(
        signup,
        style,
        seed=2,
        faults=[EMAIL_FAILS, {"kind": "fail_compensation", "step": "create_user"}],
    )
    fails = rows(run, "comp_fail")
    assert len(fails) == signup.policy.compensation_retries + 1
    assert run.outcome == "inconsistent"
    assert run.sagas.loc[0, "believed"] == "needs_intervention"
    (dead,) = rows(run, "dead_letter")
    assert dead["step"] == "create_user"
    (v,) = run.violations
    assert v.invariant == "semantic_atomicity" and v.step == "create_user"
    assert run.events.loc[v.rows[0], "kind"] == "tx_commit"


# --- crash ----------------------------------------------------------------------------------


@pytest.mark.parametrize("style", STYLES)
def test_crash_before_the_request_arrives(signup, style):
    run = ss.simulate(
        signup, style, seed=1, faults=["{kind: crash, service: identity, at: 0.02, for: 1.0}"]
    )
    (crash,) = rows(run, "crash", source="identity")
    (restart,) = rows(run, "restart", source="identity")
    assert restart["time"] - crash["time"] == pytest.approx(1.0)
    (commit,) = rows(run, "tx_commit", step="create_user")
    assert commit["time"] > restart["time"]
    assert run.outcome == "completed"
    if style == "orchestration":
        assert rows(run, "timeout", step="create_user")
        assert any("is down" in r["detail"] for r in rows(run, "drop", target="identity"))
    else:
        # the broker holds the event for the subscriber that is down
        held = rows(run, "send", target="identity")
        assert any("held while identity was down" in r["detail"] for r in held)
        assert not rows(run, "timeout")


@pytest.mark.parametrize("style", STYLES)
def test_crash_mid_transaction_loses_the_work(signup, style):
    base = ss.simulate(signup, style, seed=1)
    ev = base.events
    start = ev[(ev["kind"] == "deliver") & (ev["target"] == "identity")]["time"].iloc[0]
    commit = ev[(ev["kind"] == "tx_commit") & (ev["step"] == "create_user")]["time"].iloc[0]
    at = (start + commit) / 2
    run = ss.simulate(
        signup,
        style,
        seed=1,
        faults=[{"kind": "crash", "service": "identity", "at": at, "for": 0.3}],
    )
    (lost,) = rows(run, "work_lost", source="identity")
    assert lost["step"] == "create_user"
    commits = rows(run, "tx_commit", step="create_user")
    assert len(commits) == 1 and commits[0]["attempt"] == 2  # executed again after the restart
    assert run.outcome == "completed"


# --- crash_coordinator ------------------------------------------------------------------------


def test_coordinator_crash_recovers_from_its_log(signup):
    run = ss.simulate(
        signup, "orchestration", seed=1, faults=["{kind: crash_coordinator, at: 0.03, for: 0.5}"]
    )
    assert rows(run, "crash", source="coordinator") and rows(run, "restart", source="coordinator")
    recovering = [r["detail"] for r in rows(run, "state") if r["detail"].startswith("recovering")]
    assert len(recovering) == 1
    assert run.outcome == "completed"
    # every step committed exactly once despite the re-sent command
    assert sorted(r["step"] for r in rows(run, "tx_commit")) == sorted(s.name for s in signup.steps)


def test_coordinator_crash_is_a_no_op_in_choreography(signup):
    run = ss.simulate(
        signup, "choreography", seed=1, faults=["{kind: crash_coordinator, at: 0.03, for: 0.5}"]
    )
    assert not rows(run, "crash")
    assert any("no coordinator" in n for n in run.notes)
    assert run.outcome == "completed"


def test_start_request_sent_while_coordinator_down_is_retried_until_taken(signup):
    run = ss.simulate(
        signup, "orchestration", seed=1, faults=["{kind: crash_coordinator, at: 0.0, for: 1.0}"]
    )
    drops = rows(run, "drop", message="start_saga")
    retries = rows(run, "retry", source="client")
    assert drops and len(retries) == len(drops)
    (taken,) = rows(run, "deliver", message="start_saga")
    assert taken["time"] >= 1.0 and taken["attempt"] == len(drops) + 1
    assert run.outcome == "completed" and run.sagas.loc[0, "started"]


def test_a_start_request_never_taken_leaves_the_saga_unstarted(signup):
    cut = "{kind: partition, between: [client, coordinator], at: 0.0, for: 1000}"
    run = ss.simulate(signup, "orchestration", seed=1, faults=[cut], horizon=30)
    assert rows(run, "retry", source="client")
    assert run.outcome == "stalled"
    assert not run.sagas.loc[0, "started"]  # the request never reached the coordinator
    assert ss.simulate(signup, "orchestration", seed=1).sagas.loc[0, "started"]


# --- drop -------------------------------------------------------------------------------------


@pytest.mark.parametrize("style", STYLES)
def test_drop_request(signup, style):
    run = ss.simulate(
        signup, style, seed=1, faults=["{kind: drop, step: create_user, leg: request}"]
    )
    (drop,) = rows(run, "drop")
    assert drop["detail"].startswith("fault: drop") and drop["target"] == "identity"
    assert run.outcome == "completed"
    if style == "orchestration":
        assert rows(run, "timeout", step="create_user") and rows(run, "retry")
    else:
        redelivered = [
            r for r in rows(run, "send", target="identity") if "redelivered" in r["detail"]
        ]
        assert redelivered and redelivered[0]["msg_id"] == drop["msg_id"]


def test_drop_reply_orchestration_retries_and_deduplicates(signup):
    run = ss.simulate(
        signup, "orchestration", seed=1, faults=["{kind: drop, step: create_user, leg: reply}"]
    )
    assert len(rows(run, "tx_commit", step="create_user")) == 1
    ignored = rows(run, "ignored", step="create_user")
    assert ignored and "already committed" in ignored[0]["detail"]
    assert run.outcome == "completed"


def test_drop_event_choreography_is_published_again_by_the_outbox_relay(signup):
    """A lost event: the broker never acknowledged it, so the relay publishes it again (without
    the outbox nobody would, and the saga would stall: tests/test_semantics.py)."""
    run = ss.simulate(
        signup, "choreography", seed=1, faults=["{kind: drop, step: create_user, leg: reply}"]
    )
    (drop,) = rows(run, "drop")
    assert drop["message"] == "create_user.succeeded" and drop["target"] == "broker"
    assert len(rows(run, "send", message="create_user.succeeded", source="identity")) == 2
    assert run.outcome == "completed"
    assert run.sagas.loc[0, "believed"] == "completed"


@pytest.mark.parametrize("style", STYLES)
def test_drop_by_link_and_message(signup, style):
    name = "create_user" if style == "orchestration" else "validate_input.succeeded"
    run = ss.simulate(signup, style, seed=1, faults=[{"kind": "drop", "message": name}])
    assert [r["message"] for r in rows(run, "drop")] == [name]
    link = "coordinator->identity" if style == "orchestration" else "broker->identity"
    run = ss.simulate(signup, style, seed=1, faults=[{"kind": "drop", "link": link, "count": 2}])
    assert len(rows(run, "drop")) == 2
    assert all(r["target"] == "identity" for r in rows(run, "drop"))


# --- duplicate --------------------------------------------------------------------------------


@pytest.mark.parametrize("style", STYLES)
def test_duplicate_is_delivered_twice_and_applied_once(signup, style):
    run = ss.simulate(
        signup, style, seed=1, faults=["{kind: duplicate, step: create_user, leg: request}"]
    )
    (dup,) = rows(run, "duplicate")
    delivered = rows(run, "deliver", msg_id=dup["msg_id"])
    assert len(delivered) == 2
    assert len(rows(run, "tx_commit", step="create_user")) == 1
    assert rows(run, "ignored", step="create_user")
    assert run.outcome == "completed" and not run.violations


@pytest.mark.parametrize("style", STYLES)
def test_duplicate_without_idempotency_applies_twice(signup, style):
    sc = signup.model_copy(
        update={"policy": signup.policy.model_copy(update={"idempotent": False})}
    )
    run = ss.simulate(
        sc, style, seed=1, faults=["{kind: duplicate, step: create_user, leg: request}"]
    )
    assert len(rows(run, "tx_commit", step="create_user")) == 2
    assert run.outcome == "inconsistent"
    assert {v.invariant for v in run.violations} == {"duplicate_effect"}
    hit = [v.step for v in run.violations]
    if style == "orchestration":
        assert hit == ["create_user"]  # the coordinator takes the first reply, ignores the rest
    else:
        # the second commit publishes a second event: the duplicate cascades downstream
        assert hit == ["create_user", "send_welcome_email"]


# --- delay ------------------------------------------------------------------------------------


@pytest.mark.parametrize("style", STYLES)
def test_delay_adds_latency(signup, style):
    base = ss.simulate(signup, style, seed=1)
    run = ss.simulate(
        signup, style, seed=1, faults=["{kind: delay, step: create_user, leg: request, extra: 0.2}"]
    )

    def transit(r: ss.Run) -> float:
        ev = r.events
        d = ev[(ev["kind"] == "deliver") & (ev["target"] == "identity")].iloc[0]
        s = ev[(ev["kind"] == "send") & (ev["msg_id"] == d["msg_id"])].iloc[0]
        return d["time"] - s["time"]

    assert transit(run) - transit(base) == pytest.approx(0.2)
    assert run.outcome == "completed"


def _with_policy(sc: ss.Scenario, **changes) -> ss.Scenario:
    return sc.model_copy(update={"policy": sc.policy.model_copy(update=changes)})


LATE_PIVOT = "{kind: delay, step: send_welcome_email, leg: request, extra: 5}"


def test_delay_past_the_timeout_then_it_ran(signup):
    """Timed out but it ran: without asking, the pivot commits after the coordinator gave up."""
    run = ss.simulate(
        _with_policy(signup, query_status=False), "orchestration", seed=1, faults=[LATE_PIVOT]
    )
    assert len(rows(run, "timeout", step="send_welcome_email")) == signup.policy.retries + 1
    assert rows(run, "dead_letter", step="send_welcome_email")
    assert rows(run, "comp_commit", step="create_user")
    assert rows(run, "tx_commit", step="send_welcome_email")
    assert run.outcome == "inconsistent"
    assert [v.invariant for v in run.violations] == ["semantic_atomicity"]


def test_status_query_resolves_the_ambiguous_outcome(signup):
    """Asking the participant: it never ran, so it is fenced off and the saga compensates."""
    run = ss.simulate(signup, "orchestration", seed=1, faults=[LATE_PIVOT])
    states = [r["detail"] for r in rows(run, "state")]
    assert "querying:send_welcome_email" in states
    (answer,) = rows(run, "deliver", message="send_welcome_email.status")
    assert answer["detail"] == "not_run"
    assert rows(run, "comp_commit", step="create_user")
    refused = rows(run, "tx_refused", step="send_welcome_email")
    assert refused and all("declared not run" in r["detail"] for r in refused)
    assert not rows(run, "tx_commit", step="send_welcome_email")
    assert run.outcome == "compensated" and not run.violations


def test_status_query_finds_a_committed_step_and_goes_forward(signup):
    """The step ran but every reply was lost: the query finds it committed; no compensation."""
    run = ss.simulate(
        signup,
        "orchestration",
        seed=1,
        faults=["{kind: drop, step: create_user, leg: reply, count: 4}"],
    )
    (answer,) = rows(run, "deliver", message="create_user.status")
    assert answer["detail"] == "committed"
    assert not rows(run, "comp_commit")
    assert run.outcome == "completed"


@pytest.mark.parametrize("barrier,outcome", [(True, "compensated"), (False, "inconsistent")])
def test_late_action_after_null_compensation(signup, barrier, outcome):
    sc = _with_policy(signup, barrier=barrier, query_status=False)
    run = ss.simulate(
        sc,
        "orchestration",
        seed=1,
        faults=["{kind: delay, step: create_user, leg: request, extra: 4}"],
    )
    assert rows(run, "comp_null", step="create_user")
    if barrier:
        assert rows(run, "tx_refused", step="create_user")
        assert not rows(run, "tx_commit", step="create_user")
    else:
        assert [v.invariant for v in run.violations] == ["action_after_compensation"]
    assert run.outcome == outcome


@pytest.mark.parametrize("barrier,outcome", [(True, "compensated"), (False, "inconsistent")])
def test_late_duplicate_event_after_compensation_choreography(signup, barrier, outcome):
    """A copy of create_user's trigger arrives long after the saga was compensated."""
    sc = _with_policy(signup, barrier=barrier, idempotent=False)
    run = ss.simulate(
        sc,
        "choreography",
        seed=1,
        faults=[
            "{kind: fail_step, step: send_welcome_email}",
            "{kind: duplicate, step: create_user, leg: request, lag: 2}",
        ],
    )
    comp = rows(run, "comp_commit", step="create_user")[0]
    late = rows(run, "deliver", target="identity", detail="second copy")[0]
    assert late["time"] > comp["time"]
    if barrier:
        assert rows(run, "tx_refused", step="create_user")
        assert not run.violations
    else:
        assert "action_after_compensation" in {v.invariant for v in run.violations}
    assert run.outcome == outcome


# --- partition --------------------------------------------------------------------------------


@pytest.mark.parametrize("style", STYLES)
def test_partition_cuts_messages_for_its_window(signup, style):
    run = ss.simulate(
        signup,
        style,
        seed=1,
        faults=['{kind: partition, between: [identity, "*"], at: 0.01, for: 0.8}'],
    )
    (p,) = rows(run, "partition")
    (h,) = rows(run, "heal")
    assert h["time"] - p["time"] == pytest.approx(0.8)
    drops = [r for r in rows(run, "drop") if r["detail"].startswith("partition")]
    assert drops and all(p["time"] <= r["time"] < h["time"] for r in drops)
    assert all("identity" in (r["source"], r["target"]) for r in drops)
    assert run.outcome == "completed"  # the coordinator retries; the broker redelivers
    commit = rows(run, "tx_commit", step="create_user")[0]
    assert commit["time"] > h["time"]


def test_partition_between_unconnected_nodes_changes_nothing(signup):
    for style in STYLES:
        base = ss.simulate(signup, style, seed=1)
        run = ss.simulate(
            signup,
            style,
            seed=1,
            faults=["{kind: partition, between: [validator, notifier], at: 0, for: 10}"],
        )
        ev = run.events
        assert (
            ev[~ev["kind"].isin(["partition", "heal"])]
            .reset_index(drop=True)
            .equals(base.events.reset_index(drop=True))
        )


# --- network loss and duplication from the scenario -----------------------------------------


@pytest.mark.parametrize("style", STYLES)
def test_network_loss_and_duplication_rates(signup, style):
    net = signup.network.model_copy(update={"loss": 0.1, "duplicate": 0.1})
    sc = signup.model_copy(update={"network": net})
    run = ss.simulate(sc, style, seed=3, sagas=200)
    ev = run.events
    sends = (ev["kind"] == "send").sum()
    lost = (ev["detail"] == "lost by the network").sum()
    dups = (ev["kind"] == "duplicate").sum()
    assert 0.06 < lost / sends < 0.14
    assert 0.06 < dups / sends < 0.14
    assert set(run.sagas["outcome"]) <= set(ss.OUTCOMES)
