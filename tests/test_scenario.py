"""Scenario models: distributions, round trips, fault parsing, reference checks."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

import saga_sim as ss
from saga_sim.distributions import Constant, Exponential, Lognormal, Uniform


@given(st.floats(0, 1, exclude_max=True))
def test_distributions_are_inverse_cdfs(u):
    assert Exponential(mean=2).sample(u) >= 0
    assert 1 <= Uniform(low=1, high=3).sample(u) <= 3
    assert Constant(value=0.5).sample(u) == 0.5
    assert Lognormal(mean=1, sd=0.5).sample(u) > 0


def test_distribution_means_by_sampling():
    n = 20000
    us = [(k + 0.5) / n for k in range(n)]
    for d in (Exponential(mean=0.3), Lognormal(mean=0.02, sd=0.01), Uniform(low=1, high=2)):
        mean = sum(d.sample(u) for u in us) / n
        assert math.isclose(mean, d.mean_value, rel_tol=0.02)


def test_bare_number_is_a_constant(signup):
    text = signup.to_yaml().replace("dist: exponential\n      mean: 0.01", "0.25", 1)
    sc = ss.parse_scenario(text.replace("duration:\n      0.25", "duration: 0.25"))
    assert isinstance(sc.steps[0].duration, (Constant, Exponential))


def test_yaml_round_trip(bundled):
    again = ss.parse_scenario(bundled.to_yaml())
    assert again == bundled


def test_parse_faults_accepts_models_dicts_and_yaml(signup):
    a = ss.parse_faults(["{kind: crash, service: identity, at: 1, for: 2}"], signup)
    b = ss.parse_faults([{"kind": "crash", "service": "identity", "at": 1, "for": 2}], signup)
    c = ss.parse_faults(list(a), signup)
    d = ss.parse_faults("- {kind: crash, service: identity, at: 1, for: 2}", signup)
    assert a == b == c == d
    assert a[0].duration == 2


def test_every_problem_is_reported_at_once():
    text = """
name: Bad Name
services: {a: {}}
steps:
  - {name: s, service: nope, action: do, kind: pivot, compensation: undo}
  - {name: s, service: a, action: do}
network: {loss: 1.5}
faults: [{kind: explode}]
"""
    with pytest.raises(ss.ScenarioError) as err:
        ss.parse_scenario(text, "bad.yaml")
    paths = [p.path for p in err.value.problems]
    assert paths == ["name", "network.loss", "faults[0]"]
    # structural problems fixed: reference problems are listed together
    text = text.replace("Bad Name", "ok").replace("1.5", "0.5").replace("{kind: explode}", "")
    with pytest.raises(ss.ScenarioError) as err:
        ss.parse_scenario(text, "bad.yaml")
    paths = {p.path for p in err.value.problems}
    assert paths == {"steps[0].service", "steps[0].compensation", "steps[1].name", "steps[1].kind"}


def test_reserved_names_and_kind_order():
    base = (
        "name: x\nservices: {coordinator: {}}\nsteps: [{name: s, service: coordinator, "
        "action: do}]\n"
    )
    with pytest.raises(ss.ScenarioError, match="reserved"):
        ss.parse_scenario(base)
    text = (
        "name: x\nservices: {a: {}}\nsteps:\n  - {name: p, service: a, action: do, kind: "
        "retriable}\n  - {name: q, service: a, action: do, kind: pivot}\n"
    )
    with pytest.raises(ss.ScenarioError, match=r"steps\[1\].kind"):
        ss.parse_scenario(text)


def test_arguments_are_checked(signup):
    for kwargs, field in [
        ({"style": "saga"}, "style"),
        ({"seed": -1}, "seed"),
        ({"sagas": 0}, "sagas"),
        ({"horizon": -5}, "horizon"),
    ]:
        with pytest.raises(ss.ScenarioError, match=field):
            ss.simulate(signup, **kwargs)
    with pytest.raises(ss.ScenarioError, match=r"\[0\].saga"):
        ss.simulate(signup, faults=["{kind: fail_step, step: create_user, saga: 9}"], sagas=3)
