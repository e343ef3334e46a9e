"""Saga semantics in depth: each safeguard off shows its failure, on shows a clean run."""

from __future__ import annotations

import pytest

import saga_sim as ss

STYLES = ss.STYLES


def policy(sc: ss.Scenario, **changes) -> ss.Scenario:
    return sc.model_copy(update={"policy": sc.policy.model_copy(update=changes)})


def rows(run: ss.Run, kind: str, **where) -> list[dict]:
    ev = run.events
    sel = ev[ev["kind"] == kind]
    for col, val in where.items():
        sel = sel[sel[col] == val]
    return sel.to_dict("records")


AFTER_COMMIT = "{kind: crash, service: identity, when: after_commit, step: create_user, for: 0.3}"
BEFORE_COMMIT = "{kind: crash, service: identity, when: before_commit, step: create_user, for: 0.3}"


@pytest.mark.parametrize("style", STYLES)
def test_outbox_on_relays_the_message_after_the_restart(signup, style):
    run = ss.simulate(signup, style, seed=1, faults=[AFTER_COMMIT])
    (commit,) = rows(run, "tx_commit", step="create_user")
    (crash,) = rows(run, "crash", source="identity")
    (restart,) = rows(run, "restart", source="identity")
    assert crash["time"] == commit["time"]
    relayed = [r for r in rows(run, "send", source="identity") if "outbox" in r["detail"]]
    assert len(relayed) == 1 and relayed[0]["time"] == restart["time"]
    assert run.outcome == "completed" and not run.violations


@pytest.mark.parametrize("style", STYLES)
def test_outbox_off_a_crash_loses_the_message_and_the_record_answers_the_retry(signup, style):
    run = ss.simulate(policy(signup, outbox=False), style, seed=1, faults=[AFTER_COMMIT])
    lost = [r for r in rows(run, "drop", source="identity") if "no outbox" in r["detail"]]
    assert len(lost) == 1
    assert len(rows(run, "tx_commit", step="create_user")) == 1
    answered = [r for r in rows(run, "ignored") if "already committed" in r["detail"]]
    assert answered
    if style == "orchestration":
        # the coordinator times out and re-sends; the service answers from its records
        assert rows(run, "timeout", step="create_user")
    else:
        # the trigger was never acknowledged: the broker redelivers it after the restart, and
        # the idempotent consumer answers it from its record (it publishes the event again)
        again = rows(run, "send", message="create_user.succeeded", source="identity")
        assert len(again) == 1 and again[0]["detail"] == "from the idempotency record"
        assert again[0]["time"] > answered[0]["time"] - 1e-9
    assert run.outcome == "completed"


LOST_PUBLISH = "{kind: drop, step: create_user, leg: reply}"


@pytest.mark.parametrize("outbox", [False, True])
def test_a_lost_publish_is_sent_again_only_by_the_outbox_relay(signup, outbox):
    run = ss.simulate(policy(signup, outbox=outbox), "choreography", seed=1, faults=[LOST_PUBLISH])
    (drop,) = rows(run, "drop")
    assert drop["message"] == "create_user.succeeded" and drop["target"] == "broker"
    relayed = rows(run, "retry", source="identity")
    if outbox:
        (retry,) = relayed
        assert retry["msg_id"] == drop["msg_id"]  # the same outbox entry, published again
        assert retry["time"] == pytest.approx(drop["time"] + signup.policy.relay_timeout)
        assert run.outcome == "completed" and not run.violations
    else:
        assert not relayed
        assert run.outcome == "stalled" and run.sagas.loc[0, "believed"] == ""
    orch = ss.simulate(
        policy(signup, outbox=outbox), "orchestration", seed=1, faults=[LOST_PUBLISH]
    )
    assert orch.outcome == "completed"  # the coordinator's own retry, outbox or not


@pytest.mark.parametrize("style", STYLES)
def test_crash_before_commit_loses_the_work_and_it_runs_again(signup, style):
    run = ss.simulate(signup, style, seed=1, faults=[BEFORE_COMMIT])
    (lost,) = rows(run, "work_lost", source="identity")
    assert lost["step"] == "create_user"
    (commit,) = rows(run, "tx_commit", step="create_user")
    assert commit["attempt"] == 2
    assert run.outcome == "completed"


def test_crash_trigger_must_name_a_step_of_that_service(signup):
    with pytest.raises(
        ss.ScenarioError,
        match=r"\[0\].step: step 'create_user' runs on "
        r"'identity', not on 'notifier'",
    ):
        ss.simulate(
            signup,
            faults=[
                "{kind: crash, service: notifier, when: after_commit, step: create_user, for: 1}"
            ],
        )
    with pytest.raises(ss.ScenarioError, match="either 'at'"):
        ss.simulate(signup, faults=["{kind: crash, service: identity, for: 1}"])


