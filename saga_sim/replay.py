"""Replaying a trace: messages paired send -> arrival, fault windows, and stores at an instant.

Everything here reads a ``Run.events`` DataFrame and nothing else (no simulation objects, no
plotting library), so the figures in ``saga_sim.viz``, the app and the notebooks share one
reading of the trace:

- ``messages(events)``: one row per arrow of a sequence diagram (a send and its delivery, loss or
  second copy), with the message's class (request, reply, failure, compensation, ...).
- ``fault_windows(events)``: crash and partition windows, from their crash/restart and
  partition/heal rows.
- ``store_at(events, t)``: each service's local records at time ``t``.
- ``compensation_table(events)``: every compensation attempt, in order, with what it undid and
  the failure that triggered it.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

__all__ = [
    "MESSAGE_CLASSES",
    "compensation_names",
    "compensation_table",
    "fault_windows",
    "lanes",
    "messages",
    "select_sagas",
    "store_at",
]

MESSAGE_CLASSES: dict[str, str] = {
    "request": "a command or the event that makes a service act",
    "reply": "a success reply (orchestration) or success event (choreography)",
    "failure": "a failure reply or failure event",
    "compensation": "a compensation command, its reply, or a 'compensated' event",
    "retry": "a request or reply sent again (retry after a timeout, broker redelivery)",
    "duplicate": "the second copy of a message the network duplicated",
    "lost": "a message that never arrived (dropped, partitioned, or its target was down)",
    "in flight": "a message still on its way when the run ended",
}

_MESSAGE_COLUMNS = [
    "saga",
    "msg_id",
    "attempt",
    "source",
    "target",
    "step",
    "message",
    "sent",
    "arrived",
    "fate",
    "cls",
    "detail",
    "send_seq",
    "end_seq",
]

_SUFFIXES = ("ok", "failed", "succeeded", "compensated")


def select_sagas(events: pd.DataFrame, saga: int | Iterable[int] | None) -> pd.DataFrame:
    """The rows of the chosen saga(s) plus the rows that belong to no saga (crashes, partitions).

    Args:
        events: a ``Run.events`` frame.
        saga: one saga number, several, or ``None`` for every saga.
    """
    if saga is None:
        return events
    wanted = [int(saga)] if isinstance(saga, (int, np.integer)) else [int(s) for s in saga]
    return events[events["saga"].isin([0, *wanted])]


def lanes(events: pd.DataFrame) -> list[str]:
    """The nodes of a trace in diagram order: client, coordinator or broker, then the services
    in the order they first appear."""
    pairs = np.column_stack([events["source"].to_numpy(), events["target"].to_numpy()]).ravel()
    seen = [n for n in pd.unique(pairs) if n and n != "*"]
    head = [n for n in ("client", "coordinator", "broker") if n in seen]
    return head + [n for n in seen if n not in head]


def compensation_names(events: pd.DataFrame) -> set[str]:
    """Names of compensation actions seen in the trace (from compensation rows, and, in
    orchestration, any second command name the coordinator sent for a step)."""
    kinds = events["kind"]
    names = set(events.loc[kinds.isin(["comp_commit", "comp_fail", "comp_null"]), "message"])
    sends = events[(kinds == "send") & (events["source"] == "coordinator") & (events["step"] != "")]
    if len(sends):
        actions = set(events.loc[kinds.isin(["tx_commit", "tx_abort", "tx_refused"]), "message"])
        first = sends.groupby("step", sort=False)["message"].first()
        actions |= set(first)
        names |= set(sends["message"]) - actions
    names.discard("")
    return names


def _classify(msgs: pd.DataFrame, comp: set[str]) -> np.ndarray:
    name = msgs["message"].astype(str)
    parts = name.str.rsplit(".", n=1)
    base = parts.str[0]
    suffix = np.where(parts.str.len() > 1, parts.str[-1], "")
    suffix = np.where(np.isin(suffix, _SUFFIXES), suffix, "")
    base = np.where(suffix != "", base, name)
    is_comp = (suffix == "compensated") | np.isin(base, list(comp))
    cls = np.select(
        [is_comp, suffix == "failed", np.isin(suffix, ["ok", "succeeded"])],
        ["compensation", "failure", "reply"],
        default="request",
    ).astype(object)
    from_broker = (msgs["source"] == "broker").to_numpy()
    cls[from_broker & (cls == "reply")] = "request"
    retry = (msgs["attempt"].to_numpy() > 1) & np.isin(cls, ["request", "reply"])
    cls[retry] = "retry"
    return cls


def messages(events: pd.DataFrame) -> pd.DataFrame:
    """One row per arrow of the sequence diagram.

    A message is a ``send`` row plus the ``deliver``/``drop`` rows with the same ``msg_id`` that
    follow it. The first arrival is the message's arrow (fate ``delivered`` or ``lost``); a
    second ``deliver`` is a ``duplicate`` arrow; a ``drop`` after a delivery (the message was
    queued at a node that crashed) is ``lost`` with no arrow of its own (``sent`` is NaN); a send
    with no arrival is ``in flight``.

    Returns:
        Columns saga, msg_id, attempt, source, target, step, message, sent, arrived, fate
        (delivered | lost | duplicate | lost in queue | in flight), cls (see
        ``MESSAGE_CLASSES``), detail, send_seq, end_seq; ordered by ``end_seq`` (in-flight last).
    """
    kinds = events["kind"]
    ev = events.reset_index()
    seqcol = ev.columns[0]
    ev = ev.rename(columns={seqcol: "seq"})
    kind_arr = kinds.to_numpy()
    sends = ev[kind_arr == "send"]
    ends = ev[np.isin(kind_arr, ["deliver", "drop"])]
    if sends.empty:
        return pd.DataFrame(columns=_MESSAGE_COLUMNS)
    s = sends[["seq", "msg_id", "saga", "attempt", "source", "target", "step", "message", "time"]]
    s = s.rename(columns={"time": "sent", "seq": "send_seq"})
    s = s.assign(key=s["send_seq"])
    e = ends[["seq", "msg_id", "kind", "time", "detail"]].rename(
        columns={"time": "arrived", "seq": "end_seq"}
    )
    left = e.sort_values("end_seq")
    right = s[["send_seq", "msg_id"]].sort_values("send_seq")
    paired = pd.merge_asof(
        left, right, left_on="end_seq", right_on="send_seq", by="msg_id", direction="backward"
    )
    paired = paired.dropna(subset=["send_seq"])
    paired["send_seq"] = paired["send_seq"].astype("int64")
    paired["rank"] = paired.groupby("send_seq").cumcount()
    sidx = s.set_index("send_seq")
    cols = ["saga", "attempt", "source", "target", "step", "message", "sent"]
    paired = paired.join(sidx[cols], on="send_seq")
    first = paired["rank"].to_numpy() == 0
    is_deliver = paired["kind"].to_numpy() == "deliver"
    fate = np.select(
        [first & is_deliver, first, is_deliver],
        ["delivered", "lost", "duplicate"],
        default="lost in queue",
    )
    paired["fate"] = fate
    paired.loc[paired["fate"] == "lost in queue", "sent"] = np.nan
    paired["detail"] = paired["detail"].astype(object)
    sd = paired["send_seq"].map(sends.set_index("seq")["detail"]).fillna("")
    paired["detail"] = np.where(paired["detail"] == "", sd, paired["detail"])
    done = set(paired["send_seq"])
    flying = s[~s["send_seq"].isin(done)].copy()
    flying["arrived"] = np.nan
    flying["fate"] = "in flight"
    flying["end_seq"] = -1
    flying["detail"] = ""
    out = pd.concat([paired, flying], ignore_index=True, sort=False)
    comp = compensation_names(events)
    cls = _classify(out, comp)
    fate = out["fate"].to_numpy()
    cls = np.where(fate == "duplicate", "duplicate", cls)
    cls = np.where(np.isin(fate, ["lost", "lost in queue"]), "lost", cls)
    cls = np.where(fate == "in flight", "in flight", cls)
    out["cls"] = cls
    out["base_cls"] = _classify(out, comp)
    out["end_seq"] = out["end_seq"].astype("int64")
    out["msg_id"] = out["msg_id"].astype("int64")
    out["saga"] = out["saga"].astype("int64")
    out["attempt"] = out["attempt"].astype("int64")
    order = np.where(out["end_seq"] < 0, np.iinfo(np.int64).max, out["end_seq"])
    out = out.iloc[np.argsort(order, kind="stable")].reset_index(drop=True)
    return out[[*_MESSAGE_COLUMNS, "base_cls"]]


def fault_windows(events: pd.DataFrame) -> pd.DataFrame:
    """Crash and partition windows in a trace.

    Returns:
        Columns kind (crash | partition), nodes (tuple of lane names; a partition's ``*`` side
        is left out), start, end (the restart/heal time, or the trace's last time when the
        window is still open), open (True when it never closed), label (the fault's label).
    """
    rows = []
    kinds = events["kind"].to_numpy()
    tmax = float(events["time"].max()) if len(events) else 0.0
    sub = events[np.isin(kinds, ["crash", "restart", "partition", "heal"])]
    pending: dict[tuple, list[tuple[float, str]]] = {}
    for t, kind, src, dst, detail in zip(
        sub["time"], sub["kind"], sub["source"], sub["target"], sub["detail"]
    ):
        if kind in ("crash", "partition"):
            key = ("crash", src) if kind == "crash" else ("partition", src, dst, detail)
            pending.setdefault(key, []).append((float(t), detail))
        else:
            key = ("crash", src) if kind == "restart" else ("partition", src, dst, detail)
            opened = pending.get(key)
            if opened:
                start, label = opened.pop(0)
                nodes = (src,) if key[0] == "crash" else tuple(n for n in (src, dst) if n != "*")
                rows.append((key[0], nodes, start, float(t), False, label or detail))
    for key, opened in pending.items():
        for start, label in opened:
            if key[0] == "crash":
                nodes = (key[1],)
            else:
                nodes = tuple(n for n in (key[1], key[2]) if n != "*")
            rows.append((key[0], nodes, start, tmax, True, label))
    df = pd.DataFrame(rows, columns=["kind", "nodes", "start", "end", "open", "label"])
    return df.sort_values(["start", "kind"], kind="stable").reset_index(drop=True)


def _parse_record(detail: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in str(detail).split(", "):
        if "=" in part:
            k, v = part.split("=", 1)
            out[k.strip()] = v.strip()
    return out


def store_at(
    events: pd.DataFrame, t: float, saga: int | Iterable[int] | None = None
) -> pd.DataFrame:
    """Each service's local records at simulated time ``t`` (inclusive).

    A ``tx_commit`` row puts the step's record (its ``detail``: ``"k=v, k=v"``) into the
    service's store; a ``comp_commit`` row takes it out again.

    Args:
        events: a ``Run.events`` frame.
        t: the instant, in simulated seconds.
        saga: only these saga(s) (default: all).

    Returns:
        One row per record: service, saga, step, record (the ``k=v`` text, ``"(no fields)"``
        when the step writes nothing), fields (a dict), since (commit time); ordered by
        service (lane order), then saga and commit time.
    """
    ev = select_sagas(events, saga)
    ev = ev[(ev["time"] <= t) & ev["kind"].isin(["tx_commit", "comp_commit"])]
    live: dict[tuple[str, int, str], tuple[str, float]] = {}
    for kind, svc, s, step, detail, tt in zip(
        ev["kind"], ev["source"], ev["saga"], ev["step"], ev["detail"], ev["time"]
    ):
        key = (svc, int(s), step)
        if kind == "tx_commit":
            live[key] = (detail, float(tt))
        else:
            live.pop(key, None)
    order = {n: i for i, n in enumerate(lanes(events))}
    rows = [
        (svc, s, step, detail or "(no fields)", _parse_record(detail), since)
        for (svc, s, step), (detail, since) in live.items()
    ]
    df = pd.DataFrame(rows, columns=["service", "saga", "step", "record", "fields", "since"])
    if len(df):
        df["_o"] = df["service"].map(order).fillna(len(order))
        df = df.sort_values(["_o", "saga", "since"], kind="stable").drop(columns="_o")
    return df.reset_index(drop=True)


_TRIGGER_KINDS = ("tx_abort", "timeout", "tx_refused", "work_lost")


def compensation_table(
    events: pd.DataFrame, saga: int | Iterable[int] | None = None
) -> pd.DataFrame:
    """Every compensation attempt in order: what was undone, when, triggered by which failure,
    after how many attempts.

    Returns:
        Columns time, saga, service, step, compensation, result (undone | failed | nothing to
        undo), attempt (this compensation's attempt number), undid (the record it removed),
        triggered_by (the failure that started compensating this saga), trigger_time, seq.
    """
    ev = select_sagas(events, saga)
    kinds = ev["kind"].to_numpy()
    comp_rows = ev[np.isin(kinds, ["comp_commit", "comp_fail", "comp_null"])]
    cols = [
        "time",
        "saga",
        "service",
        "step",
        "compensation",
        "result",
        "attempt",
        "undid",
        "triggered_by",
        "trigger_time",
        "seq",
    ]
    if comp_rows.empty:
        return pd.DataFrame(columns=cols)
    sagas = set(comp_rows["saga"])
    relevant = ev[ev["saga"].isin(sagas)]
    # The trigger: the last failure-ish event of the saga before its first compensation row.
    first_comp: dict[int, int] = {}
    for seq, s in zip(comp_rows.index, comp_rows["saga"]):
        first_comp.setdefault(int(s), int(seq))
    trig_mask = relevant["kind"].isin(_TRIGGER_KINDS) | (
        (relevant["kind"] == "send") & relevant["message"].astype(str).str.endswith(".failed")
    )
    trig = relevant[trig_mask]
    triggers: dict[int, tuple[str, float, str]] = {}
    for seq, s, kind, step, message, detail, t, src in zip(
        trig.index,
        trig["saga"],
        trig["kind"],
        trig["step"],
        trig["message"],
        trig["detail"],
        trig["time"],
        trig["source"],
    ):
        s = int(s)
        if seq > first_comp.get(s, -1):
            continue
        if kind == "tx_abort":
            text = f"{step} aborted at {src} ({detail})" if detail else f"{step} aborted"
        elif kind == "timeout":
            text = f"{step}: {detail or 'timeout'}"
        elif kind == "tx_refused":
            text = f"{step} refused at {src}"
        elif kind == "work_lost":
            text = f"{step}: work lost in a crash at {src}"
        else:
            text = f"{message} published by {src}"
        if kind == "send" and (src == "broker" or (s in triggers and triggers[s][2] == step)):
            continue  # the failure reply or event of an abort already named, or its relay
        triggers[s] = (text, float(t), step)
    commits = relevant[relevant["kind"] == "tx_commit"]
    record = {
        (int(s), step): d for s, step, d in zip(commits["saga"], commits["step"], commits["detail"])
    }
    counts: dict[tuple[int, str], int] = {}
    rows = []
    words = {"comp_commit": "undone", "comp_fail": "failed", "comp_null": "nothing to undo"}
    for seq, t, s, svc, step, msg, kind in zip(
        comp_rows.index,
        comp_rows["time"],
        comp_rows["saga"],
        comp_rows["source"],
        comp_rows["step"],
        comp_rows["message"],
        comp_rows["kind"],
    ):
        s = int(s)
        key = (s, step)
        counts[key] = counts.get(key, 0) + 1
        undid = record.get(key, "") if kind == "comp_commit" else ""
        if kind == "comp_commit" and not undid:
            undid = "(no fields)"
        text, tt, _ = triggers.get(s, ("", np.nan, ""))
        rows.append(
            (
                float(t),
                s,
                svc,
                step,
                msg,
                words[kind],
                counts[key],
                undid,
                text,
                tt,
                int(seq),
            )
        )
    return pd.DataFrame(rows, columns=cols)
