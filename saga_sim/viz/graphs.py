"""State graphs: the orchestrator's state machine and the choreography's event flow.

Both are networkx graphs laid out left to right (the forward path along the top row, failure and
compensation below it, flowing back to the left), drawn with plotly, with the path a run
actually took highlighted and counted from its trace.
"""

from __future__ import annotations

import math

import networkx as nx
import numpy as np
import pandas as pd
import plotly.graph_objects as go

from ._style import PATH_COLOURS, base_layout

__all__ = ["event_flow", "state_machine", "state_visits"]

_NODE_COLOURS = {
    "started": "#6b7280",
    "executing": "#2563eb",
    "compensating": "#ea580c",
    "completed": "#16a34a",
    "compensated": "#ea580c",
    "needs_intervention": "#dc2626",
    "querying": "#7c3aed",
}


def _normalise_state(state: str, nodes: set[str]) -> tuple[str, bool]:
    """Map a traced state name to a node of the machine; second item: a recovery."""
    recovering = state.startswith("recovering:")
    if recovering:
        state = state[len("recovering:") :]
    if state in nodes:
        return state, recovering
    head = state.split(":", 1)[0]
    if head in nodes:
        return head, recovering
    return state, recovering


def state_visits(states: pd.DataFrame, events: pd.DataFrame) -> tuple[dict, dict, dict]:
    """Count, from the trace, how often each state was entered and each transition taken.

    Returns:
        (visits {state: n}, transitions {(a, b): n}, recoveries {state: n}); retries count as
        self-transitions of the state they happened in.
    """
    nodes = set(states["source"]) | set(states["target"])
    edges = set(zip(states["source"], states["target"]))
    seen: dict[int, list[str]] = {}
    rows = events[
        (events["source"] == "coordinator") & events["kind"].isin(["state", "retry", "timeout"])
    ]
    visits: dict[str, int] = {}
    moves: dict[tuple[str, str], int] = {}
    recoveries: dict[str, int] = {}
    current: dict[int, str] = {}
    for kind, saga, detail in zip(rows["kind"], rows["saga"], rows["detail"]):
        if kind == "state":
            st, rec = _normalise_state(str(detail), nodes)
            prev = current.get(saga)
            if rec:
                recoveries[st] = recoveries.get(st, 0) + 1
                current[saga] = st
                continue
            visits[st] = visits.get(st, 0) + 1
            if prev is not None and prev != st:
                if (prev, st) not in edges:
                    # parallel steps: the state was entered from an earlier one, not the last
                    prev = next((x for x in reversed(seen.get(saga, [])) if (x, st) in edges), prev)
                moves[(prev, st)] = moves.get((prev, st), 0) + 1
            current[saga] = st
            seen.setdefault(saga, []).append(st)
        elif kind == "retry":
            st = current.get(saga)
            if st is not None:
                moves[(st, st)] = moves.get((st, st), 0) + 1
    return visits, moves, recoveries


def _edge_labels(x: list[float], y: list[float], text: list[str], colour: str) -> go.Scatter:
    """Edge labels as one text-only trace (no hover, no legend)."""
    return go.Scatter(
        x=x,
        y=y,
        mode="text",
        text=text,
        textfont=dict(size=10, color=colour),
        hoverinfo="skip",
        showlegend=False,
    )


def _wrap(name: str, width: int = 14) -> str:
    """Break a long snake_case name at the underscore nearest its middle."""
    if len(name) <= width or "_" not in name:
        return name
    mid = len(name) // 2
    cut = min((i for i, ch in enumerate(name) if ch == "_"), key=lambda i: abs(i - mid))
    return name[: cut + 1] + "<br>" + name[cut + 1 :]


def _machine_positions(g: nx.DiGraph) -> dict[str, tuple[float, float]]:
    steps: list[str] = []
    for n in g.nodes:
        if ":" in n:
            step = n.split(":", 1)[1]
            if step not in steps:
                steps.append(step)
    col = {s: i + 1 for i, s in enumerate(steps)}
    pos: dict[str, tuple[float, float]] = {}
    fixed = {
        "started": (0.0, 0.0),
        "completed": (len(steps) + 1.0, 0.0),
        "compensated": (0.0, -1.0),
        "needs_intervention": (0.0, -2.0),
    }
    extra = 0
    for n in g.nodes:
        if n in fixed:
            pos[n] = fixed[n]
        elif n.startswith("executing:"):
            pos[n] = (float(col[n.split(":", 1)[1]]), 0.0)
        elif n.startswith("compensating:"):
            pos[n] = (float(col[n.split(":", 1)[1]]), -1.0)
        else:
            pos[n] = (float(extra), -3.0)
            extra += 1
    return pos