# --- compensation order ----------------------------------------------------------------------


FLIGHT_FAILS = "{kind: fail_step, step: book_flight}"


@pytest.mark.parametrize("style", STYLES)
def test_parallel_compensation_can_undo_out_of_order(style):
    trip = ss.load_scenario("scenarios/trip_booking.yaml")
    reverse = ss.simulate(trip, style, seed=3, sagas=20, faults=[FLIGHT_FAILS])
    assert (reverse.sagas["outcome"] == "compensated").all() and not reverse.violations
    par = ss.simulate(
        policy(trip, compensation_order="parallel"), style, seed=3, sagas=20, faults=[FLIGHT_FAILS]
    )
    names = {v.invariant for v in par.violations}
    assert names == {"compensation_order"}
    bad = {v.saga for v in par.violations}
    assert 0 < len(bad) < 20  # a race: sometimes the car is cancelled before the hotel
    for saga in bad:
        comps = [r["step"] for r in rows(par, "comp_commit", saga=saga)]
        assert comps == ["reserve_car", "reserve_hotel"]
    # parallel is faster: both compensations start together
    assert par.sagas["latency"].mean() < reverse.sagas["latency"].mean()


def test_parallel_compensation_starts_every_compensation_at_once():
    trip = ss.load_scenario("scenarios/trip_booking.yaml")
    run = ss.simulate(
        policy(trip, compensation_order="parallel"),
        "orchestration",
        seed=1,
        sagas=1,
        faults=[FLIGHT_FAILS],
    )
    sends = rows(run, "send", source="coordinator")
    cancels = [r for r in sends if r["message"] in ("cancel_car", "cancel_room")]
    assert len(cancels) == 2 and cancels[0]["time"] == cancels[1]["time"]


# --- dead letters ----------------------------------------------------------------------------


def test_choreography_dead_letter_after_max_redeliveries(signup):
    sc = policy(signup, max_redeliveries=3)
    run = ss.simulate(
        sc, "choreography", seed=1, faults=["{kind: drop, link: broker->identity, count: 100}"]
    )
    (dead,) = rows(run, "dead_letter")
    assert dead["source"] == "broker" and dead["target"] == "identity"
    assert len(rows(run, "send", target="identity")) == 4  # first delivery + 3 redeliveries
    assert run.outcome == "stalled"


def test_orchestration_dead_letter_when_retries_run_out(signup):
    run = ss.simulate(
        signup,
        "orchestration",
        seed=1,
        faults=["{kind: drop, step: create_user, leg: request, count: 100}"],
    )
    dead = rows(run, "dead_letter", step="create_user")
    assert dead and dead[0]["message"] == "create_user"
    # the query reaches the service: it never ran; fenced off, nothing to undo
    assert rows(run, "deliver", message="create_user.status")[0]["detail"] == "not_run"
    assert run.outcome == "compensated"


# --- coordinator crash in every state ---------------------------------------------------------


def _state_times(run: ss.Run) -> dict[str, float]:
    return {r["detail"]: r["time"] for r in rows(run, "state")}


@pytest.mark.parametrize(
    "state",
    [
        "executing:validate_input",
        "executing:create_user",
        "executing:send_welcome_email",
        "compensating:create_user",
    ],
)
def test_coordinator_crash_in_each_state_recovers(signup, state):
    faults = ["{kind: fail_step, step: send_welcome_email}"] if "compensating" in state else []
    base = ss.simulate(signup, "orchestration", seed=2, faults=faults)
    at = _state_times(base)[state] + 0.001
    run = ss.simulate(
        signup,
        "orchestration",
        seed=2,
        faults=[*faults, {"kind": "crash_coordinator", "at": at, "for": 0.4}],
    )
    recovering = [r["detail"] for r in rows(run, "state") if r["detail"].startswith("recovering")]
    assert recovering == [f"recovering:{state}"]
    assert run.outcome == base.outcome
    assert not run.violations
    # effects equal the run without the crash: recovery repeats no effect
    assert [(e[3], e[4]) for e in run.effects] == [(e[3], e[4]) for e in base.effects]


# --- concurrent sagas on shared data -----------------------------------------------------------


def isolation(sc: ss.Scenario, **switches) -> ss.Scenario:
    iso = sc.policy.isolation.model_copy(update=switches)
    return policy(sc, isolation=iso)


@pytest.fixture(scope="module")
def shop() -> ss.Scenario:
    return ss.load_scenario("scenarios/inventory_concurrency.yaml")


def anomalies(sc: ss.Scenario, style: str, seeds=range(8)) -> dict[str, int]:
    found: dict[str, int] = {}
    for seed in seeds:
        for v in ss.simulate(sc, style, seed=seed).violations:
            found[v.invariant] = found.get(v.invariant, 0) + 1
    return found


