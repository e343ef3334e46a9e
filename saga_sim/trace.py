"""The trace: immutable event records while running, pandas DataFrames at the edge.

While a run goes, the tracer appends plain tuples (cheap); ``events_frame`` turns them into the
``Run.events`` DataFrame, one row per event in the order they happened (ties keep the order in
which the simulation processed them, which is deterministic). The row's index is its ``seq``, the
number that invariant violations point at.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

__all__ = ["EVENT_COLUMNS", "EVENT_KINDS", "Tracer", "events_frame"]

EVENT_COLUMNS: tuple[str, ...] = (
    "time",
    "saga",
    "style",
    "kind",
    "source",
    "target",
    "step",
    "message",
    "msg_id",
    "attempt",
    "detail",
)

EVENT_KINDS: dict[str, str] = {
    "send": "a node puts a message on the network",
    "deliver": "the message reaches its target",
    "drop": "the message is lost (network loss, a drop fault, a partition, or its target is down)",
    "duplicate": "the network makes a second copy of the message",
    "ignored": "a receiver discards a message (a duplicate, a stale reply)",
    "tx_commit": "a step's local transaction commits (its effect is now in the service's store)",
    "tx_abort": "a step's local transaction aborts (business failure; no effect)",
    "tx_refused": "a late action refused because its compensation already ran (barrier)",
    "read": "a local transaction reads a shared item (its value, version and who wrote it)",
    "comp_commit": "a compensation commits (the step's effect is undone)",
    "comp_fail": "a compensation attempt fails",
    "comp_null": "a compensation for an action that never ran: recorded, nothing to undo",
    "work_lost": "a crash interrupts a local transaction in progress",
    "state": "a saga state transition (the coordinator's, or a participant's view of the end)",
    "timeout": "the coordinator gave up waiting for a reply",
    "dead_letter": "a message or compensation given up after its retries: left for a human",
    "retry": "a request sent again",
    "crash": "a node goes down",
    "restart": "a node comes back up",
    "partition": "a network partition starts between source and target ('*': every other node)",
    "heal": "the partition ends",
}

_STRING_COLUMNS = ("style", "kind", "source", "target", "step", "message", "detail")


class Tracer:
    """Collects event rows of one run as tuples."""

    __slots__ = ("env", "rows")

    def __init__(self, env: Any):
        self.env = env
        self.rows: list[tuple] = []

    def emit(
        self,
        kind: str,
        saga: int = 0,
        source: str = "",
        target: str = "",
        step: str = "",
        message: str = "",
        msg_id: int = 0,
        attempt: int = 0,
        detail: str = "",
    ) -> int:
        """Record one event now; returns its sequence number (its row in ``Run.events``)."""
        rows = self.rows
        rows.append(
            (self.env.now, saga, kind, source, target, step, message, msg_id, attempt, detail)
        )
        return len(rows) - 1


def events_frame(rows: list[tuple], style: str) -> pd.DataFrame:
    """Build the events DataFrame from tracer rows (schema: ``EVENT_COLUMNS``)."""
    cols = [c for c in EVENT_COLUMNS if c != "style"]
    df = pd.DataFrame.from_records(rows, columns=cols)
    df.insert(2, "style", style)
    df["time"] = df["time"].astype("float64")
    for c in ("saga", "msg_id", "attempt"):
        df[c] = df[c].astype("int64")
    for c in _STRING_COLUMNS:
        df[c] = df[c].astype(object)
    df.index.name = "seq"
    return df