def _edge_kind(a: str, b: str) -> str:
    if b == "needs_intervention" or (
        a.startswith("executing") and not b.startswith(("executing", "completed"))
    ):
        return "failure"
    if a.startswith("compensating") or b.startswith("compensat"):
        return "compensation"
    return "forward"


def _segment(p: tuple[float, float], q: tuple[float, float], r: float, bend: float) -> tuple:
    """Points of an edge from p to q, shortened by r at both ends, bent sideways by ``bend``."""
    (x0, y0), (x1, y1) = p, q
    dx, dy = x1 - x0, y1 - y0
    d = math.hypot(dx, dy) or 1.0
    ux, uy = dx / d, dy / d
    sx, sy = x0 + ux * r, y0 + uy * r
    ex, ey = x1 - ux * r, y1 - uy * r
    if not bend:
        return [sx, ex], [sy, ey], ((sx + ex) / 2, (sy + ey) / 2)
    nx_, ny_ = -uy * bend, ux * bend
    t = np.linspace(0, 1, 16)
    mx, my = (sx + ex) / 2 + nx_, (sy + ey) / 2 + ny_
    xs = (1 - t) ** 2 * sx + 2 * (1 - t) * t * mx + t**2 * ex
    ys = (1 - t) ** 2 * sy + 2 * (1 - t) * t * my + t**2 * ey
    return list(xs), list(ys), (xs[8], ys[8])


def _loop(p: tuple[float, float], up: bool, r: float) -> tuple:
    """A retry loop beside the node (upper right above the row, lower right below)."""
    x, y = p
    sign = 1 if up else -1
    cx, cy = x + 0.17, y + sign * 0.15
    ang = math.atan2(y - cy, x - cx)
    t = np.linspace(ang + 0.9, ang + 2 * math.pi - 0.9, 20)
    rad = 0.1
    xs = cx + rad * np.cos(t)
    ys = cy + rad * np.sin(t)
    return list(xs), list(ys), (cx + 0.2, cy + sign * 0.1)


def _edge_traces(edges: list[dict], width_of: callable) -> list[go.Scatter]:
    """Draw edges grouped by (path kind, taken): one line trace per group, arrow at each end."""
    groups: dict[tuple[str, bool], list[dict]] = {}
    for e in edges:
        groups.setdefault((e["kind"], e["count"] > 0), []).append(e)
    traces = []
    for (kind, taken), es in sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        xs: list = []
        ys: list = []
        sym: list = []
        hover: list = []
        for e in es:
            xs += [*e["xs"], None]
            ys += [*e["ys"], None]
            sym += ["circle"] * (len(e["xs"]) - 1) + ["arrow", "circle"]
            hover += [e["hover"]] * len(e["xs"]) + [None]
        colour = PATH_COLOURS[kind] if taken else "#c7ccd4"
        sizes = [0 if s == "circle" else (12 if taken else 9) for s in sym]
        traces.append(
            go.Scatter(
                x=xs,
                y=ys,
                mode="lines+markers",
                line=dict(
                    color=colour, width=3 if taken else 1.2, dash="solid" if taken else "dot"
                ),
                marker=dict(symbol=sym, size=sizes, angleref="previous", color=colour),
                name=f"{kind} ({'taken' if taken else 'not taken'})",
                legendgroup=f"{kind}-{taken}",
                hovertext=hover,
                hoverinfo="text",
                showlegend=taken,
                meta={"path": kind, "taken": taken, "edges": len(es)},
            )
        )
    return traces


def _finish(fig: go.Figure, pos: dict, title: str | None, height: int) -> go.Figure:
    xs = [p[0] for p in pos.values()] or [0]
    ys = [p[1] for p in pos.values()] or [0]
    fig.update_xaxes(visible=False, range=[min(xs) - 0.8, max(xs) + 0.8])
    fig.update_yaxes(visible=False, range=[min(ys) - 0.8, max(ys) + 0.8], scaleanchor=None)
    base_layout(fig, title, height)
    fig.update_layout(hovermode="closest", dragmode="pan")
    return fig