@pytest.mark.parametrize("style", STYLES)
def test_concurrency_scenario_shows_every_anomaly(shop, style):
    run = ss.simulate(shop, style, seed=0)
    names = {v.invariant for v in run.violations}
    assert {"lost_update", "dirty_read", "non_repeatable_read"} <= names
    ev = run.events
    for v in run.violations:
        kinds = set(ev.loc[list(v.rows), "kind"])
        if v.invariant == "lost_update":
            assert kinds == {"tx_commit"}
        elif v.invariant == "dirty_read":
            assert kinds == {"tx_commit", "read", "comp_commit"}
        elif v.invariant == "non_repeatable_read":
            assert "read" in kinds


def test_lost_update_is_visible_in_the_final_stock(shop):
    run = ss.simulate(shop, "orchestration", seed=0)
    ev = run.events
    commits = ev[(ev["kind"] == "tx_commit") & (ev["step"] == "reserve_stock")]
    comps = ev[(ev["kind"] == "comp_commit") & (ev["step"] == "reserve_stock")]
    final = int(ev[ev["detail"].str.startswith("stock:")]["detail"].iloc[-1].split("-> ")[-1])
    # what the stock should be if every reservation counted
    assert final > 4 - len(commits) + len(comps)


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize(
    "switch,removed",
    [
        ("commutative", {"lost_update"}),
        ("version", {"lost_update"}),
        ("reread", {"lost_update", "non_repeatable_read"}),
        ("semantic_lock", {"lost_update", "non_repeatable_read", "dirty_read"}),
    ],
)
def test_each_countermeasure_removes_its_anomalies(shop, style, switch, removed):
    before = anomalies(shop, style)
    assert removed <= set(before)
    after = anomalies(isolation(shop, **{switch: True}), style)
    assert not removed & set(after), after


def test_semantic_lock_trades_anomalies_for_aborts(shop):
    locked = isolation(shop, semantic_lock=True)
    run = ss.simulate(locked, "orchestration", seed=0)
    aborts = [r for r in rows(run, "tx_abort") if "semantic lock" in r["detail"]]
    assert aborts
    assert set(run.sagas["outcome"]) <= {"completed", "compensated"}


def test_step_data_must_name_an_item_of_its_service(shop):
    text = shop.to_yaml()
    assert text.count("item: stock") == 2
    text = text[::-1].replace("item: stock"[::-1], "item: stok"[::-1], 1)[::-1]
    with pytest.raises(
        ss.ScenarioError,
        match=r"steps\[2\].data.item: service 'inventory' has "
        r"no item 'stok' \(did you mean 'stock'\?\)",
    ):
        ss.parse_scenario(text)


@pytest.mark.parametrize("barrier", [True, False])
def test_late_request_after_an_abort_is_fenced_off(barrier):
    """Found by find_and_shrink: the retry aborts, the saga compensates, then the delayed first
    request arrives and would commit a step the saga already gave up on."""
    orders = ss.load_scenario("scenarios/order_fulfillment.yaml")
    run = ss.simulate(
        policy(orders, barrier=barrier),
        "orchestration",
        seed=3,
        faults=[
            "{kind: fail_step, step: create_order}",
            "{kind: delay, step: create_order, leg: request, extra: 0.911, count: 2}",
        ],
    )
    assert rows(run, "tx_abort", step="create_order", saga=1)
    if barrier:
        refused = rows(run, "tx_refused", step="create_order", saga=1)
        assert refused and all("already aborted" in r["detail"] for r in refused)
        assert (run.sagas["outcome"] == "compensated").all() and not run.violations
    else:
        assert rows(run, "tx_commit", step="create_order", saga=1)
        assert run.sagas.loc[0, "outcome"] == "inconsistent"
        assert {v.invariant for v in run.violations} == {"semantic_atomicity"}


def test_network_loss_spares_the_clients_request(signup):
    net = signup.network.model_copy(update={"loss": 0.5})
    run = ss.simulate(signup.model_copy(update={"network": net}), "choreography", seed=1, sagas=50)
    ev = run.events
    assert not ((ev["kind"] == "drop") & (ev["source"] == "client")).any()
    assert ((ev["kind"] == "drop") & (ev["source"] != "client")).any()


# --- parallel steps (a saga as a graph) ---------------------------------------------------------


@pytest.fixture(scope="module")
def trip_dag() -> ss.Scenario:
    return ss.load_scenario("scenarios/trip_booking_parallel.yaml")


def test_parallel_steps_model(trip_dag):
    assert trip_dag.predecessors == ((), (), (0, 1))
    assert not trip_dag.is_linear
    assert trip_dag.descendants(0) == {0, 2}


