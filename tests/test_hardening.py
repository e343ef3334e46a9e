"""Issue 11: every bad input gets its error (a field path and a sentence), never a traceback,
and no input can hold a core or gigabytes. One reproduction per bug found by fuzzing."""

from __future__ import annotations

import time
import tracemalloc
from pathlib import Path

import pytest

import saga_sim as ss
from saga_sim import share
from saga_sim.cli import main
from saga_sim.run import Budget
from saga_sim.scenario import MAX_PROBLEMS

ROOT = Path(__file__).resolve().parent.parent

BASE = """\
name: h
services: {a: {}}
steps:
  - {name: s1, service: a, action: do, compensation: undo}
"""


def problems(text: str) -> list[str]:
    with pytest.raises(ss.ScenarioError) as info:
        ss.parse_scenario(text, source="f.yaml")
    return [str(p) for p in info.value.problems]


def one(text: str) -> str:
    found = problems(text)
    assert len(found) == 1, found
    return found[0]


# --- YAML that made the loader raise ------------------------------------------------------


def test_an_unhashable_key_is_a_problem_with_its_line():
    msg = one(BASE + "x: {[1, 2]: 3}\n")
    assert "line 5" in msg and "key" in msg


def test_an_integer_of_5000_digits_is_a_problem_with_its_line():
    msg = one(BASE + "horizon: " + "9" * 5000 + "\n")
    assert "line 5" in msg and "digits" in msg


@pytest.mark.parametrize("opener", ["[", "{a: "])
def test_deep_flow_nesting_is_a_problem_not_a_recursion_error(opener):
    closer = "]" if opener == "[" else "}"
    msg = one(BASE + "x: " + opener * 5000 + closer * 5000 + "\n")
    assert "nest" in msg


def test_deep_block_nesting_is_refused_too():
    text = BASE + "".join("  " * i + f"k{i}:\n" for i in range(500)) + "  " * 500 + "v: 1\n"
    assert "nest" in one(text)


# --- templates in writes --------------------------------------------------------------------


@pytest.mark.parametrize(
    "template, words",
    [
        ("{saga.x}", "saga"),
        ("{saga[0]}", "saga"),
        ("{user}", "unknown field"),
        ("{0}", "unknown field"),
        ("{}", "unknown field"),
        ("usr-{saga", "brace"),
        ("usr-}", "brace"),
        ("{saga:>4000000}", "width"),
        ("{saga:.100000f}", "precision"),
        ("{saga:q}", "format"),
        ("{saga:s}", "format"),
        ("{saga:{saga}}", "format"),
        ("{saga!x}", "conversion"),
    ],
)
def test_a_bad_template_in_writes_is_refused_at_load_time(template, words):
    text = BASE.replace("undo}", f'undo, writes: {{k: "{template}"}}}}')
    msg = one(text)
    assert "steps[0].writes.k" in msg and words in msg


@pytest.mark.parametrize("template", ["usr-{saga:04d}", "{saga}", "{{literal}}", "a{saga!r:>8}"])
def test_good_templates_still_load_and_run(template):
    text = BASE.replace("undo}", f'undo, writes: {{k: "{template}"}}}}')
    sc = ss.parse_scenario(text)
    run = ss.simulate(sc, "orchestration", seed=1)
    assert run.outcome == "completed"


# --- distributions --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "dist", ["{dist: lognormal, mean: 1, sd: 1e-200}", "{dist: lognormal, mean: 1e-300, sd: 1e6}"]
)
def test_a_lognormal_the_sampler_cannot_draw_from_is_refused(dist):
    msg = one(BASE.replace("undo}", f"undo, duration: {dist}}}"))
    assert "steps[0].duration" in msg and "sd" in msg and "draw from" in msg


def test_exponent_notation_is_a_number_as_in_yaml_1_2():
    sc = ss.parse_scenario(BASE + "horizon: 1e3\npolicy: {timeout: 5E-1}\n")
    assert sc.horizon == 1000.0 and sc.policy.timeout == 0.5
    assert "horizon" in one(BASE + "horizon: '1e3'\n")


# --- text -----------------------------------------------------------------------------------


def test_a_lone_surrogate_is_refused_with_its_path():
    msg = one(BASE + 'title: "ok \\ud800"\n')
    assert "title" in msg and "surrogate" in msg


def test_a_lone_surrogate_in_a_key_is_refused_too():
    msg = one(BASE.replace("{a: {}}", '{a: {data: {"\\udfff": 1}}}'))
    assert "services.a.data" in msg and "surrogate" in msg


def test_validate_reads_at_most_the_limit(capsys, tmp_path):
    t0 = time.perf_counter()
    assert main(["validate", "/dev/zero"]) == 2
    assert time.perf_counter() - t0 < 5
    err = capsys.readouterr().err
    assert "1048576" in err and "Traceback" not in err


def test_run_out_pointing_at_a_file_is_a_clear_error(capsys, tmp_path):
    f = tmp_path / "a-file"
    f.write_text("x")
    assert main(["run", str(ROOT / "scenarios/user_registration.yaml"), "--out", str(f)]) == 2
    err = capsys.readouterr().err
    assert "--out" in err and "not a directory" in err