def state_machine(
    states: pd.DataFrame, events: pd.DataFrame, title: str | None = None, height: int = 460
) -> go.Figure:
    """The orchestrator's state machine, left to right, with the path the run took highlighted.

    Args:
        states: ``ss.orchestration_states(scenario)`` (source, target, label).
        events: the orchestration run's events; its coordinator ``state`` rows give the visit
            counts and its ``retry`` rows the retry loops.
        title: the figure's title.
        height: pixels.

    Returns:
        A plotly figure; node markers carry ``meta={"visits": {state: n}}``.
    """
    g = nx.DiGraph()
    for src, dst, label in zip(states["source"], states["target"], states["label"]):
        g.add_edge(src, dst, label=label)
    visits, moves, recoveries = state_visits(states, events)
    for st in visits:
        if st not in g:
            g.add_node(st)
    for a, b in moves:
        if not g.has_edge(a, b):
            g.add_edge(a, b, label="")
    pos = _machine_positions(g)
    r = 0.16
    edges = []
    labels_x, labels_y, labels_t = [], [], []
    for a, b, data in g.edges(data=True):
        n = moves.get((a, b), 0)
        if a == b:
            xs, ys, mid = _loop(pos[a], pos[a][1] >= 0, r)
        else:
            bend = 0.0
            if g.has_edge(b, a):
                bend = 0.15
            elif pos[a][1] == pos[b][1] and abs(pos[a][0] - pos[b][0]) > 1.01:
                bend = 0.35 if pos[a][1] < 0 else -0.35
            xs, ys, mid = _segment(pos[a], pos[b], r, bend)
        label = data.get("label", "")
        hover = f"<b>{a} → {b}</b><br>{label or 'retry'}<br>taken {n}×"
        edges.append(dict(xs=xs, ys=ys, kind=_edge_kind(a, b), count=n, hover=hover))
        if n:
            horizontal = a != b and abs(pos[a][1] - pos[b][1]) < 1e-9
            dy = 0.09 if horizontal and pos[a][1] >= 0 else (-0.09 if horizontal else 0)
            labels_x.append(mid[0] + (0 if horizontal else 0.12))
            labels_y.append(mid[1] + dy)
            if a == b:
                labels_t.append(f"retry ×{n}")
            else:
                labels_t.append(label if not n else f"<b>{label} ×{n}</b>")
    fig = go.Figure()
    for tr in _edge_traces(edges, lambda e: e["count"]):
        fig.add_trace(tr)
    fig.add_trace(_edge_labels(labels_x, labels_y, labels_t, "#4b5563"))
    names = list(g.nodes)
    kinds = [n.split(":", 1)[0] for n in names]
    counts = [visits.get(n, 0) for n in names]
    colour = [_NODE_COLOURS.get(k, "#6b7280") if c else "#ffffff" for k, c in zip(kinds, counts)]
    border = [_NODE_COLOURS.get(k, "#6b7280") for k in kinds]
    text = []
    for n, k, c in zip(names, kinds, counts):
        short = _wrap(n.split(":", 1)[1] if ":" in n else n)
        head = f"<b>{short}</b>" if c else short
        sub = k if ":" in n else ""
        extra = f" ×{c}" if c else ""
        rec = f" (recovered ×{recoveries[n]})" if recoveries.get(n) else ""
        text.append(f"{head}<br><span style='font-size:10px'>{sub}{extra}{rec}</span>")
    hover = [
        f"<b>{n}</b><br>entered {visits.get(n, 0)}×"
        + (f"<br>recovered here {recoveries[n]}×" if recoveries.get(n) else "")
        for n in names
    ]
    fig.add_trace(
        go.Scatter(
            x=[pos[n][0] for n in names],
            y=[pos[n][1] for n in names],
            mode="markers",
            marker=dict(size=26, color=colour, line=dict(color=border, width=2.5), symbol="circle"),
            hovertext=hover,
            hoverinfo="text",
            showlegend=False,
            meta={"visits": {n: visits.get(n, 0) for n in names}},
        )
    )
    fig.add_trace(
        go.Scatter(
            x=[pos[n][0] for n in names],
            y=[pos[n][1] + (0.55 if pos[n][1] >= 0 else -0.55) for n in names],
            mode="text",
            text=text,
            textfont=dict(size=11),
            hovertext=hover,
            hoverinfo="text",
            showlegend=False,
        )
    )
    return _finish(fig, pos, title, height)


def _flow_positions(flow: pd.DataFrame) -> dict[str, tuple[float, float]]:
    pos: dict[str, tuple[float, float]] = {}
    x = 0.0
    fwd = flow[flow["path"] == "forward"]
    for topic, pub, sub in zip(fwd["topic"], fwd["publisher"], fwd["subscriber"]):
        if pub not in pos:
            pos[pub] = (x, 0.0)
            x += 1
        pos[f"topic:{topic}"] = (x, 0.0)
        x += 1
        if sub and sub not in pos:
            pos[sub] = (x, 0.0)
            x += 1
    rows = {"failure": -1.0, "compensation": -2.0, "forward": 0.0}
    taken: set[tuple[float, float]] = set(pos.values())
    for path in ("failure", "compensation"):
        part = flow[flow["path"] == path]
        for topic, g in part.groupby("topic", sort=False):
            subs = [n for n in g["subscriber"] if n]
            for n in [*g["publisher"], *subs]:
                if n not in pos:
                    pos[n] = (x, 0.0)
                    x += 1
            px = pos[g["publisher"].iloc[0]][0]
            sx = float(np.mean([pos[s][0] for s in subs])) if subs else px
            p = ((px + sx) / 2, rows[path])
            while p in taken:
                p = (p[0] + 0.5, p[1])
            taken.add(p)
            pos[f"topic:{topic}"] = p
    return pos


