"""Comparison charts: both styles' metrics side by side, and per-saga aggregates for long runs."""

from __future__ import annotations

import math

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ._style import OUTCOME_COLOURS, STYLE_COLOURS, base_layout

__all__ = ["comparison_chart", "latency_chart"]

_OUTCOMES = ("completed", "compensated", "inconsistent", "stalled")


def _val(metrics: pd.DataFrame, row: str, col: str) -> float:
    if row not in metrics.index:
        return math.nan
    v = metrics.at[row, col]
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def comparison_chart(
    metrics: pd.DataFrame, title: str | None = None, height: int = 360
) -> go.Figure:
    """Both styles' metrics in four panels: outcomes, messages per saga, latency, recovery work.

    Args:
        metrics: ``Comparison.metrics`` (one row per metric, one column per style).
        title: the figure's title.
        height: pixels.
    """
    styles = [str(c) for c in metrics.columns]
    fig = make_subplots(
        rows=1,
        cols=4,
        subplot_titles=(
            "Outcomes (sagas)",
            "Messages per saga",
            "Latency (ms)",
            "Recovery work, violations",
        ),
        horizontal_spacing=0.07,
    )
    for o in _OUTCOMES:
        fig.add_trace(
            go.Bar(
                x=styles,
                y=[_val(metrics, o, s) for s in styles],
                name=o,
                marker_color=OUTCOME_COLOURS[o],
                legendgroup="outcome",
                hovertemplate=f"%{{x}}: %{{y}} {o}<extra></extra>",
            ),
            row=1,
            col=1,
        )
    fig.add_trace(
        go.Bar(
            x=styles,
            y=[_val(metrics, "messages_per_saga", s) for s in styles],
            marker_color=[STYLE_COLOURS.get(s, "#6b7280") for s in styles],
            text=[f"{_val(metrics, 'messages_per_saga', s):.1f}" for s in styles],
            textposition="auto",
            showlegend=False,
            hovertemplate="%{x}: %{y:.2f} messages per saga<extra></extra>",
        ),
        row=1,
        col=2,
    )
    for q, symbol in (
        ("latency_mean", "circle"),
        ("latency_p50", "diamond"),
        ("latency_p95", "triangle-up"),
    ):
        word = q.replace("latency_", "")
        fig.add_trace(
            go.Scatter(
                x=styles,
                y=[_val(metrics, q, s) * 1000 for s in styles],
                mode="markers+text",
                name=word,
                text=[word] * len(styles),
                textposition="middle right",
                textfont=dict(size=10),
                marker=dict(
                    symbol=symbol,
                    size=12,
                    color=[STYLE_COLOURS.get(s, "#6b7280") for s in styles],
                ),
                showlegend=False,
                hovertemplate=f"%{{x}} {word}: %{{y:.1f}} ms<extra></extra>",
            ),
            row=1,
            col=3,
        )
    work = (
        ("compensations", "#fb923c"),
        ("retries", "#a78bfa"),
        ("timeouts", "#94a3b8"),
        ("violations", "#dc2626"),
    )
    for w, colour in work:
        fig.add_trace(
            go.Bar(
                x=styles,
                y=[_val(metrics, w, s) for s in styles],
                name=w,
                marker_color=colour,
                legendgroup="work",
                hovertemplate=f"%{{x}}: %{{y}} {w}<extra></extra>",
            ),
            row=1,
            col=4,
        )
    base_layout(fig, title, height)
    fig.update_layout(
        barmode="stack",
        legend=dict(orientation="h", yanchor="top", y=-0.16, x=0, traceorder="normal"),
        margin=dict(b=70),
    )
    fig.update_xaxes(tickfont=dict(size=10))
    fig.update_annotations(font_size=12)
    return fig


def latency_chart(sagas: pd.DataFrame, title: str | None = None, height: int = 320) -> go.Figure:
    """Per-saga end-to-end latency by style, coloured by outcome (for runs with many sagas).

    Args:
        sagas: ``Comparison.sagas`` or one ``Run.sagas`` frame.
    """
    fig = go.Figure()
    for o in _OUTCOMES:
        part = sagas[sagas["outcome"].astype(str) == o]
        if part.empty:
            continue
        fig.add_trace(
            go.Box(
                x=part["style"],
                y=part["latency"] * 1000,
                name=f"{o} ({len(part)})",
                marker_color=OUTCOME_COLOURS[o],
                boxpoints="outliers" if len(part) > 200 else "all",
                jitter=0.4,
                pointpos=0,
                hovertemplate="%{x}: %{y:.1f} ms<extra>" + o + "</extra>",
            )
        )
    fig.update_layout(boxmode="group")
    fig.update_yaxes(title_text="end-to-end latency (ms)")
    return base_layout(fig, title, height)
