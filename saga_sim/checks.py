"""Invariants checked on every finished run, and each saga's outcome, from the ground truth.

The ground truth is the services' local stores: their journals of applied actions and
compensations (``commit``, ``abort``, ``comp``, ``comp_null``, ``comp_fail``, ``refused``), not
what a coordinator believes. Each invariant is a named function that reports the saga, the step
and the trace rows (``Run.events`` index) that show a violation.

Outcomes: ``completed`` (every step committed once, nothing undone), ``compensated`` (the saga
failed and every committed step that can be undone was undone, nothing that cannot be undone
committed), ``inconsistent`` (an invariant broke, or the saga was declared over with effects left
that its semantics forbid), ``stalled`` (none of those by the horizon: work is still pending, or
nobody will ever finish it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

__all__ = ["INVARIANTS", "OUTCOMES", "Violation", "isolation_violations", "judge"]

OUTCOMES: tuple[str, ...] = ("completed", "compensated", "inconsistent", "stalled")

INVARIANTS: dict[str, str] = {
    "duplicate_effect": "An effect was applied twice: a step committed (or was compensated) again "
    "while its first effect still stood.",
    "action_after_compensation": "A step's action committed after its compensation had run "
    "(a late request arrived after the saga gave up on it).",
    "compensation_without_action": "A compensation undid an action that had never committed, "
    "without being recorded as a null compensation.",
    "compensation_order": "Compensations did not run in the reverse order of the actions: a step "
    "was undone while the effect of a later step that depends on it still stood.",
    "semantic_atomicity": "The saga ended with some effects applied and others not: neither all "
    "steps committed nor every committed step undone.",
    "lost_update": "A saga overwrote a shared item with a value computed from a stale read: "
    "another saga's update in between was lost.",
    "dirty_read": "A saga acted on a value another saga had written and later compensated: it "
    "read a change that, in the end, never happened.",
    "non_repeatable_read": "A saga read the same item twice and got different values because "
    "another saga changed it in between, and went on with the second value.",
}


@dataclass(frozen=True)
class Violation:
    """One broken invariant in one saga, with the trace rows that show it."""

    invariant: str
    saga: int
    step: str
    rows: tuple[int, ...]
    message: str

    @property
    def explanation(self) -> str:
        """What the invariant means, in a sentence."""
        return INVARIANTS[self.invariant]


# Journal entries: (time, seq, saga, step_index, op, service)
Entry = tuple


def _duplicate_effect(
    saga: int, entries: list[Entry], names: list[str], undoable: dict[int, frozenset[int]]
) -> list[Violation]:
    out = []
    live: dict[int, int] = {}
    comped: dict[int, int] = {}
    for _t, seq, _s, i, op, _svc in entries:
        if op == "commit":
            if i in live:
                out.append(
                    Violation(
                        "duplicate_effect",
                        saga,
                        names[i],
                        (live[i], seq),
                        f"{names[i]} committed twice (rows {live[i]} and {seq})",
                    )
                )
            live[i] = seq
        elif op == "comp":
            if i not in live and i in comped:
                out.append(
                    Violation(
                        "duplicate_effect",
                        saga,
                        names[i],
                        (comped[i], seq),
                        f"{names[i]} compensated twice (rows {comped[i]} and {seq})",
                    )
                )
            live.pop(i, None)
            comped[i] = seq
    return out


def _action_after_compensation(
    saga: int, entries: list[Entry], names: list[str], undoable: dict[int, frozenset[int]]
) -> list[Violation]:
    out = []
    undone: dict[int, int] = {}
    for _t, seq, _s, i, op, _svc in entries:
        if op in ("comp", "comp_null"):
            undone.setdefault(i, seq)
        elif op == "commit" and i in undone:
            out.append(
                Violation(
                    "action_after_compensation",
                    saga,
                    names[i],
                    (undone[i], seq),
                    f"{names[i]} committed (row {seq}) after its compensation (row {undone[i]})",
                )
            )
    return out


def _compensation_without_action(
    saga: int, entries: list[Entry], names: list[str], undoable: dict[int, frozenset[int]]
) -> list[Violation]:
    out = []
    committed: set[int] = set()
    for _t, seq, _s, i, op, _svc in entries:
        if op == "commit":
            committed.add(i)
        elif op == "comp" and i not in committed:
            out.append(
                Violation(
                    "compensation_without_action",
                    saga,
                    names[i],
                    (seq,),
                    f"{names[i]} compensated (row {seq}) but its action never committed",
                )
            )
    return out


def _compensation_order(
    saga: int, entries: list[Entry], names: list[str], undoable: dict[int, frozenset[int]]
) -> list[Violation]:
    out = []
    live: dict[int, int] = {}  # step -> seq of the commit that stands
    order: dict[int, int] = {}  # step -> position in commit order
    for _t, seq, _s, i, op, _svc in entries:
        if op == "commit":
            live[i] = seq
            order.setdefault(i, len(order))
        elif op == "comp" and i in order:
            below = undoable.get(i, frozenset())
            later = [
                j for j in live if j in below and j != i and j in undoable and order[j] > order[i]
            ]
            for j in sorted(later):
                out.append(
                    Violation(
                        "compensation_order",
                        saga,
                        names[i],
                        (live[j], seq),
                        f"{names[i]} undone (row {seq}) while the later step "
                        f"{names[j]} still stood (row {live[j]})",
                    )
                )
            live.pop(i, None)
    return out


CHECKS: dict[str, Callable[[int, list[Entry], list[str], dict], list[Violation]]] = {
    "duplicate_effect": _duplicate_effect,
    "action_after_compensation": _action_after_compensation,
    "compensation_without_action": _compensation_without_action,
    "compensation_order": _compensation_order,
}


def isolation_violations(
    data_log: Iterable[tuple], committed: set[tuple[int, int]], names: list[str]
) -> dict[int, list[Violation]]:
    """Isolation anomalies between concurrent sagas, from the shared-item log.

    ``data_log`` entries: (time, seq, saga, step, op, item, value, version, writer saga,
    writer seq, based-on version), op read | write | undo. ``committed``: (saga, step) pairs whose
    local transaction committed (an anomaly counts only when a saga acted on what it read).
    """
    out: dict[int, list[Violation]] = {}
    log = sorted(data_log, key=lambda e: e[1])
    by_item: dict[str, list[tuple]] = {}
    for e in log:
        by_item.setdefault(e[5], []).append(e)
    for item, entries in by_item.items():
        writes = [e for e in entries if e[4] in ("write", "undo")]
        undone: dict[int, tuple] = {}  # write seq -> the undo of that saga's step
        for e in entries:
            if e[4] == "undo":
                for w in writes:
                    if w[4] == "write" and w[2] == e[2] and w[3] == e[3] and w[1] < e[1]:
                        undone[w[1]] = e
        # (saga, write seq, undo seq): a change that stood from its write to its undo; a read by
        # another saga in between saw it, whoever wrote the value last (an undo of another of
        # that saga's changes, say)
        windows = [(w[2], w[1], undone[w[1]][1]) for w in writes if w[1] in undone]
        first_read: dict[int, tuple] = {}
        for e in entries:
            _t, seq, saga, i, op, _item, value, version, writer, wseq, based = e
            if op == "write" and based != version - 1:
                lost = [w for w in writes if based < w[7] < version and w[2] != saga]
                if lost:
                    w = lost[-1]
                    out.setdefault(saga, []).append(
                        Violation(
                            "lost_update",
                            saga,
                            names[i],
                            (w[1], seq),
                            f"saga {saga} wrote {item}={value} from a read of version {based}, "
                            f"overwriting saga {w[2]}'s update (row {w[1]}): that update is lost",
                        )
                    )
            elif op == "read" and (saga, i) in committed:
                seen = None
                how = "written by"
                if writer and writer != saga and wseq in undone and undone[wseq][1] > seq:
                    seen = (wseq, undone[wseq])
                else:
                    for other, w_seq, u_seq in windows:
                        if other != saga and w_seq < seq < u_seq:
                            seen, writer, how = (w_seq, undone[w_seq]), other, "with a change by"
                            break
                if seen is not None:
                    wseq, u = seen
                    out.setdefault(saga, []).append(
                        Violation(
                            "dirty_read",
                            saga,
                            names[i],
                            (wseq, seq, u[1]),
                            f"saga {saga} read {item}={value} {how} saga {writer}, which "
                            f"later compensated it (row {u[1]})",
                        )
                    )
                prev = first_read.get(saga)
                if prev is not None and prev[7] != version and prev[6] != value:
                    others = [w for w in writes if prev[1] < w[1] < seq and w[2] != saga]
                    if others:
                        out.setdefault(saga, []).append(
                            Violation(
                                "non_repeatable_read",
                                saga,
                                names[i],
                                (prev[1], others[0][1], seq),
                                f"saga {saga} read {item}={prev[6]}, then {item}={value}: saga "
                                f"{others[0][2]} changed it in between (row {others[0][1]})",
                            )
                        )
            if op == "read":
                first_read.setdefault(saga, e)
    return out


def _descendants(steps: list) -> list[frozenset[int]]:
    """For each step, the steps that (transitively) wait for it, itself included."""
    index = {s.name: i for i, s in enumerate(steps)}
    preds = [
        ((i - 1,) if i else ()) if s.after is None else tuple(index[n] for n in s.after)
        for i, s in enumerate(steps)
    ]
    out = []
    for i in range(len(steps)):
        below = {i}
        for j in range(i + 1, len(steps)):
            if any(p in below for p in preds[j]):
                below.add(j)
        out.append(frozenset(below))
    return out


def judge(
    entries: Iterable[Entry],
    steps: list,
    n_sagas: int,
    declared: dict[int, tuple[str, float, str]],
    data_log: Iterable[tuple] = (),
) -> tuple[dict[int, str], list[Violation]]:
    """Decide every saga's outcome and list the violations.

    Args:
        entries: the services' journals, merged (any order; sorted here by trace row).
        steps: the scenario's steps.
        n_sagas: how many sagas the run started (1..n).
        declared: saga -> (state, time, by), who said it ended, if anybody did.

    Returns:
        (outcome by saga, violations in saga order).
    """
    names = [s.name for s in steps]
    no_undo = {i for i, s in enumerate(steps) if s.kind == "compensatable" and not s.undoable}
    below = _descendants(steps)
    undoable = {i: below[i] for i, s in enumerate(steps) if s.undoable}
    by_saga: dict[int, list[Entry]] = {}
    for e in sorted(entries, key=lambda e: e[1]):
        by_saga.setdefault(e[2], []).append(e)
    outcomes: dict[int, str] = {}
    violations: list[Violation] = []
    data_log = list(data_log)
    isolation: dict[int, list[Violation]] = {}
    if data_log:
        committed = {(e[2], e[3]) for es in by_saga.values() for e in es if e[4] == "commit"}
        isolation = isolation_violations(data_log, committed, names)
    n = len(steps)
    clean = [(k, "commit") for k in range(n)]
    for saga in range(1, n_sagas + 1):
        es = by_saga.get(saga, [])
        if saga not in isolation and len(es) == n and [(e[3], e[4]) for e in es] == clean:
            outcomes[saga] = "completed"  # the common case: every step committed once, in order
            continue
        found: list[Violation] = []
        for check in CHECKS.values():
            found += check(saga, es, names, undoable)
        found += isolation.get(saga, [])
        live: dict[int, int] = {}
        aborted = False
        comps = 0
        for _t, seq, _s, i, op, _svc in es:
            if op == "commit":
                live[i] = seq
            elif op == "comp":
                live.pop(i, None)
                comps += 1
            elif op == "abort":
                aborted = True
        if found:
            outcome = "inconsistent"
        elif len(live) == n and comps == 0:
            outcome = "completed"
        elif (aborted or saga in declared) and set(live) <= no_undo and len(live) < n:
            outcome = "compensated"
        elif saga in declared:
            outcome = "inconsistent"
            stuck = sorted(i for i in live if i not in no_undo)
            found.append(
                Violation(
                    "semantic_atomicity",
                    saga,
                    names[stuck[0]] if stuck else "",
                    tuple(live[i] for i in stuck),
                    f"declared {declared[saga][0]} by {declared[saga][2]}, but "
                    + ", ".join(names[i] for i in stuck)
                    + " still stand(s) while other steps "
                    "did not commit or were undone",
                )
            )
        else:
            outcome = "stalled"
        outcomes[saga] = outcome
        violations += found
    return outcomes, violations