def event_flow(
    flow: pd.DataFrame, events: pd.DataFrame, title: str | None = None, height: int = 460
) -> go.Figure:
    """The choreography's event flow: services and topics, counted from the run's deliveries.

    Args:
        flow: ``ss.choreography_flow(scenario)`` (topic, publisher, subscriber, reaction, path).
        events: the choreography run's events; its ``deliver`` rows give the counts.
        title: the figure's title.
        height: pixels.

    Returns:
        A plotly figure: services as circles, topics as diamonds; forward path along the top,
        failure events below it, compensation events at the bottom; taken edges coloured.
    """
    dl = events[events["kind"] == "deliver"]
    to_broker = dl[dl["target"] == "broker"].groupby(["source", "message"]).size().to_dict()
    from_broker = dl[dl["source"] == "broker"].groupby(["target", "message"]).size().to_dict()
    flow = flow[["topic", "publisher", "subscriber", "reaction", "path"]]
    known = set(flow["topic"])
    orphan = []
    for (pub, topic), _n in to_broker.items():
        if topic not in known and pub != "client":
            path = "forward"
            if str(topic).endswith(".failed"):
                path = "failure"
            elif str(topic).endswith(".compensated"):
                path = "compensation"
            orphan.append((topic, pub, "", "nobody subscribes", path))
            known.add(topic)
    if orphan:
        extra = pd.DataFrame(orphan, columns=list(flow.columns))
        flow = pd.concat([flow, extra], ignore_index=True)
    pos = _flow_positions(flow)
    g = nx.DiGraph()
    edges = []
    done: set[tuple[str, str]] = set()
    r = 0.17
    lab_x, lab_y, lab_t = [], [], []
    for topic, pub, sub, reaction, path in zip(
        flow["topic"], flow["publisher"], flow["subscriber"], flow["reaction"], flow["path"]
    ):
        t = f"topic:{topic}"
        for a, b, n, text in (
            (pub, t, to_broker.get((pub, topic), 0), f"{pub} publishes {topic}"),
            (t, sub, from_broker.get((sub, topic), 0), f"{sub}: {reaction}"),
        ):
            if not b or (a, b) in done:
                continue
            done.add((a, b))
            g.add_edge(a, b)
            bend = 0.0
            if pos[a][1] == pos[b][1] and pos[b][0] < pos[a][0]:
                bend = 0.6
            xs, ys, mid = _segment(pos[a], pos[b], r, bend)
            edges.append(
                dict(xs=xs, ys=ys, kind=path, count=n, hover=f"<b>{text}</b><br>delivered {n}×")
            )
            if n:
                lab_x.append(mid[0])
                lab_y.append(mid[1] + (0.09 if pos[a][1] == pos[b][1] else 0))
                lab_t.append(f"×{n}")
    fig = go.Figure()
    for tr in _edge_traces(edges, lambda e: e["count"]):
        fig.add_trace(tr)
    fig.add_trace(_edge_labels(lab_x, lab_y, lab_t, "#374151"))
    services = [n for n in pos if not n.startswith("topic:")]
    topics = [n for n in pos if n.startswith("topic:")]
    fig.add_trace(
        go.Scatter(
            x=[pos[n][0] for n in services],
            y=[pos[n][1] for n in services],
            mode="markers+text",
            marker=dict(size=30, color="#eef2ff", line=dict(color="#1f2937", width=2)),
            text=[f"<b>{n}</b>" for n in services],
            textposition="top center",
            hovertext=[f"<b>{n}</b> (service)" for n in services],
            hoverinfo="text",
            name="service",
            showlegend=False,
        )
    )
    path_of = dict(zip(flow["topic"], flow["path"]))
    tcol = [PATH_COLOURS[path_of[n[6:]]] for n in topics]
    seen = [
        to_broker.get((flow.loc[flow["topic"] == n[6:], "publisher"].iloc[0], n[6:]), 0)
        for n in topics
    ]
    fig.add_trace(
        go.Scatter(
            x=[pos[n][0] for n in topics],
            y=[pos[n][1] for n in topics],
            mode="markers+text",
            marker=dict(
                size=16,
                symbol="diamond",
                color=[c if k else "#ffffff" for c, k in zip(tcol, seen)],
                line=dict(color=tcol, width=2),
            ),
            text=[n[6:].replace(".", ".<br>") for n in topics],
            textposition="bottom center",
            textfont=dict(size=10),
            hovertext=[f"<b>{n[6:]}</b> (topic)<br>published {k}×" for n, k in zip(topics, seen)],
            hoverinfo="text",
            name="topic",
            showlegend=False,
            meta={"published": {n[6:]: k for n, k in zip(topics, seen)}},
        )
    )
    return _finish(fig, pos, title, height)
