"""The app's Experiments tab, Safeguards sidebar and lessons, driven through AppTest."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

import saga_sim as ss
from saga_sim import share

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "app.py")
SIGNUP = ss.load_scenario(ROOT / "scenarios" / "user_registration.yaml")


def fresh(query: dict | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    if query:
        at.query_params.update(query)
    return at.run()


def ok(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


OUTCOME_RE = re.compile(
    r":\w+-badge\[:material/\w+: (completed|compensated|inconsistent|stalled)\]"
)


def outcomes(at: AppTest) -> tuple[str, ...]:
    """The outcome badges of a one-saga run, orchestration's first."""
    return tuple(m.group(1) for md in at.markdown if (m := OUTCOME_RE.search(md.value)))


def charts(at: AppTest) -> dict[str, dict]:
    """Every plotly chart on the page, by key, as its figure JSON."""
    out = {}
    for el in at.get("plotly_chart"):
        spec = json.loads(el.proto.spec)
        key = el.proto.id.rsplit("-", 1)[-1] if el.proto.id else ""
        out[key or str(len(out))] = spec
    return out


def experiments(query: dict | None = None) -> AppTest:
    at = fresh(query)
    at.session_state["view"] = "Experiments"
    return at.run()


def errors(at: AppTest) -> str:
    return " ".join(e.value for e in at.error)


# --------------------------------------------------------------------------------------------
# Experiments


def test_matrix_renders_every_point_for_both_styles():
    at = experiments()
    ok(at)
    n = ss.count_fault_points(SIGNUP)
    grids = [c for c in charts(at).values() if c["data"][0].get("type") == "heatmap"]
    assert len(grids) == 1
    z = grids[0]["data"][0]["z"]
    shape = z["shape"] if isinstance(z, dict) else f"{len(z)}, {len(z[0])}"  # plotly's binary form
    assert shape.replace(" ", "") == f"{n},2"
    pick = grids[0]["data"][1]  # the invisible markers a click selects
    assert len(pick["customdata"]) == 2 * n
    assert any(f"{2 * n} runs simulated" in c.value for c in at.caption)
    assert len(at.selectbox(key="matrix_pick").options) == n


def test_picking_a_matrix_cell_makes_its_faults_active():
    at = experiments()
    at.selectbox(key="matrix_pick").set_value("create_user/drop_reply").run()
    at.button(key="matrix_open").click().run()
    ok(at)
    assert at.session_state["faults"] == ["{kind: drop, step: create_user, leg: reply}"]
    assert at.session_state["sagas"] == 1
    assert at.session_state["view"] == "Timeline"
    assert any("create_user/drop_reply" in i.value for i in at.info)
    assert outcomes(at) == ("completed", "completed")  # the matrix cell's outcomes
    assert at.query_params["fault"] == "{kind: drop, step: create_user, leg: reply}"


def test_monte_carlo_runs_on_its_button_with_a_progress_bar_and_stays_cached():
    at = experiments()
    assert not any("sagas per style ·" in m.value for m in at.markdown)  # nothing ran yet
    at.number_input(key="mc_n").set_value(300)
    at.number_input(key="mc_step_failure").set_value(0.1)
    at.button(key="FormSubmitter:mc_form-Run Monte Carlo").click().run()
    ok(at)
    assert any(m.value.startswith("**300 sagas per style**") for m in at.markdown)
    figs = charts(at)
    assert any(f["layout"]["title"]["text"] == "Outcome shares" for f in figs.values())
    assert any("ECDF" in f["layout"]["title"]["text"] for f in figs.values())
    tables = [df.value for df in at.dataframe]
    assert any(list(t.columns) == list(ss.STYLES) and "completed" in t.index for t in tables)
    # switching tabs and back reruns nothing heavy: the result comes from the cache
    at.session_state["view"] = "Timeline"
    at.run()
    at.session_state["view"] = "Experiments"
    at.run()
    ok(at)
    assert any(m.value.startswith("**300 sagas per style**") for m in at.markdown)


