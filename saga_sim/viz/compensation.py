"""The compensation trace: a Gantt of every local transaction and compensation per service.

Each bar runs from the moment the service started the work (the delivery of the message that
asked for it, or the end of a local retry's back-off) to its commit, abort or failure. The
matching table, in order, is ``saga_sim.replay.compensation_table``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from ..replay import lanes, select_sagas
from ._style import base_layout

__all__ = ["compensation_gantt", "work_intervals"]

_WORK = {
    "tx_commit": ("#16a34a", "action commits"),
    "tx_abort": ("#dc2626", "action aborts"),
    "tx_refused": ("#6b7280", "late action refused"),
    "work_lost": ("#111827", "work lost in a crash"),
    "comp_commit": ("#ea580c", "compensation commits"),
    "comp_fail": ("#991b1b", "compensation fails"),
    "comp_null": ("#fdba74", "null compensation"),
}
_AFTER = re.compile(r"after ([0-9.]+)s")


def work_intervals(events: pd.DataFrame, saga: int | Iterable[int] | None = None) -> pd.DataFrame:
    """Every piece of local work as an interval.

    Returns:
        Columns service, saga, step, kind (tx_commit, tx_abort, ..., comp_commit), message,
        attempt, start, end, detail, seq; in trace order.
    """
    ev = select_sagas(events, saga)
    started: dict[tuple[str, int], float] = {}
    retry_at: dict[tuple[str, int, str], float] = {}
    rows = []
    for seq, t, kind, src, dst, s, step, msg, mid, att, detail in zip(
        ev.index,
        ev["time"].to_numpy(),
        ev["kind"].to_numpy(),
        ev["source"].to_numpy(),
        ev["target"].to_numpy(),
        ev["saga"].to_numpy(),
        ev["step"].to_numpy(),
        ev["message"].to_numpy(),
        ev["msg_id"].to_numpy(),
        ev["attempt"].to_numpy(),
        ev["detail"].to_numpy(),
    ):
        if kind == "deliver":
            started[(dst, mid)] = t
        elif kind == "retry" and src == dst:
            m = _AFTER.search(detail or "")
            retry_at[(src, s, step)] = t + (float(m.group(1)) if m else 0.0)
        elif kind in _WORK:
            begin = started.get((src, mid), t)
            r = retry_at.get((src, s, step))
            if r is not None and begin <= r <= t:
                begin = r
            rows.append(
                (src, int(s), step, kind, msg, int(att), float(begin), float(t), detail, seq)
            )
    return pd.DataFrame(
        rows,
        columns=[
            "service",
            "saga",
            "step",
            "kind",
            "message",
            "attempt",
            "start",
            "end",
            "detail",
            "seq",
        ],
    )


def compensation_gantt(
    events: pd.DataFrame,
    saga: int | Iterable[int] | None = None,
    title: str | None = None,
    cursor: float | None = None,
    height: int | None = None,
) -> go.Figure:
    """A Gantt chart of local transactions and compensations, one row per service.

    Args:
        events: a ``Run.events`` frame.
        saga: only this saga (or these sagas).
        title: the figure's title.
        cursor: draw a vertical cursor at this simulated time.
        height: pixels (default: 110 + 60 per service).

    Returns:
        A plotly figure with one horizontal bar trace per kind of work; each trace carries
        ``meta={"kind": ..., "bars": n}``.
    """
    work = work_intervals(events, saga)
    services = [n for n in lanes(events) if n in set(work["service"])] if len(work) else []
    if height is None:
        height = 130 + 62 * max(len(services), 2)
    fig = go.Figure()
    if work.empty:
        fig.add_annotation(
            text="no local transactions in this trace",
            showarrow=False,
            x=0.5,
            y=0.5,
            xref="paper",
            yref="paper",
        )
        fig.update_xaxes(visible=False)
        fig.update_yaxes(visible=False)
        return base_layout(fig, title, height)
    span = float(work["end"].max() - work["start"].min()) or 1e-3
    min_w = span * 0.004  # instantaneous work (a null compensation) stays visible
    for kind, (colour, label) in _WORK.items():
        w = work[work["kind"] == kind]
        if w.empty:
            continue
        dur = np.maximum(w["end"].to_numpy() - w["start"].to_numpy(), min_w)
        hover = [
            f"<b>{step}</b>: {label}<br>{svc} · saga {s} · attempt {a}<br>"
            f"{st:.4f} s → {en:.4f} s ({(en - st) * 1000:.1f} ms)"
            + (f"<br><i>{d}</i>" if d else "")
            for step, svc, s, a, st, en, d in zip(
                w["step"], w["service"], w["saga"], w["attempt"], w["start"], w["end"], w["detail"]
            )
        ]
        few = len(work) <= 120
        fig.add_trace(
            go.Bar(
                y=w["service"],
                x=dur,
                base=w["start"].to_numpy(),
                orientation="h",
                name=f"{label} ({len(w)})",
                marker=dict(color=colour, line=dict(color="white", width=0.5)),
                text=[
                    (f"↩ {m}" if kind.startswith("comp") else str(st)) if few else ""
                    for m, st in zip(w["message"], w["step"])
                ],
                textposition="inside",
                insidetextanchor="middle",
                textfont=dict(size=10, color="white"),
                hovertext=hover,
                hoverinfo="text",
                width=0.55,
                meta={"kind": kind, "bars": len(w)},
            )
        )
    shapes = []
    if cursor is not None:
        shapes.append(
            dict(
                type="line",
                xref="x",
                yref="paper",
                x0=cursor,
                x1=cursor,
                y0=0,
                y1=1,
                line=dict(color="#f59e0b", width=2),
            )
        )
    fig.update_layout(barmode="overlay", shapes=shapes, bargap=0.3)
    fig.update_yaxes(categoryorder="array", categoryarray=services[::-1], title_text=None)
    fig.update_xaxes(title_text="simulated time (s)", ticksuffix=" s", zeroline=False)
    base_layout(fig, title, height, legend="above")
    fig.update_layout(margin=dict(t=90 if title else 50))
    return fig
