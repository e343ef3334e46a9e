"""The shareable configuration: knobs and safeguard switches through the query string, and into
the scenario a run uses."""

from __future__ import annotations

import pytest

import saga_sim as ss
from saga_sim import share

ALL_SWITCHES = share.RunConfig(
    scenario="trip_booking",
    faults=("{kind: fail_step, step: book_flight}",),
    seed=11,
    sagas=20,
    loss=0.05,
    idempotent=False,
    outbox=False,
    barrier=False,
    query_status=False,
    compensation_order="parallel",
    redelivery=0.0,
    max_redeliveries=2,
    compensation_retries=1,
    semantic_lock=True,
    commutative=True,
    reread=True,
    version=True,
)


def test_every_knob_is_in_the_cache_key():
    assert len(ALL_SWITCHES.knobs()) == len(share.KNOBS)
    assert set(share.SAFEGUARDS) <= set(share.KNOBS)
    assert share.RunConfig().knobs() == (None,) * len(share.KNOBS)
    assert ALL_SWITCHES.with_(outbox=True).knobs() != ALL_SWITCHES.knobs()


def test_safeguards_round_trip_through_the_query_string():
    qs = share.config_to_query_string(ALL_SWITCHES)
    assert "idempotent=off" in qs and "redelivery=off" in qs
    assert "compensation_order=parallel" in qs and "semantic_lock=on" in qs
    back = share.config_from_query_string(qs, ["trip_booking"])
    assert back == ALL_SWITCHES
    assert back.extra == {}


def test_defaults_stay_out_of_the_link():
    qs = share.config_to_query_string(share.RunConfig())
    assert qs == "scenario=user_registration&seed=7"


@pytest.mark.parametrize(
    "params,field",
    [
        ({"idempotent": "maybe"}, "idempotent"),
        ({"compensation_order": "random"}, "compensation_order"),
        ({"redelivery": "soon"}, "redelivery"),
        ({"max_redeliveries": "x"}, "max_redeliveries"),
        ({"compensation_retries": "1e3"}, "compensation_retries"),
    ],
)
def test_a_bad_switch_in_a_link_names_its_parameter(params, field):
    with pytest.raises(ss.ScenarioError) as err:
        share.decode_config(params)
    assert [p.path for p in err.value.problems] == [field]


@pytest.mark.parametrize("raw,value", [("on", True), ("1", True), ("false", False), ("OFF", False)])
def test_switch_spellings(raw, value):
    assert share.decode_config({"outbox": raw}).outbox is value


def test_apply_knobs_sets_every_switch(signup):
    eff = share.apply_knobs(signup, ALL_SWITCHES)
    p = eff.policy
    assert (p.idempotent, p.outbox, p.barrier, p.query_status) == (False,) * 4
    assert p.compensation_order == "parallel" and p.redelivery is None
    assert (p.max_redeliveries, p.compensation_retries) == (2, 1)
    iso = p.isolation
    assert iso.semantic_lock and iso.commutative and iso.reread and iso.version
    assert eff.network.loss == 0.05
    # the effective scenario's YAML (the app's cache key) reads back to the same scenario,
    # null redelivery included
    assert ss.parse_scenario(eff.to_yaml()) == eff


def test_apply_knobs_without_knobs_is_the_scenario_itself(signup):
    assert share.apply_knobs(signup, share.RunConfig(seed=3)) is signup


def test_a_switch_equal_to_the_scenario_changes_nothing(signup):
    eff = share.apply_knobs(signup, share.RunConfig(idempotent=True, redelivery=1.0))
    assert eff == signup
