"""Colours, symbols and layout defaults shared by every figure."""

from __future__ import annotations

import plotly.graph_objects as go

FONT = "Inter, Segoe UI, Helvetica, Arial, sans-serif"

# Message classes (see saga_sim.replay.MESSAGE_CLASSES): colour, dash, legend label.
MESSAGE_STYLE: dict[str, tuple[str, str, str]] = {
    "request": ("#2563eb", "solid", "request / event"),
    "reply": ("#0d9488", "solid", "reply"),
    "failure": ("#dc2626", "solid", "failure"),
    "compensation": ("#ea580c", "solid", "compensation"),
    "retry": ("#7c3aed", "dash", "retry / redelivery"),
    "duplicate": ("#db2777", "dot", "duplicate copy"),
    "lost": ("#111827", "dash", "lost (✕)"),
    "in flight": ("#9ca3af", "dot", "in flight at the end"),
}

# Local events on a lane: symbol, colour, size, legend label.
LOCAL_STYLE: dict[str, tuple[str, str, int, str]] = {
    "tx_commit": ("circle", "#16a34a", 11, "local tx commits"),
    "tx_commit_pivot": ("star", "#16a34a", 16, "pivot commits"),
    "tx_commit_retriable": ("square", "#16a34a", 11, "retriable step commits"),
    "tx_abort": ("circle-x", "#dc2626", 13, "local tx aborts"),
    "tx_refused": ("circle-x-open", "#6b7280", 12, "late action refused"),
    "comp_commit": ("diamond", "#ea580c", 13, "compensation commits"),
    "comp_fail": ("diamond-x", "#b91c1c", 13, "compensation fails"),
    "comp_null": ("diamond-open", "#ea580c", 12, "null compensation"),
    "work_lost": ("bowtie", "#111827", 12, "work lost in a crash"),
    "timeout": ("hourglass", "#7c3aed", 11, "timeout"),
    "ignored": ("circle-open", "#9ca3af", 8, "ignored (duplicate)"),
    "state": ("line-ew-open", "#374151", 14, "saga state"),
}

CRASH_FILL = "rgba(220, 38, 38, 0.13)"
CRASH_LINE = "rgba(220, 38, 38, 0.55)"
PARTITION_FILL = "rgba(124, 58, 237, 0.12)"
PARTITION_LINE = "rgba(124, 58, 237, 0.6)"

OUTCOME_COLOURS = {
    "completed": "#16a34a",
    "compensated": "#ea580c",
    "inconsistent": "#dc2626",
    "stalled": "#6b7280",
}

STYLE_COLOURS = {"orchestration": "#2563eb", "choreography": "#0d9488"}

PATH_COLOURS = {"forward": "#2563eb", "failure": "#dc2626", "compensation": "#ea580c"}


def base_layout(fig: go.Figure, title: str | None, height: int, legend: str = "below") -> go.Figure:
    """Apply the common look: white background, compact margins, legend below or above."""
    if legend == "above":
        leg = dict(orientation="h", yanchor="bottom", y=1.01, xanchor="left", x=0, font_size=11)
    else:
        leg = dict(orientation="h", yanchor="top", y=-0.02, xanchor="left", x=0, font_size=11)
    fig.update_layout(
        title=dict(text=title, x=0.01, xanchor="left", font=dict(size=15)) if title else None,
        template="plotly_white",
        font=dict(family=FONT, size=12),
        height=height,
        margin=dict(l=10, r=10, t=60 if title else 30, b=10),
        legend=leg,
        hoverlabel=dict(font_size=12, font_family=FONT),
    )
    return fig