@pytest.mark.parametrize("style", STYLES)
def test_parallel_branches_run_at_once_and_join(trip_dag, style):
    run = ss.simulate(trip_dag, style, seed=1, sagas=1)
    ev = run.events
    starts = ev[(ev["kind"] == "deliver") & ev["target"].isin(["cars", "hotels"])]
    assert len(starts) == 2
    car, hotel, flight = (
        rows(run, "tx_commit", step=n)[0]["time"]
        for n in ("reserve_car", "reserve_hotel", "book_flight")
    )
    assert flight > max(car, hotel)
    # both branches were requested before either committed
    assert starts["time"].max() < min(car, hotel)
    linear = ss.load_scenario("scenarios/trip_booking.yaml")
    assert run.sagas["latency"][0] < ss.simulate(linear, style, seed=1, sagas=1).sagas["latency"][0]
    assert run.outcome == "completed"


@pytest.mark.parametrize("style", STYLES)
def test_parallel_failure_undoes_every_branch(trip_dag, style):
    run = ss.simulate(
        trip_dag, style, seed=1, sagas=5, faults=["{kind: fail_step, step: book_flight}"]
    )
    assert (run.sagas["outcome"] == "compensated").all() and not run.violations
    for saga in range(1, 6):
        comps = {r["step"] for r in rows(run, "comp_commit", saga=saga)}
        assert comps == {"reserve_car", "reserve_hotel"}


@pytest.mark.parametrize(
    "style,barrier", [("orchestration", True), ("choreography", True), ("choreography", False)]
)
def test_one_branch_fails_while_the_other_runs(trip_dag, style, barrier):
    """The hotel fails at once while the car is still being reserved."""
    sc = policy(trip_dag, barrier=barrier)
    slow_car = sc.steps[0].model_copy(
        update={
            "duration": ss.parse_scenario(sc.to_yaml())
            .steps[0]
            .duration.model_copy(update={"mean": 0.5})
        }
    )
    sc = sc.model_copy(update={"steps": [slow_car, *sc.steps[1:]]})
    run = ss.simulate(sc, style, seed=1, sagas=1, faults=["{kind: fail_step, step: reserve_hotel}"])
    assert rows(run, "tx_abort", step="reserve_hotel")
    assert not rows(run, "tx_commit", step="book_flight")
    if style == "orchestration":
        # the coordinator lets the car finish, then cancels it
        assert rows(run, "tx_commit", step="reserve_car")
        assert rows(run, "comp_commit", step="reserve_car")
        assert run.outcome == "compensated"
    elif barrier:
        # the car service hears of the failure first: a null compensation fences the car off
        assert rows(run, "comp_null", step="reserve_car")
        assert rows(run, "tx_refused", step="reserve_car")
        assert run.outcome == "compensated"
    else:
        assert rows(run, "comp_null", step="reserve_car")
        assert [v.invariant for v in run.violations] == ["action_after_compensation"]
        assert run.outcome == "inconsistent"


def test_coordinator_crash_in_a_parallel_saga_recovers(trip_dag):
    base = ss.simulate(trip_dag, "orchestration", seed=2, sagas=1)
    at = rows(base, "tx_commit", step="reserve_car")[0]["time"] + 0.001
    run = ss.simulate(
        trip_dag,
        "orchestration",
        seed=2,
        sagas=1,
        faults=[{"kind": "crash_coordinator", "at": at, "for": 0.5}],
    )
    assert [r["detail"] for r in rows(run, "state") if r["detail"].startswith("recovering")]
    assert run.outcome == "completed" and not run.violations
    assert sorted(e[3] for e in run.effects) == sorted(e[3] for e in base.effects)


def test_after_is_validated():
    base = ss.load_scenario("scenarios/trip_booking_parallel.yaml").to_yaml()
    bad = base.replace(
        "after:\n  - reserve_car\n  - reserve_hotel", "after:\n  - reserve_cat\n  - book_flight"
    )
    with pytest.raises(ss.ScenarioError) as err:
        ss.parse_scenario(bad)
    text = str(err.value)
    assert "steps[2].after[0]: 'reserve_cat' is no step (did you mean 'reserve_car'?)" in text
    assert "steps[2].after[1]: 'book_flight' is itself" in text
    pivot = base.replace(
        "compensation: cancel_flight\n  kind: compensatable", "kind: pivot"
    ).replace("after:\n  - reserve_car\n  - reserve_hotel", "after:\n  - reserve_car")
    with pytest.raises(
        ss.ScenarioError,
        match=r"steps\[2\].after: a pivot step must come after "
        r"every earlier step.*reserve_hotel",
    ):
        ss.parse_scenario(pivot)