def test_sweep_runs_and_switching_the_metric_redraws():
    at = experiments()
    at.selectbox(key="sweep_param").set_value("policy.timeout").run()
    assert at.text_input(key="sweep_values").value  # a suggestion around the current value
    at.text_input(key="sweep_values").set_value("0.1, 0.5")
    at.number_input(key="sweep_reps").set_value(2)
    at.number_input(key="sweep_sagas").set_value(3)
    at.button(key="sweep_run").click().run()
    ok(at)
    assert any("**policy.timeout** over 2 values" in m.value for m in at.markdown)
    sweep = [f for f in charts(at).values() if "vs policy.timeout" in f["layout"]["title"]["text"]]
    assert len(sweep) == 1 and len(sweep[0]["data"]) == 4  # a band and a line per style
    at.selectbox(key="sweep_metric").set_value("messages_per_saga").run()
    ok(at)
    titles = [f["layout"]["title"]["text"] for f in charts(at).values()]
    assert "messages sent per saga vs policy.timeout" in titles


@pytest.mark.parametrize(
    "param,values,expect",
    [
        ("network.loss", "", "at least one value"),
        ("network.loss", "0.1,,0.2", "empty value"),
        ("network.los", "0.1", "did you mean 'network.loss'"),
        ("network.loss", "2", "network.loss"),
    ],
)
def test_bad_sweep_inputs_show_an_error_not_a_traceback(param, values, expect):
    at = experiments()
    box = at.selectbox(key="sweep_param")
    if param not in box.options:  # typed in: the selectbox accepts new options, and the
        box.options.append(param)  # browser sends them by their text, as AppTest does here
    box.set_value(param)
    at.text_input(key="sweep_values").set_value(values)
    at.button(key="sweep_run").click().run()
    ok(at)
    assert expect in errors(at)


# --------------------------------------------------------------------------------------------
# Safeguards


DUP = "{kind: duplicate, step: create_user, leg: request}"
LOST_EVENT = "{kind: drop, step: create_user, leg: reply}"  # the relay re-publishes it
LATE_CREATE = "{kind: delay, step: create_user, leg: request, extra: 4}"
LATE_PIVOT = "{kind: delay, step: send_welcome_email, leg: request, extra: 5}"


def toggled(query: dict, switches: dict) -> AppTest:
    at = fresh({"seed": "1", **query})
    for key, value in switches.items():
        at.toggle(key=key).set_value(value)
    return at.run()


@pytest.mark.parametrize(
    "switch,query,off,on",
    [
        (
            "idempotent",
            {"fault": DUP},
            ("inconsistent", "inconsistent"),
            ("completed", "completed"),
        ),
        ("outbox", {"fault": LOST_EVENT}, ("completed", "stalled"), ("completed", "completed")),
        (
            "barrier",
            {"fault": LATE_CREATE, "query_status": "off"},
            ("inconsistent", "completed"),
            ("compensated", "completed"),
        ),
        (
            "query_status",
            {"fault": LATE_PIVOT},
            ("inconsistent", "completed"),
            ("compensated", "completed"),
        ),
    ],
)
def test_each_safeguard_toggle_changes_the_outcome_as_theory_says(switch, query, off, on):
    at = fresh({"seed": "1", **query})
    assert at.toggle(key=switch).value is True  # every safeguard is on by default
    assert outcomes(at) == on
    at.toggle(key=switch).set_value(False).run()
    ok(at)
    assert outcomes(at) == off
    assert at.query_params[switch] == "off"  # the switch travels in the link
    at.toggle(key=switch).set_value(True).run()
    assert outcomes(at) == on
    assert switch not in at.query_params  # back to the scenario's value: out of the link


def test_every_switch_is_in_the_sidebar_with_its_explanation():
    at = fresh()
    ok(at)
    captions = " ".join(c.value for c in at.sidebar.caption)
    for name, (_path, text) in share.SAFEGUARDS.items():
        assert text in captions, name
    keys = {w.key for w in [*at.sidebar.toggle, *at.sidebar.number_input]}
    assert {"idempotent", "outbox", "barrier", "query_status", *ISOLATION} <= keys
    assert {"redelivery", "max_redeliveries", "compensation_retries"} <= keys
    assert at.session_state["compensation_order"] == "reverse"


ISOLATION = ("semantic_lock", "commutative", "reread", "version")


