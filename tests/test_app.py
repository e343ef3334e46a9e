"""The Streamlit app, driven headless through streamlit.testing.v1.AppTest."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

import saga_sim as ss
from saga_sim import share

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "app.py")
OUTCOME_RE = re.compile(
    r":(\w+)-badge\[:material/\w+: (completed|compensated|inconsistent|stalled)"
)


def fresh(query: dict | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    if query:
        at.query_params.update(query)
    return at.run()


def no_exception(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def outcomes(at: AppTest) -> tuple[str, ...]:
    """The outcome badges on the first screen, orchestration's first."""
    found = []
    for md in at.markdown:
        m = OUTCOME_RE.search(md.value)
        if m:
            found.append(m.group(2))
    return tuple(found)


def qp(at: AppTest, key: str) -> list[str]:
    """A query parameter's values as a list (AppTest gives one value as a plain string)."""
    v = at.query_params.get(key)
    if v is None:
        return []
    return [v] if isinstance(v, str) else list(v)


def metric_values(at: AppTest) -> list[tuple[str, str]]:
    return [(m.label, m.value) for m in at.metric]


@pytest.fixture(scope="module")
def first() -> AppTest:
    return fresh()


def test_first_screen_renders_both_styles_already_simulated(first):
    no_exception(first)
    heads = [s.value for s in first.subheader]
    assert "orchestration" in heads and "choreography" in heads
    assert outcomes(first) == ("completed", "completed")
    labels = [m.label for m in first.metric]
    assert labels.count("messages") == 2 and labels.count("compensations") == 2
    assert any("latency" in label for label in labels)
    intro = " ".join(m.value for m in first.markdown)
    assert "saga" in intro and "preset" in intro
    assert [t.label for t in first.tabs][:2] == ["Timeline", "State graphs"]
    assert "Experiments" in [t.label for t in first.tabs]
    assert qp(first, "scenario") == ["user_registration"]


EXPECTED = {
    "happy": ("completed", "completed"),
    "late_step_fails": ("compensated", "compensated"),  # "email step fails"
    "first_step_fails": ("compensated", "compensated"),
    "service_down": ("compensated", "completed"),  # timeouts vs a durable broker
    "reply_lost": ("completed", "completed"),  # coordinator retry; outbox relay re-publishes
    "compensation_fails": ("inconsistent", "inconsistent"),
    "partition": ("compensated", "completed"),
    "duplicate": ("completed", "completed"),
    "coordinator_crash": ("completed", "completed"),
}


@pytest.mark.parametrize("preset", list(EXPECTED))
def test_each_preset_changes_the_outcome_as_theory_says(preset):
    at = fresh()
    at.button(key=f"preset_{preset}").click().run()
    no_exception(at)
    assert outcomes(at) == EXPECTED[preset]
    active = [p for p in ss.presets(ss.load_scenario(ROOT / "scenarios/user_registration.yaml"))]
    (p,) = [p for p in active if p.key == preset]
    assert len(qp(at, "fault")) == len(p.faults)


def test_email_step_fails_shows_the_compensation_in_every_view():
    at = fresh()
    at.button(key="preset_late_step_fails").click().run()
    for view in ss_views():
        at.session_state["view"] = view
        at.run()
        no_exception(at)
    at.session_state["view"] = "Compensation"
    at.run()
    tables = [df.value for df in at.dataframe]
    assert any("delete_user" in set(t.get("compensation", [])) for t in tables)
    at.session_state["view"] = "Invariants"
    at.run()
    assert len(at.success) == 2  # every invariant holds in both styles


def ss_views() -> list[str]:
    import importlib.util

    spec = importlib.util.spec_from_file_location("saga_app_views", APP)
    text = Path(APP).read_text()
    block = text.split("VIEWS = (", 1)[1].split(")", 1)[0]
    del spec
    return re.findall(r'"([^"]+)"', block)


def test_compensation_keeps_failing_points_invariants_at_rows():
    at = fresh()
    at.button(key="preset_compensation_fails").click().run()
    at.session_state["view"] = "Invariants"
    at.run()
    no_exception(at)
    text = " ".join(m.value for m in at.markdown)
    assert "semantic_atomicity" in text
    assert len(at.dataframe) >= 2  # the trace rows of each violation


BAD_YAML = (
    "name: Bad Name\nservices: {a: {}}\npolicy: {retries: -1}\n"
    "steps:\n  - {name: s1, service: a, action: x, colour: red}\n"
)


