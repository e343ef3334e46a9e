"""Figures of the experiments, from their DataFrames only: fault matrix grid, outcome shares
with confidence intervals, latency ECDF, sweep lines with confidence bands.

Every function takes a DataFrame produced by ``saga_sim.experiments`` (or any frame with the
same columns) and returns a ``plotly.graph_objects.Figure``; nothing here simulates.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from ._style import OUTCOME_COLOURS, STYLE_COLOURS

__all__ = [
    "OUTCOME_COLORS",
    "STYLE_COLORS",
    "latency_ecdf_figure",
    "matrix_figure",
    "outcome_shares_figure",
    "paired_outcomes_figure",
    "sweep_figure",
]

OUTCOME_COLORS: dict[str, str] = dict(OUTCOME_COLOURS)
"""One colour per outcome: the palette every saga-sim figure uses."""

STYLE_COLORS: dict[str, str] = dict(STYLE_COLOURS)
"""One colour per style: the palette every saga-sim figure uses."""

_OUTCOMES = ["completed", "compensated", "stalled", "inconsistent"]


def _style_color(style: str, k: int) -> str:
    palette = ["#6a3d9a", "#e6550d", "#17becf", "#7f7f7f"]
    return STYLE_COLORS.get(style, palette[k % len(palette)])


def _fmt_latency(x: float) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f} s"


def matrix_figure(df: pd.DataFrame, title: str | None = None, pickable: bool = False) -> go.Figure:
    """The fault matrix as a colour grid: fault points (rows, in matrix order) by style.

    Args:
        df: ``fault_matrix``'s frame (columns ``point``, ``style``, ``outcome``,
            ``violations``, ``fault``, ``latency``, ``messages``).
        title: the figure title (default: the scenario name from ``df.attrs``).
        pickable: add an invisible marker on every cell (a second trace, with the same
            ``customdata`` and hover text), because a heatmap's cells cannot be selected: a
            click selects the marker, which then outlines the picked cell.

    Returns:
        A heatmap; each cell's ``customdata`` is ``[point, style]`` so a click can open the run.
    """
    points = list(dict.fromkeys(df["point"]))
    styles = list(dict.fromkeys(df["style"]))
    code = {o: i for i, o in enumerate(_OUTCOMES)}
    z = np.full((len(points), len(styles)), np.nan)
    text = [["" for _ in styles] for _ in points]
    hover = [["" for _ in styles] for _ in points]
    custom = [[[p, s] for s in styles] for p in points]
    pi = {p: i for i, p in enumerate(points)}
    si = {s: j for j, s in enumerate(styles)}
    for r in df.itertuples(index=False):
        i, j = pi[r.point], si[r.style]
        z[i, j] = code.get(str(r.outcome), np.nan)
        viol = sorted(set(r.violations))
        text[i][j] = str(r.outcome) + ("<br>" + ", ".join(viol) if viol else "")
        hover[i][j] = (
            f"<b>{r.point}</b> · {r.style}<br>{r.fault}<br>outcome: {r.outcome}"
            + (f"<br>violations: {', '.join(viol)}" if viol else "")
            + f"<br>latency: {_fmt_latency(r.latency)} · messages: {r.messages}"
        )
    n = len(_OUTCOMES)
    scale = []
    for k, o in enumerate(_OUTCOMES):
        scale += [(k / n, OUTCOME_COLORS[o]), ((k + 1) / n, OUTCOME_COLORS[o])]
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=styles,
            y=points,
            zmin=-0.5,
            zmax=n - 0.5,
            colorscale=scale,
            text=text,
            texttemplate="%{text}",
            hovertext=hover,
            hoverinfo="skip" if pickable else "text",
            customdata=custom,
            xgap=2,
            ygap=2,
            colorbar=dict(tickvals=list(range(n)), ticktext=_OUTCOMES, title="outcome"),
        )
    )
    if pickable:
        cells = [(p, s) for p in points for s in styles]
        fig.add_scatter(
            x=[s for _, s in cells],
            y=[p for p, _ in cells],
            mode="markers",
            marker=dict(symbol="square-open", size=24, color="#111", opacity=0, line_width=3),
            selected=dict(marker=dict(opacity=1)),
            unselected=dict(marker=dict(opacity=0)),
            customdata=[[p, s] for p, s in cells],
            hovertext=[hover[pi[p]][si[s]] for p, s in cells],
            hoverinfo="text",
            showlegend=False,
            name="pick",
        )
    name = title or f"Fault matrix — {df.attrs.get('scenario', '')}".rstrip(" —")
    fig.update_layout(
        title=name,
        height=max(300, 28 * len(points) + 120),
        yaxis=dict(autorange="reversed", title="fault point"),
        xaxis=dict(side="top", title=None),
        margin=dict(l=10, r=10, t=80, b=10),
    )
    return fig


def outcome_shares_figure(outcomes: pd.DataFrame, title: str = "Outcome shares") -> go.Figure:
    """Outcome shares per style with their confidence intervals, as grouped bars.

    Args:
        outcomes: ``MonteCarlo.outcomes`` (columns ``style``, ``outcome``, ``share``,
            ``ci_low``, ``ci_high``, ``count``).
    """
    fig = go.Figure()
    for k, (style, g) in enumerate(outcomes.groupby("style", sort=False)):
        fig.add_bar(
            name=style,
            x=g["outcome"],
            y=g["share"],
            marker_color=_style_color(style, k),
            error_y=dict(
                type="data",
                symmetric=False,
                array=(g["ci_high"] - g["share"]).to_numpy(),
                arrayminus=(g["share"] - g["ci_low"]).to_numpy(),
            ),
            customdata=np.stack([g["count"], g["ci_low"], g["ci_high"]], axis=-1),
            hovertemplate="%{x}: %{y:.2%} (%{customdata[0]} sagas)<br>"
            "95% CI %{customdata[1]:.2%} – %{customdata[2]:.2%}<extra>" + style + "</extra>",
        )
    fig.update_layout(
        title=title,
        barmode="group",
        yaxis=dict(title="share of sagas", tickformat=".0%", rangemode="tozero"),
        xaxis=dict(title=None, categoryorder="array", categoryarray=_OUTCOMES),
        legend=dict(title="style"),
    )
    return fig


def latency_ecdf_figure(
    ecdf: pd.DataFrame, title: str = "Latency of finished sagas (ECDF)", log_x: bool = True
) -> go.Figure:
    """The latency ECDF per style, as step lines.

    Args:
        ecdf: ``MonteCarlo.ecdf`` (columns ``style``, ``latency``, ``ecdf``), or any frame with
            those columns (for exact ECDFs, one row per saga sorted by latency).
        log_x: a logarithmic latency axis (latencies span timeouts and retries).
    """
    fig = go.Figure()
    for k, (style, g) in enumerate(ecdf.groupby("style", sort=False)):
        fig.add_scatter(
            name=style,
            x=g["latency"],
            y=g["ecdf"],
            mode="lines",
            line=dict(shape="hv", color=_style_color(style, k)),
            hovertemplate="≤ %{x:.4g} s: %{y:.2%}<extra>" + style + "</extra>",
        )
    fig.update_layout(
        title=title,
        xaxis=dict(title="latency, s", type="log" if log_x else "linear"),
        yaxis=dict(title="share of finished sagas", tickformat=".0%", range=[0, 1.02]),
        legend=dict(title="style"),
    )
    return fig


def paired_outcomes_figure(paired: pd.DataFrame, title: str | None = None) -> go.Figure:
    """The paired outcome table (same saga, same draws, two styles) as an annotated heatmap.

    Args:
        paired: ``MonteCarlo.paired`` (rows: first style's outcome; columns: second style's).
    """
    z = paired.to_numpy()
    fig = go.Figure(
        go.Heatmap(
            z=np.log1p(z),
            x=list(paired.columns),
            y=list(paired.index),
            text=z,
            texttemplate="%{text}",
            colorscale="Blues",
            showscale=False,
            hovertemplate=f"{paired.index.name}: %{{y}}<br>{paired.columns.name}: %{{x}}"
            "<extra></extra>",
        )
    )
    fig.update_layout(
        title=title or "Same saga, same draws: outcome in each style",
        xaxis=dict(title=paired.columns.name, side="top"),
        yaxis=dict(title=paired.index.name, autorange="reversed"),
    )
    return fig


def sweep_figure(
    df: pd.DataFrame, metric: str = "completed", z: float = 1.96, title: str | None = None
) -> go.Figure:
    """A sweep's metric against the parameter, one line per style with a confidence band.

    Args:
        df: ``sweep``'s tidy frame (columns ``param``, ``value``, ``replication``, ``style``
            and the metric).
        metric: the column to plot (a key of ``SWEEP_METRICS``).
        z: the band's half-width in standard errors over replications (1.96: 95 %).
    """
    if metric not in df.columns:
        raise KeyError(f"the sweep has no column {metric!r}")
    g = df.groupby(["value", "style"], sort=False)[metric]
    s = g.agg(mean="mean", sd="std", n="count").reset_index()
    half = z * s["sd"].fillna(0.0) / np.sqrt(s["n"])
    s["low"], s["high"] = s["mean"] - half, s["mean"] + half
    numeric = pd.api.types.is_numeric_dtype(s["value"])
    fig = go.Figure()
    for k, (style, part) in enumerate(s.groupby("style", sort=False)):
        color = _style_color(style, k)
        x = part["value"] if numeric else part["value"].astype(str)
        fig.add_scatter(
            x=list(x) + list(x)[::-1],
            y=list(part["high"]) + list(part["low"])[::-1],
            fill="toself",
            mode="lines",
            fillcolor=color,
            opacity=0.18,
            line=dict(width=0),
            hoverinfo="skip",
            showlegend=False,
            legendgroup=style,
        )
        fig.add_scatter(
            name=style,
            x=x,
            y=part["mean"],
            mode="lines+markers",
            line=dict(color=color),
            legendgroup=style,
            customdata=np.stack([part["low"], part["high"], part["n"]], axis=-1),
            hovertemplate="%{x}: %{y:.4g} [%{customdata[0]:.4g}, %{customdata[1]:.4g}], "
            "n=%{customdata[2]}<extra>" + style + "</extra>",
        )
    param = df["param"].iloc[0] if "param" in df.columns and len(df) else "value"
    fig.update_layout(
        title=title or f"{metric} vs {param}",
        xaxis=dict(title=param),
        yaxis=dict(title=metric, tickformat=".0%" if metric in _OUTCOMES else None),
        legend=dict(title="style"),
    )
    return fig