# --- strict types ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "extra, path",
    [
        ("horizon: true", "horizon"),
        ("horizon: '12'", "horizon"),
        ("policy: {retries: '3'}", "policy.retries"),
        ("policy: {retries: 3.0}", "policy.retries"),
        ("policy: {idempotent: 1}", "policy.idempotent"),
        ("policy: {idempotent: 'yes'}", "policy.idempotent"),
        ("network: {loss: false}", "network.loss"),
        ("workload: {sagas: true}", "workload.sagas"),
        ("faults: [{kind: fail_step, step: s1, attempt: '2'}]", "faults[0].attempt"),
    ],
)
def test_strings_and_booleans_are_not_numbers(extra, path):
    msg = one(BASE + extra + "\n")
    assert f"f.yaml: {path}:" in msg


def test_ints_are_still_floats_and_bare_numbers_still_constants():
    sc = ss.parse_scenario(
        BASE.replace("undo}", "undo, duration: 0}")
        + "horizon: 5\npolicy: {timeout: 1}\n"
        + "faults: [{kind: partition, between: [a, coordinator], at: 0, for: 1}]\n"
    )
    assert sc.horizon == 5.0 and sc.policy.timeout == 1.0
    assert sc.steps[0].duration.mean_value == 0


# --- the list of problems -------------------------------------------------------------------


def test_ten_thousand_unknown_keys_give_a_short_list():
    text = BASE + "".join(f"k{i}: 1\n" for i in range(10_000))
    with pytest.raises(ss.ScenarioError) as info:
        ss.parse_scenario(text)
    err = info.value
    assert len(err.problems) <= MAX_PROBLEMS + 1
    assert f"and {10_000 - MAX_PROBLEMS} more" in str(err.problems[-1])
    assert len(str(err)) < 20_000


def test_a_huge_value_is_shortened_in_its_message():
    msg = one(BASE + "name: " + "X" * 500_000 + "\n")
    assert len(msg) < 1000


# --- budgets --------------------------------------------------------------------------------


def bounded(fn, seconds: float, mib: float):
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        out = fn()
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    took = time.perf_counter() - t0
    assert took < seconds, f"took {took:.1f} s"
    assert peak < mib * 2**20, f"peaked at {peak / 2**20:.0f} MiB"
    return out


# --- work budgets ---------------------------------------------------------------------------

SPIN = """\
name: spin
services: {a: {data: {x: 0}}}
steps:
  - {name: s, service: a, action: take, kind: retriable, duration: 0, data: {item: x, change: -1}}
network: {latency: 0}
policy: {retry_delay: 0, backoff: BACKOFF}
"""


@pytest.mark.parametrize(
    "style, backoff", [("orchestration", 1), ("choreography", 1), ("orchestration", 2)]
)
def test_a_zero_time_loop_ends_the_run_with_a_finding(style, backoff):
    sc = ss.parse_scenario(SPIN.replace("BACKOFF", str(backoff)))
    run = bounded(lambda: ss.simulate(sc, style, seed=1), seconds=20, mib=300)
    assert run.stopped is not None and "zero-time loop" in run.stopped
    assert "retry_delay" in run.stopped and "'s'" in run.stopped
    assert run.stopped in run.notes
    assert run.sagas["believed"].iloc[0] == ""  # nobody declared the saga ended
    assert run.events["time"].max() == 0.0


@pytest.mark.parametrize(
    "budget, words",
    [
        (Budget(events=20_000), "20000 events"),
        (Budget(rows=5_000), "5000 trace rows"),
        (Budget(seconds=0.2), "0.2 s"),
    ],
)
def test_a_run_budget_stops_a_long_run_with_a_message(budget, words):
    sc = ss.load_scenario(ROOT / "scenarios/order_fulfillment.yaml")
    run = bounded(lambda: ss.simulate(sc, sagas=5_000, budget=budget), seconds=20, mib=300)
    assert run.stopped is not None and words in run.stopped and "budget" in run.stopped
    assert run.stopped in run.notes
    if budget.rows is not None:
        assert len(run.events) < budget.rows + 5_000


def test_a_budget_large_enough_changes_nothing():
    sc = ss.load_scenario(ROOT / "scenarios/order_fulfillment.yaml")
    a = ss.simulate(sc, seed=3, sagas=20)
    b = ss.simulate(sc, seed=3, sagas=20, budget=Budget(events=10**9, rows=10**9, seconds=600))
    assert b.stopped is None
    assert a.events.equals(b.events)


def test_compare_takes_a_budget():
    sc = ss.load_scenario(ROOT / "scenarios/order_fulfillment.yaml")
    cmp = ss.compare(sc, sagas=5_000, budget=Budget(events=10_000))
    assert all(r.stopped for r in cmp.runs.values())


