"""The timeline as a Mermaid ``sequenceDiagram`` (text that GitHub, GitLab and notebooks render).

Arrows are written in arrival order: ``->>`` a delivered request, ``-->>`` a reply or result
event, ``-x`` a lost message, ``-)`` a message still in flight at the end. Local transactions,
compensations, saga states, crashes and partitions become notes over their lane.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import pandas as pd

from ..replay import lanes, messages, select_sagas

__all__ = ["to_mermaid"]

_NOTES = {
    "tx_commit": "✔ {message} commits",
    "tx_abort": "✘ {message} aborts",
    "tx_refused": "⛔ late {message} refused",
    "comp_commit": "↩ {message} (undone)",
    "comp_fail": "✘ {message} fails",
    "comp_null": "↩ {message}: nothing to undo",
    "work_lost": "⚡ work on {step} lost",
    "timeout": "⏱ timeout waiting for {step}",
    "crash": "⚡ {detail}",
    "restart": "back up",
    "partition": "✂ {detail}",
    "heal": "partition healed",
}


def _clean(text: str) -> str:
    """Mermaid message text: no ';' (statement separator) or '#' (entity codes)."""
    return re.sub(r"[;#]", ",", str(text)).replace("\n", " ")


def _pid(name: str) -> str:
    return "p_" + re.sub(r"[^A-Za-z0-9_]", "_", name)


def to_mermaid(
    events: pd.DataFrame,
    saga: int | Iterable[int] | None = None,
    states: bool = True,
    title: str | None = None,
) -> str:
    """The run's timeline as Mermaid ``sequenceDiagram`` text.

    Args:
        events: a ``Run.events`` frame.
        saga: only this saga (or these sagas); with many sagas, pick one.
        states: include the saga state transitions as notes.
        title: an optional title line.

    Returns:
        The diagram text, one statement per line. There is one arrow line per arrow of
        ``saga_sim.replay.messages`` except the messages lost in a crashed node's queue,
        which become notes.
    """
    ev = select_sagas(events, saga)
    names = lanes(events) if len(events) else []
    out = ["sequenceDiagram"]
    if title:
        out.append(f"    title {_clean(title)}")
    for n in names:
        out.append(f"    participant {_pid(n)} as {n}")
    msgs = messages(ev)
    by_end = {int(e): r for e, r in zip(msgs["end_seq"], msgs.itertuples(index=False))}
    kinds = ev["kind"].to_numpy()
    for seq, kind, src, dst, step, msg, detail in zip(
        ev.index,
        kinds,
        ev["source"],
        ev["target"],
        ev["step"],
        ev["message"],
        ev["detail"],
    ):
        if kind in ("deliver", "drop"):
            m = by_end.get(int(seq))
            if m is None:
                continue
            label = _clean(m.message)
            if m.fate == "lost in queue":
                out.append(f"    Note over {_pid(m.target)}: ✘ queued {label} lost in the crash")
                continue
            arrow = "-->>" if m.base_cls in ("reply",) else "->>"
            suffix = ""
            if m.fate == "lost":
                arrow, suffix = "-x", " (lost)"
            elif m.fate == "duplicate":
                suffix = " (second copy)"
            elif m.attempt > 1:
                suffix = f" (attempt {m.attempt})"
            out.append(f"    {_pid(m.source)}{arrow}{_pid(m.target)}: {label}{suffix}")
        elif kind in _NOTES and src in names:
            text = _NOTES[kind].format(message=msg or step, step=step, detail=detail)
            if kind in ("partition", "heal") and dst and dst != "*" and dst in names:
                out.append(f"    Note over {_pid(src)},{_pid(dst)}: {_clean(text)}")
            else:
                out.append(f"    Note over {_pid(src)}: {_clean(text)}")
        elif kind == "state" and states and src in names:
            out.append(f"    Note over {_pid(src)}: state {_clean(detail)}")
    for m in msgs[msgs["fate"] == "in flight"].itertuples(index=False):
        out.append(f"    {_pid(m.source)}-){_pid(m.target)}: {_clean(m.message)} (in flight)")
    return "\n".join(out) + "\n"
