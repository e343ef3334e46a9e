"""Figures and trace readings built from real simulated frames (saga_sim.viz, saga_sim.replay)."""

from __future__ import annotations

import time

import pytest

import saga_sim as ss
from saga_sim import viz

EMAIL_FAILS = ["{kind: fail_step, step: send_welcome_email}"]
REPLY_LOST = ["{kind: drop, step: create_user, leg: reply}"]
IDENTITY_DOWN = ["{kind: crash, service: identity, at: 0.02, for: 1.0}"]
PARTITION = ['{kind: partition, between: [identity, "*"], at: 0.01, for: 2}']


@pytest.fixture(scope="module")
def email(signup):
    return ss.compare(signup, faults=EMAIL_FAILS, seed=7)


def _message_traces(fig):
    return [t for t in fig.data if isinstance(t.meta, dict) and "class" in t.meta]


def _arrivals(ev):
    """Every arrow of a sequence diagram: one per deliver or drop row, plus in-flight sends."""
    return int(ev["kind"].isin(["deliver", "drop"]).sum())


@pytest.mark.parametrize("faults", [[], EMAIL_FAILS, REPLY_LOST, IDENTITY_DOWN, PARTITION])
@pytest.mark.parametrize("style", ss.STYLES)
def test_timeline_draws_one_arrow_per_message(signup, faults, style):
    ev = ss.simulate(signup, style, faults=faults, seed=7).events
    fig = viz.timeline(ev)
    traces = _message_traces(fig)
    assert sum(t.meta["messages"] for t in traces) == _arrivals(ev)
    for t in traces:
        # each arrow is start, end, gap; the end carries the marker
        assert len(t.x) == len(t.y) == 3 * t.meta["messages"]
        assert list(t.marker.size[1::3]) == [t.marker.size[1]] * t.meta["messages"]
        assert t.marker.angleref == "previous"
        assert t.marker.symbol == ("x" if t.meta["class"] == "lost" else "arrow")


def test_lost_messages_end_in_an_x(signup):
    ev = ss.simulate(signup, "choreography", faults=REPLY_LOST, seed=7).events
    fig = viz.timeline(ev)
    (lost,) = [t for t in _message_traces(fig) if t.meta["class"] == "lost"]
    assert lost.meta["messages"] == int((ev["kind"] == "drop").sum()) == 1
    assert lost.marker.symbol == "x"
    assert "create_user.succeeded" in lost.hovertext[1]


def test_compensation_messages_have_their_own_trace(email):
    fig = viz.timeline(email.orchestration.events)
    classes = {t.meta["class"]: t.meta["messages"] for t in _message_traces(fig)}
    assert classes["compensation"] == 2  # delete_user and delete_user.ok
    assert classes["failure"] == 1
    kinds = {t.meta["kind"]: t.meta["events"] for t in fig.data if "events" in (t.meta or {})}
    assert kinds["comp_commit"] == 1 and kinds["tx_abort"] == 1


def test_duplicates_get_their_own_trace(signup):
    ev = ss.simulate(
        signup, "orchestration", faults=["{kind: duplicate, step: create_user}"]
    ).events
    classes = {t.meta["class"]: t.meta["messages"] for t in _message_traces(viz.timeline(ev))}
    assert classes["duplicate"] == 1


def test_crash_window_is_shaded_and_labelled_on_its_lane(signup):
    ev = ss.simulate(signup, "orchestration", faults=IDENTITY_DOWN, seed=7).events
    fig = viz.timeline(ev)
    lanes = viz.lanes(ev)
    rects = [s for s in fig.layout.shapes if s.type == "rect"]
    assert len(rects) == 1
    (r,) = rects
    assert r.x0 < lanes.index("identity") < r.x1
    assert (r.y0, r.y1) == (0.02, pytest.approx(1.02))
    assert any("identity down 0.02s-1.02s" in a.text for a in fig.layout.annotations)