def test_the_worker_bomb_is_refused_naming_the_limit():
    services = ", ".join(f"s{i}: {{workers: 1000}}" for i in range(400))
    text = (
        f"name: bomb\nservices: {{{services}}}\nsteps:\n  - {{name: x, service: s0, action: do}}\n"
    )
    msg = " ".join(bounded(lambda: problems(text), seconds=10, mib=200))
    assert "MAX_SERVICES" in msg or "100" in msg
    text = BASE.replace(
        "{a: {}}", "{" + ", ".join(f"s{i}: {{workers: 1000}}" for i in range(50)) + "}"
    )
    text = text.replace("service: a", "service: s0")
    msg = one(text)
    assert "50000 workers" in msg and "10000" in msg


def test_the_template_width_bomb_is_refused_in_bounded_time():
    text = (
        BASE.replace("undo}", 'undo, writes: {k: "{saga:>4000000}"}}') + "workload: {sagas: 40}\n"
    )
    msg = bounded(lambda: one(text), seconds=5, mib=50)
    assert "width" in msg


def test_the_app_shows_a_stopped_run_and_stays_usable():
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
    spin = SPIN.replace("BACKOFF", "1").encode()
    t0 = time.perf_counter()
    at.sidebar.file_uploader[0].set_value(("spin.yaml", spin, "application/yaml")).run()
    assert time.perf_counter() - t0 < 60
    assert not at.exception, [e.value for e in at.exception]
    warnings = " ".join(w.value for w in at.warning)
    assert "zero-time loop" in warnings
    at.selectbox(key="scenario_choice").set_value("user_registration").run()
    assert not at.exception
    assert "zero-time loop" not in " ".join(w.value for w in at.warning)


# --- share links ----------------------------------------------------------------------------


def link_problems(params: dict) -> list[str]:
    with pytest.raises(ss.ScenarioError) as info:
        bounded(lambda: share.decode_config(params), seconds=5, mib=50)
    return [str(p) for p in info.value.problems]


@pytest.mark.parametrize(
    "fault",
    ["[" * 5000, "{a: " * 3000, "{kind: drop, count: " + "9" * 5000 + "}", "{[1]: 2}"],
)
def test_a_fault_in_a_link_that_broke_the_decoder_is_a_problem(fault):
    (msg,) = link_problems({"fault": [fault]})
    assert "fault[0]" in msg and len(msg) < 500


def test_a_5000_digit_seed_is_a_problem():
    (msg,) = link_problems({"seed": "9" * 5000})
    assert "seed" in msg and len(msg) < 300


def test_links_carry_a_bounded_number_of_bounded_faults():
    from saga_sim.share import MAX_LINK_FAULT_CHARS, MAX_LINK_FAULTS

    many = ["{kind: fail_step, step: create_user}"] * 100_000
    (msg,) = link_problems({"fault": many})
    assert f"at most {MAX_LINK_FAULTS}" in msg
    big = "{kind: fail_step, step: " + "x" * 10_000_000 + "}"
    (msg,) = link_problems({"fault": [big]})
    assert f"at most {MAX_LINK_FAULT_CHARS}" in msg


def test_a_zlib_bomb_stops_inflating_at_the_limit():
    import base64
    import zlib

    bomb = zlib.compress(b"a: " + b" " * 150_000_000, 9)
    blob = base64.urlsafe_b64encode(bomb).decode().rstrip("=")
    assert len(blob) < 200_000
    (msg,) = bounded(lambda: link_problems({"yaml": blob}), seconds=5, mib=20)
    assert "yaml" in msg and "1 MiB" in msg


@pytest.mark.parametrize(
    "key, raw, used",
    [
        ("seed", "3000000000", 2**31 - 1),
        ("latency_ms", "5e10", 1e9),
        ("loss", "1.5", 0.999),
        ("timeout", "0", 1e-6),
        ("retries", "1000", 100),
        ("compensation_retries", "-1", 0),
        ("redelivery", "1e9", 1e6),
    ],
)
def test_a_value_out_of_range_is_reported_and_clamped_not_silently_replaced(key, raw, used):
    from saga_sim.share import BOUNDS

    cfg = share.decode_config({key: raw})
    assert getattr(cfg, key) == used
    b = BOUNDS[key]
    assert cfg.notices == (
        f"{key} {raw} is out of range {b.show(b.low)} … {b.show(b.high)}; using {b.show(used)}",
    )


def test_the_app_widgets_take_their_ranges_from_the_one_table():
    text = (ROOT / "app.py").read_text()
    for literal in ("2**31 - 1", "10_000.0", "0.0, 0.5", "600.0"):
        assert literal not in text


def test_a_link_out_of_the_widgets_range_loads_and_says_what_it_used():
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.query_params.update({"loss": "0.9", "duplicate": "0.7", "seed": "3000000000"})
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    warnings = " ".join(w.value for w in at.warning)
    assert "seed 3000000000 is out of range 0 … 2147483647; using 2147483647" in warnings
    assert at.session_state["loss"] == 0.9 and at.session_state["seed"] == 2**31 - 1
    at.button(key="preset_late_step_fails").click().run()
    assert not at.exception


def test_an_alias_bomb_is_still_refused_quickly():
    lol = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
        for p, c in zip("abcdefgh", "bcdefghi")
    )
    found = bounded(lambda: problems(BASE + lol + "title: *i\n"), seconds=5, mib=50)
    assert any("unknown key" in p for p in found)