def test_knobs_round_trip_through_the_query_string():
    query = {
        "scenario": "trip_booking",
        "seed": "3",
        "sagas": "20",
        "fault": "{kind: fail_step, step: book_flight}",
        "compensation_order": "parallel",
        "redelivery": "off",
        "max_redeliveries": "2",
        "compensation_retries": "1",
        "idempotent": "off",
        "semantic_lock": "on",
        "loss": "0.05",
    }
    at = fresh(query)
    ok(at)
    state = at.session_state
    assert state["compensation_order"] == "parallel" and state["redelivery"] == 0.0
    assert state["max_redeliveries"] == 2 and state["compensation_retries"] == 1
    assert state["idempotent"] is False and state["semantic_lock"] is True
    back = {k: at.query_params[k] for k in query}
    assert back == query  # the app writes the same configuration back
    metrics = [(m.label, m.value) for m in at.metric]
    again = fresh(dict(at.query_params))
    assert [(m.label, m.value) for m in again.metric] == metrics
    # the parallel order shows its race in the Invariants tab
    again.session_state["view"] = "Invariants"
    again.run()
    assert any("compensation_order" in m.value for m in again.markdown)


def test_a_bad_switch_in_a_link_is_explained():
    at = fresh({"outbox": "perhaps", "compensation_order": "random"})
    ok(at)
    text = errors(at)
    assert "outbox" in text and "compensation_order" in text
    assert at.session_state["outbox"] is True


# --------------------------------------------------------------------------------------------
# Lessons, dead letters and needs_intervention


def test_a_lesson_shows_the_failure_then_the_fix():
    at = fresh()
    at.selectbox(key="lesson").set_value("no_outbox").run()
    at.button(key="lesson_without").click().run()
    ok(at)
    assert at.session_state["outbox"] is False
    assert outcomes(at) == ("completed", "stalled")
    assert any("Lesson: event lost on its way, no outbox" in w.value for w in at.warning)
    at.button(key="lesson_with").click().run()
    assert at.session_state["outbox"] is True
    assert outcomes(at) == ("completed", "completed")
    assert any("safeguard on" in s.value for s in at.success)


def test_lessons_that_do_not_fit_are_listed_with_a_reason():
    at = fresh()
    options = at.selectbox(key="lesson").options
    assert "race for stock (no countermeasure)" not in options
    hidden = " ".join(c.value for c in at.sidebar.caption)
    assert "race for stock" in hidden and "shared data" in hidden
    at = fresh({"scenario": "inventory_concurrency"})
    assert "race for stock (no countermeasure)" in at.selectbox(key="lesson").options


def test_compensation_keeps_failing_shows_dead_letters_and_needs_intervention():
    at = fresh()
    at.selectbox(key="lesson").set_value("compensation_fails").run()
    at.button(key="lesson_without").click().run()
    badges = " ".join(m.value for m in at.markdown)
    assert badges.count("needs manual intervention") == 2
    assert badges.count("1 dead letter(s)") == 2
    at.session_state["view"] = "Invariants"
    at.run()
    ok(at)
    assert len([e for e in at.error if "needs_intervention" in e.value]) == 2
    dead = [df.value for df in at.dataframe if "detail" in df.value and "saga" in df.value]
    assert len(dead) == 2  # one dead-letter queue per style
    for frame in dead:
        assert list(frame["step"]) == ["create_user"]


ONE_STEP = "name: one\nservices: {a: {}}\nsteps:\n  - {name: only, service: a, action: do}\n"


def test_a_one_step_scenario_of_ones_own_gets_its_matrix_lessons_and_sweep():
    cfg = share.RunConfig(scenario="custom", scenario_yaml=ONE_STEP)
    at = experiments(share.encode_config(cfg))
    ok(at)
    assert len(at.selectbox(key="matrix_pick").options) == 1 + 8  # no fault + 8 per step
    assert at.selectbox(key="lesson").options == [
        "duplicate without idempotency",
        "event lost on its way, no outbox",
        "broker gives up: dead letter",
        "broker without redelivery",
    ]
    at.button(key="sweep_run").click().run()
    ok(at)
    assert any("runs simulated" in m.value for m in at.markdown)


def test_switching_scenario_resets_the_experiment_pickers():
    at = experiments()
    at.selectbox(key="sweep_param").set_value("services.identity.workers").run()
    at.selectbox(key="scenario_choice").set_value("trip_booking").run()
    ok(at)
    assert at.session_state["sweep_param"] == "network.loss"
    assert len(at.selectbox(key="matrix_pick").options) == ss.count_fault_points(
        ss.load_scenario(ROOT / "scenarios" / "trip_booking.yaml")
    )