def test_partition_window_is_shaded(signup):
    ev = ss.simulate(signup, "choreography", faults=PARTITION, seed=7).events
    w = viz.fault_windows(ev)
    assert list(w["kind"]) == ["partition"] and w["nodes"][0] == ("identity",)
    fig = viz.timeline(ev)
    assert [s.name for s in fig.layout.shapes if s.type == "rect"] == [
        "partition: partition identity | * 0.01s-2.01s"
    ]


def test_cursor_and_saga_filter(signup):
    run = ss.simulate(signup, "orchestration", faults=EMAIL_FAILS, seed=3, sagas=5)
    fig = viz.timeline(run.events, saga=2, cursor=0.5)
    assert [s.y0 for s in fig.layout.shapes if s.name == "cursor"] == [0.5]
    for t in _message_traces(fig):
        assert all("saga 2 " in h for h in t.hovertext[1::3])
    n2 = int(run.events[run.events["saga"] == 2]["kind"].isin(["deliver", "drop"]).sum())
    assert sum(t.meta["messages"] for t in _message_traces(fig)) == n2


def test_timeline_stays_fast_with_thousands_of_messages(signup):
    ev = ss.simulate(signup, "orchestration", seed=1, sagas=1000).events
    t0 = time.perf_counter()
    fig = viz.timeline(ev)
    elapsed = time.perf_counter() - t0
    assert sum(t.meta["messages"] for t in _message_traces(fig)) == _arrivals(ev) >= 7000
    assert not fig.layout.annotations  # no annotation per message
    assert elapsed < 5.0


def test_state_machine_counts_visits_and_highlights_the_path(signup, email):
    states = ss.orchestration_states(signup)
    fig = viz.state_machine(states, email.orchestration.events)
    (nodes,) = [t for t in fig.data if isinstance(t.meta, dict) and "visits" in t.meta]
    visits = nodes.meta["visits"]
    assert visits["compensating:create_user"] == 1 and visits["compensated"] == 1
    assert visits["completed"] == 0
    taken = {t.meta["path"] for t in fig.data if (t.meta or {}).get("taken")}
    assert taken == {"forward", "failure", "compensation"}


def test_state_machine_counts_retries_as_loops(signup):
    run = ss.simulate(signup, "orchestration", faults=IDENTITY_DOWN, seed=7)
    visits, moves, _ = viz.state_visits(ss.orchestration_states(signup), run.events)
    assert moves[("executing:create_user", "executing:create_user")] == 2
    assert visits["completed"] == 1


def test_event_flow_counts_deliveries(signup, email):
    fig = viz.event_flow(ss.choreography_flow(signup), email.choreography.events)
    (topics,) = [t for t in fig.data if isinstance(t.meta, dict) and "published" in t.meta]
    pub = topics.meta["published"]
    assert pub["send_welcome_email.failed"] == 1
    assert pub["create_user.compensated"] == 1  # published, though nobody subscribes
    taken = {t.meta["path"] for t in fig.data if (t.meta or {}).get("taken")}
    assert {"forward", "failure", "compensation"} <= taken


def test_compensation_gantt_and_table(signup):
    faults = [*EMAIL_FAILS, "{kind: fail_compensation, step: create_user, times: 2}"]
    ev = ss.simulate(signup, "orchestration", faults=faults, seed=7).events
    fig = viz.compensation_gantt(ev)
    bars = {t.meta["kind"]: t.meta["bars"] for t in fig.data}
    assert bars == {"tx_commit": 2, "tx_abort": 1, "comp_commit": 1, "comp_fail": 2}
    table = viz.compensation_table(ev)
    assert list(table["result"]) == ["failed", "failed", "undone"]
    assert list(table["attempt"]) == [1, 2, 3]
    assert table["undid"].iloc[-1] == "user_id=usr-0001"
    assert table["triggered_by"].str.startswith("send_welcome_email aborted").all()


