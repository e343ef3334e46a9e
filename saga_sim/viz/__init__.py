"""Figures of a run, drawn with plotly from its DataFrames only (never from simulation objects).

::

    import saga_sim as ss
    from saga_sim import viz
    sc = ss.load_scenario("scenarios/user_registration.yaml")
    cmp = ss.compare(sc, faults=["{kind: fail_step, step: create_user}"])
    viz.timeline(cmp.orchestration.events, saga=1).show()
    viz.state_machine(ss.orchestration_states(sc), cmp.orchestration.events)
    viz.event_flow(ss.choreography_flow(sc), cmp.choreography.events)
    viz.compensation_gantt(cmp.choreography.events); viz.compensation_table(cmp.choreography.events)
    viz.comparison_chart(cmp.metrics)
    print(viz.to_mermaid(cmp.orchestration.events, saga=1))
    viz.store_at(cmp.orchestration.events, t=0.05)
"""

from __future__ import annotations

import plotly.graph_objects as go

from ..replay import (
    MESSAGE_CLASSES,
    compensation_table,
    fault_windows,
    lanes,
    messages,
    store_at,
)
from .comparison import comparison_chart, latency_chart
from .compensation import compensation_gantt, work_intervals
from .graphs import event_flow, state_machine, state_visits
from .mermaid import to_mermaid
from .timeline import timeline

__all__ = [
    "MESSAGE_CLASSES",
    "comparison_chart",
    "compensation_gantt",
    "compensation_table",
    "event_flow",
    "fault_windows",
    "lanes",
    "latency_chart",
    "messages",
    "state_machine",
    "state_visits",
    "store_at",
    "timeline",
    "to_html",
    "to_mermaid",
    "work_intervals",
]


def to_html(fig: go.Figure, title: str | None = None) -> str:
    """A figure as a standalone HTML page (plotly.js inlined: it opens offline).

    Args:
        fig: the figure.
        title: the page title (default: the figure's title, else "saga-sim figure").
    """
    html = fig.to_html(full_html=True, include_plotlyjs=True)
    name = title or (fig.layout.title.text if fig.layout.title and fig.layout.title.text else None)
    if name:
        html = html.replace("<head>", f"<head><title>{name}</title>", 1)
    return html
