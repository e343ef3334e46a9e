"""The message timeline: a sequence (space-time) diagram drawn from a run's events frame.

One vertical lane per node (client, coordinator or broker, then the services), simulated time
running down. Each message is an arrow from its send to its arrival; arrows are scatter line
traces, one per message class, with ``marker.symbol="arrow"`` and ``angleref="previous"``, so
thousands of messages stay fast (no annotation per message). Lost messages end in an ✕, crash
and partition windows are shaded on their lanes and labelled with the fault, local
transactions and compensations are marked on the lanes, and hovering any of them tells what it
is.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from ..replay import fault_windows, lanes, messages, select_sagas
from ._style import (
    CRASH_FILL,
    CRASH_LINE,
    LOCAL_STYLE,
    MESSAGE_STYLE,
    PARTITION_FILL,
    PARTITION_LINE,
    base_layout,
)

__all__ = ["timeline"]

_LOCAL_KINDS = (
    "tx_commit",
    "tx_abort",
    "tx_refused",
    "comp_commit",
    "comp_fail",
    "comp_null",
    "work_lost",
    "timeout",
    "ignored",
    "state",
)


def _fmt(t: float) -> str:
    return "—" if t != t else f"{t:.4f} s"


def _message_hover(m: pd.DataFrame) -> list[str]:
    out = []
    for msg, cls, src, dst, saga, step, att, sent, arr, fate, detail in zip(
        m["message"],
        m["base_cls"],
        m["source"],
        m["target"],
        m["saga"],
        m["step"],
        m["attempt"],
        m["sent"],
        m["arrived"],
        m["fate"],
        m["detail"],
    ):
        step_txt = f" · step {step}" if step else ""
        line = (
            f"<b>{msg}</b> ({cls})<br>{src} → {dst}<br>saga {saga}{step_txt} · attempt {att}"
            f"<br>sent {_fmt(sent)} · {fate} {_fmt(arr)}"
        )
        if detail:
            line += f"<br><i>{detail}</i>"
        out.append(line)
    return out


def _message_trace(
    m: pd.DataFrame, cls: str, lane_x: dict[str, int], nudge: float, tmax: float
) -> go.Scatter:
    colour, dash, label = MESSAGE_STYLE[cls]
    n = len(m)
    x0 = m["source"].map(lane_x).to_numpy(dtype=float)
    x1 = m["target"].map(lane_x).to_numpy(dtype=float)
    y0 = m["sent"].to_numpy(dtype=float)
    y1 = m["arrived"].to_numpy(dtype=float)
    if cls in ("lost", "in flight"):
        queued = np.isnan(y0)  # lost in a crashed node's queue: an ✕ on the target lane
        x0 = np.where(queued, x1, x0)
        y0 = np.where(queued, y1, y0)
        instant = ~queued & (y1 - y0 < nudge * 0.5)
        if cls == "in flight":
            y1 = np.full(n, tmax)
            instant = np.ones(n, dtype=bool)
        # lost on the wire: the arrow stops half way, a little later than it left
        x1 = np.where(instant, x0 + (x1 - x0) * (0.85 if cls == "lost" else 0.5), x1)
        y1 = np.where(instant & (cls == "lost"), y0 + nudge, y1)
    xs = np.empty(3 * n, dtype=object)
    ys = np.empty(3 * n, dtype=object)
    xs[0::3], xs[1::3], xs[2::3] = x0, x1, None
    ys[0::3], ys[1::3], ys[2::3] = y0, y1, None
    # one symbol per trace (a per-point symbol array is slow to validate): the arrival end
    # carries it, the send end and the gap have size 0
    sizes = np.zeros(3 * n, dtype=float)
    sizes[1::3] = 12 if cls == "lost" else 10
    hover = _message_hover(m)
    texts = np.empty(3 * n, dtype=object)
    texts[0::3], texts[1::3], texts[2::3] = hover, hover, None
    return go.Scatter(
        x=xs,
        y=ys,
        mode="lines+markers",
        name=f"{label} ({n})",
        legendgroup=cls,
        line=dict(color=colour, width=1.6, dash=dash),
        marker=dict(
            symbol="x" if cls == "lost" else "arrow",
            size=sizes,
            angleref="previous",
            color=colour,
            line=dict(width=2 if cls == "lost" else 0, color=colour),
        ),
        hovertext=texts,
        hoverinfo="text",
        meta={"class": cls, "messages": n},
        connectgaps=False,
    )


def _local_hover(r: pd.DataFrame) -> list[str]:
    out = []
    for kind, src, saga, step, msg, att, t, detail in zip(
        r["kind"],
        r["source"],
        r["saga"],
        r["step"],
        r["message"],
        r["attempt"],
        r["time"],
        r["detail"],
    ):
        what = msg or step or kind
        head = f"<b>{kind}</b> {what}" if kind != "state" else f"<b>state</b> {detail}"
        line = f"{head}<br>{src} · saga {saga}"
        if step:
            line += f" · step {step}"
        if att:
            line += f" · attempt {att}"
        line += f"<br>at {_fmt(t)}"
        if detail and kind != "state":
            line += f"<br><i>{detail}</i>"
        out.append(line)
    return out


def _state_labels(r: pd.DataFrame, ev: pd.DataFrame) -> list[str]:
    """Short labels for state markers; of states entered almost at once on one lane (within
    2.5 % of the shown time), only the last is written, so labels do not print over each
    other (every marker keeps its hover text)."""
    span = float(ev["time"].max() - ev["time"].min()) or 1.0
    gap = 0.025 * span
    times = r["time"].to_numpy(dtype=float)
    lanes = r["source"].to_numpy()
    labels = [
        d.replace("executing:", "exec ").replace("compensating:", "comp ") for d in r["detail"]
    ]
    for k in range(len(labels) - 1):
        later = [j for j in range(k + 1, len(labels)) if lanes[j] == lanes[k]]
        if later and times[later[0]] - times[k] < gap:
            labels[k] = ""
    return labels


def _local_traces(
    ev: pd.DataFrame,
    lane_x: dict[str, int],
    step_kinds: Mapping[str, str] | None,
    max_labels: int,
) -> list[go.Scatter]:
    rows = ev[ev["kind"].isin(_LOCAL_KINDS) & ev["source"].isin(list(lane_x))]
    if rows.empty:
        return []
    style_key = rows["kind"].to_numpy().astype(object)
    if step_kinds:
        sk = rows["step"].map(lambda s: step_kinds.get(s, "")).to_numpy()
        commit = style_key == "tx_commit"
        style_key = np.where(commit & (sk == "pivot"), "tx_commit_pivot", style_key)
        style_key = np.where(commit & (sk == "retriable"), "tx_commit_retriable", style_key)
    traces = []
    for key, (symbol, colour, size, label) in LOCAL_STYLE.items():
        r = rows[style_key == key]
        if r.empty:
            continue
        x = r["source"].map(lane_x).to_numpy(dtype=float)
        mode = "markers"
        text = None
        if key == "state" and len(r) <= max_labels:
            mode = "markers+text"
            text = _state_labels(r, ev)
        traces.append(
            go.Scatter(
                x=x,
                y=r["time"].to_numpy(dtype=float),
                mode=mode,
                name=f"{label} ({len(r)})",
                legendgroup=key,
                marker=dict(
                    symbol=symbol,
                    size=size,
                    color=colour,
                    line=dict(width=1.5 if "open" in symbol else 1, color=colour),
                ),
                text=text,
                textposition="middle left",
                textfont=dict(size=10, color="#374151"),
                hovertext=_local_hover(r),
                hoverinfo="text",
                meta={"kind": key, "events": len(r)},
            )
        )
    return traces


def _window_shapes(
    ev: pd.DataFrame, lane_x: dict[str, int], lo: float, hi: float
) -> tuple[list[dict], list[dict]]:
    shapes: list[dict] = []
    notes: list[dict] = []
    windows = fault_windows(ev)
    for kind, nodes, start, end, is_open, label in windows.itertuples(index=False):
        if end < lo or start > hi:
            continue
        y0, y1 = max(start, lo), min(end, hi)
        fill, line = (
            (CRASH_FILL, CRASH_LINE) if kind == "crash" else (PARTITION_FILL, PARTITION_LINE)
        )
        for node in nodes:
            if node not in lane_x:
                continue
            x = lane_x[node]
            shapes.append(
                dict(
                    type="rect",
                    xref="x",
                    yref="y",
                    x0=x - 0.42,
                    x1=x + 0.42,
                    y0=y0,
                    y1=y1,
                    fillcolor=fill,
                    line=dict(color=line, width=1, dash="dot" if kind == "partition" else "solid"),
                    layer="below",
                    name=f"{kind}: {label}",
                )
            )
            icon = "⚡ " if kind == "crash" else "✂ "
            suffix = " (until the end)" if is_open else ""
            notes.append(
                dict(
                    x=x,
                    y=y0,
                    xref="x",
                    yref="y",
                    text=f"{icon}{label}{suffix}",
                    showarrow=False,
                    yanchor="top",
                    xanchor="center",
                    font=dict(size=10, color=line.replace("0.55", "1").replace("0.6", "1")),
                    bgcolor="rgba(255,255,255,0.8)",
                    hovertext=f"{kind} window {start:.3f}s–{end:.3f}s: {label}",
                )
            )
    return shapes, notes


def timeline(
    events: pd.DataFrame,
    saga: int | Iterable[int] | None = None,
    cursor: float | None = None,
    title: str | None = None,
    *,
    step_kinds: Mapping[str, str] | None = None,
    height: int | None = None,
    max_labels: int = 60,
    lanes_order: Iterable[str] | None = None,
) -> go.Figure:
    """A sequence diagram of a run: lanes across, simulated time down, messages as arrows.

    Args:
        events: a ``Run.events`` frame (one style).
        saga: show only this saga (or these sagas); crash and partition windows always show.
        cursor: draw a horizontal cursor at this simulated time (the app's time scrubber).
        title: the figure's title.
        step_kinds: ``{step name: kind}`` (compensatable | pivot | retriable), to mark the
            pivot's and retriable steps' commits apart; optional.
        height: figure height in pixels (default: grows with the number of events, 420-1000).
        max_labels: saga states are written beside the lane when there are at most this many.
        lanes_order: the lanes to draw, in order (default: the nodes of the trace); nodes of the
            trace not listed are added at the end. Pass every service to keep lanes that
            received no message (so two styles' diagrams line up).

    Returns:
        A plotly figure. Its message traces carry ``meta={"class": ..., "messages": n}``; lane
        markers carry ``meta={"kind": ..., "events": n}``.
    """
    all_lanes = lanes(events) if len(events) else []
    if lanes_order is not None:
        wanted = list(dict.fromkeys(lanes_order))
        all_lanes = wanted + [n for n in all_lanes if n not in wanted]
    ev = select_sagas(events, saga)
    fig = go.Figure()
    if height is None:
        height = int(min(1000, max(520, 300 + 16 * (ev["kind"] == "send").sum())))
    if ev.empty or not all_lanes:
        fig.add_annotation(
            text="no events to show", showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper"
        )
        return base_layout(fig, title, height)
    lane_x = {n: i for i, n in enumerate(all_lanes)}
    in_saga = ev[ev["saga"] != 0] if (ev["saga"] != 0).any() else ev
    lo = float(in_saga["time"].min())
    hi = float(in_saga["time"].max())
    if saga is None:
        lo, hi = min(lo, float(ev["time"].min())), max(hi, float(ev["time"].max()))
    span = max(hi - lo, 1e-3)
    pad = span * 0.04
    nudge = span * 0.012

    xs: list = []
    ys: list = []
    for i in range(len(all_lanes)):
        xs += [i, i, None]
        ys += [lo - pad, hi + pad, None]
    fig.add_trace(
        go.Scatter(
            x=xs,
            y=ys,
            mode="lines",
            line=dict(color="#d1d5db", width=1.2),
            hoverinfo="skip",
            showlegend=False,
            meta={"kind": "lanes"},
        )
    )

    msgs = messages(ev)
    for cls in MESSAGE_STYLE:
        m = msgs[msgs["cls"] == cls]
        if len(m):
            fig.add_trace(_message_trace(m, cls, lane_x, nudge, hi + pad * 0.5))
    left = -0.6
    for tr in _local_traces(ev, lane_x, step_kinds, max_labels):
        fig.add_trace(tr)
        if tr.text is not None and any(tr.text):
            # state labels are written left of their lane: leave room for the longest, about a
            # lane's width per 11 characters in the app's half-width figures, so the first
            # lanes' labels are not cut off
            longest = max(len(t) for t in tr.text)
            first = min(x for x, t in zip(tr.x, tr.text) if t)
            left = min(left, first - 0.25 - longest / 11)

    shapes, notes = _window_shapes(ev, lane_x, lo - pad, hi + pad)
    if cursor is not None:
        shapes.append(
            dict(
                type="line",
                xref="x",
                yref="y",
                x0=-0.5,
                x1=len(all_lanes) - 0.5,
                y0=cursor,
                y1=cursor,
                line=dict(color="#f59e0b", width=2),
                name="cursor",
            )
        )
        notes.append(
            dict(
                x=-0.5,
                y=cursor,
                xref="x",
                yref="y",
                text=f"t = {cursor:.3f} s",
                showarrow=False,
                xanchor="left",
                yanchor="bottom",
                font=dict(size=11, color="#b45309"),
                bgcolor="rgba(255,255,255,0.85)",
            )
        )
    fig.update_layout(shapes=shapes, annotations=notes)
    ticktext = [f"<b>{n}</b>" if n in ("coordinator", "broker") else n for n in all_lanes]
    fig.update_xaxes(
        tickvals=list(range(len(all_lanes))),
        ticktext=ticktext,
        side="top",
        range=[left, len(all_lanes) - 0.4],
        showgrid=False,
        zeroline=False,
        fixedrange=False,
    )
    fig.update_yaxes(
        range=[hi + pad, lo - pad],
        title_text="simulated time (s)",
        ticksuffix=" s",
        showgrid=True,
        gridcolor="#f3f4f6",
        zeroline=False,
    )
    base_layout(fig, title, height)
    fig.update_layout(hovermode="closest", margin=dict(t=80 if title else 40))
    return fig