def test_invalid_yaml_shows_every_problem_and_the_app_keeps_working():
    at = fresh()
    at.text_area(key="yaml_edit").set_value(BAD_YAML).run()
    at.button(key="apply_yaml").click().run()
    no_exception(at)
    errors = " ".join(e.value for e in at.error)
    assert "3 problem(s)" in errors
    assert "name:" in errors and "policy.retries" in errors and "steps[0].colour" in errors
    assert outcomes(at) == ("completed", "completed")  # the last valid scenario stays loaded
    assert at.session_state["scenario_choice"] == "user_registration"
    at.button(key="preset_late_step_fails").click().run()
    no_exception(at)
    assert outcomes(at) == ("compensated", "compensated")


def test_invalid_upload_shows_an_error_then_a_valid_upload_loads():
    at = fresh()
    at.sidebar.file_uploader[0].set_value(("bad.yaml", b"steps: [", "application/yaml")).run()
    no_exception(at)
    errors = " ".join(e.value for e in at.error)
    assert "bad.yaml" in errors and "YAML syntax error" in errors
    trip = (ROOT / "scenarios/trip_booking.yaml").read_bytes()
    at.sidebar.file_uploader[0].set_value(("trip.yaml", trip, "application/yaml")).run()
    no_exception(at)
    assert at.session_state["scenario_choice"] == "custom"
    assert "yaml" in at.query_params  # the custom scenario travels in the link
    assert outcomes(at) == ("completed", "completed")


def test_fault_builder_adds_and_removes_a_fault():
    at = fresh()
    at.selectbox(key="fb_kind").set_value("fail_step").run()
    at.selectbox(key="fb_step").set_value("create_user").run()
    at.button(key="fb_add").click().run()
    no_exception(at)
    assert at.session_state["faults"] == ["{kind: fail_step, step: create_user}"]
    assert outcomes(at) == ("compensated", "compensated")
    remove = [b for b in at.button if b.key and b.key.startswith("remove_0")]
    remove[0].click().run()
    assert at.session_state["faults"] == []
    assert outcomes(at) == ("completed", "completed")


def test_a_query_string_reproduces_a_run():
    cfg = share.RunConfig(
        faults=("{kind: drop, step: create_user, leg: reply}",),
        seed=3,
        sagas=4,
        latency_ms=8.0,
        retries=2,
    )
    qs = share.config_to_query_string(cfg)
    at = fresh({k: v for k, v in share.encode_config(cfg).items()})
    no_exception(at)
    sc = share.apply_knobs(ss.load_scenario(ROOT / "scenarios/user_registration.yaml"), cfg)
    cmp = ss.compare(sc, faults=list(cfg.faults), seed=3, sagas=4)
    shown = dict(metric_values(at)[:3]), dict(metric_values(at)[3:6])
    for style, values in zip(ss.STYLES, shown):
        m = cmp.runs[style].metrics
        assert values["messages"] == f"{m['messages']:,}"
        assert values["compensations"] == f"{m['compensations']:,}"
        assert values["latency (mean)"] == f"{m['latency_mean'] * 1000:.1f} ms"
    # the app writes the same configuration back into the URL
    assert share.config_from_query_string(qs) == share.decode_config(at.query_params)
    # and a second visitor with that link sees the same numbers
    again = fresh(dict(at.query_params))
    assert metric_values(again) == metric_values(at)


def test_a_bad_link_is_explained_not_a_traceback():
    at = fresh({"seed": "-3", "fault": "{kind: fail_step, step: nope}", "loss": "x"})
    no_exception(at)
    errors = " ".join(e.value for e in at.error)
    assert "seed" in errors and "loss" in errors
    assert outcomes(at) == ("completed", "completed")


def test_a_bad_fault_in_a_link_names_its_field():
    at = fresh({"fault": "{kind: fail_step, step: nope}"})
    no_exception(at)
    errors = " ".join(e.value for e in at.error)
    assert "fault[0].step" in errors and "nope" in errors


def test_sagas_are_capped_with_a_message():
    at = fresh({"sagas": "5000", "fault": "{kind: fail_step, step: create_user, saga: 2}"})
    no_exception(at)
    assert at.session_state["sagas"] == 2000
    assert any("2,000" in w.value for w in at.warning)
    assert any("completed: 1,999" in md.value for md in at.markdown)