def test_compensation_gantt_without_work_is_not_empty_handed():
    import pandas as pd

    fig = viz.compensation_gantt(pd.DataFrame(columns=ss.EVENT_COLUMNS))
    assert "no local transactions" in fig.layout.annotations[0].text


def test_store_at_before_and_after_the_compensation(email):
    ev = email.orchestration.events
    t_comp = float(ev.loc[ev["kind"] == "comp_commit", "time"].iloc[0])
    before = viz.store_at(ev, t_comp - 1e-9)
    after = viz.store_at(ev, t_comp)
    assert ("identity", "user_id=usr-0001") in set(zip(before["service"], before["record"]))
    assert "identity" not in set(after["service"])
    assert list(after["service"]) == ["validator"]
    assert after["fields"].iloc[0] == {"form": "cleaned"}
    assert ss.store_at is viz.store_at
    assert viz.store_at(ev, -1).empty


def test_mermaid_has_one_arrow_per_arrival_and_crosses_for_losses(signup):
    ev = ss.simulate(signup, "choreography", faults=REPLY_LOST, seed=7).events
    text = viz.to_mermaid(ev, saga=1)
    lines = text.splitlines()
    assert lines[0] == "sequenceDiagram"
    arrows = [ln for ln in lines if "->>" in ln or "-->>" in ln or "-x" in ln or "-)" in ln]
    assert len(arrows) == _arrivals(ev)
    assert sum("-x" in ln for ln in arrows) == int((ev["kind"] == "drop").sum()) == 1
    assert sum(ln.strip().startswith("participant") for ln in lines) == len(viz.lanes(ev))
    assert not any(";" in ln for ln in lines)


def test_comparison_chart_shows_both_styles(email):
    fig = viz.comparison_chart(email.metrics)
    outcomes = {t.name: list(t.y) for t in fig.data if t.name in ss.OUTCOMES}
    assert outcomes["compensated"] == [1.0, 1.0]
    assert len(fig.layout.annotations) == 4  # the four panel titles


def test_latency_chart_and_html(signup):
    cmp = ss.compare(
        signup, seed=2, sagas=20, faults=["{kind: fail_step, step: create_user, saga: 3}"]
    )
    fig = viz.latency_chart(cmp.sagas)
    names = " ".join(t.name for t in fig.data)
    assert "completed (38)" in names and "compensated (2)" in names
    html = viz.to_html(fig, title="latency")
    assert "<html>" in html and "<title>latency</title>" in html and "plotly" in html


def test_viz_imports_no_simulation():
    import ast
    from pathlib import Path

    for path in Path(viz.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text())
        mods = {
            n.module
            for n in ast.walk(tree)
            if isinstance(n, ast.ImportFrom) and n.module is not None
        }
        assert not any(m and ("world" in m or "styles" in m or m == "simpy") for m in mods), path


def test_lanes_order_keeps_a_silent_service(signup):
    ev = ss.simulate(signup, "orchestration", faults=IDENTITY_DOWN[:0] + PARTITION, seed=7).events
    assert "notifier" not in viz.lanes(ev)
    lanes = ["client", "coordinator", *signup.services]
    fig = viz.timeline(ev, lanes_order=lanes)
    assert list(fig.layout.xaxis.ticktext)[-1] == "notifier"


def test_state_labels_get_room_left_of_their_lane(signup):
    """The coordinator's state labels are written left of its lane: the axis starts further left
    for a longer label, so the first lanes' labels are not cut off."""
    orch = ss.simulate(signup, "orchestration", seed=1)
    chor = ss.simulate(signup, "choreography", seed=1)
    labelled = viz.timeline(orch.events, saga=1)
    plain = viz.timeline(chor.events, saga=1)  # its one state label sits on the last lane
    assert plain.layout.xaxis.range[0] == pytest.approx(-0.6)
    assert labelled.layout.xaxis.range[0] < -0.6
    few = viz.timeline(orch.events, saga=1, max_labels=0)  # labels turned off
    assert few.layout.xaxis.range[0] == pytest.approx(-0.6)
