"""Services: SimPy processes with an inbox, workers and a local store (their own database).

A service runs local transactions for the steps it owns. A transaction takes its drawn
duration, then commits (its record goes into the store and its journal) or aborts. The
store survives crashes; work in progress does not: a crash interrupts the workers (a SimPy
``Interrupt``) and loses the inbox. Idempotency (deduplication by message id and by saga step)
and the barrier (refusing an action whose compensation already ran) live here, shared by both
styles; the style gives the service its ``handler`` for incoming messages.

A *participant* can be plugged into a step (``simulate(..., participants={step: obj})``, used by
the coursework): an object with an ``action(request, db)`` and/or a ``compensation(request, db)``
method. It is asked at the commit point of the local transaction, after the step's duration and
any injected business failure, and decides what the transaction does (``apply``, ``skip``,
``refuse``; ``undo``, ``null``, ``skip``); ``db`` is the service's own durable dict, committed with
the transaction. For the phases it plugs, the participant takes over the service's built-in
safeguards (deduplication, barrier, null compensation): they are its job.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import simpy

from ..faults import FailCompensation, FailStep
from .messages import ACTION, COMPENSATION
from .node import Node
from .streams import COMP_SERVICE, SERVICE

if TYPE_CHECKING:  # pragma: no cover
    from ..scenario import Service as ServiceSpec
    from .messages import Message
    from .world import World

__all__ = ["ACTION_VERDICTS", "COMPENSATION_VERDICTS", "Effect", "Request", "Service"]

RUNNING = "running"
COMMITTED = "committed"
COMPENSATING = "compensating"
COMPENSATED = "compensated"
NULL_COMPENSATED = "null_compensated"

# Results of run_action / run_compensation
OK = "ok"
FAILED = "failed"
ALREADY = "already"  # idempotent hit: the effect is already there
BUSY = "busy"  # the same work is in progress: ignore this copy
REFUSED = "refused"  # barrier: the compensation already ran


ACTION_VERDICTS = ("apply", "skip", "refuse")
"""What a plugged participant's ``action`` may answer: commit the effect; do nothing and reply
success (the effect is already there); refuse (barrier: the reply says failed)."""
COMPENSATION_VERDICTS = ("undo", "null", "skip")
"""What a plugged participant's ``compensation`` may answer: undo the effect; record a null
compensation (nothing to undo); do nothing and reply success (already undone)."""


@dataclass(frozen=True, slots=True)
class Request:
    """What a plugged participant sees of the message it handles (read-only)."""

    saga: int
    step: str
    phase: str  # "action" | "compensation"
    msg_id: int
    attempt: int
    message: str
    source: str
    time: float


class Effect(tuple):
    """One journal entry of a service's store: (time, seq, saga, step, op, service)."""

    __slots__ = ()


def _fill(template: str, saga: int) -> str:
    try:
        return template.format(saga=saga)
    except (KeyError, IndexError, ValueError):
        return template


class Service(Node):
    """A participant service."""

    def __init__(self, world: World, name: str, spec: ServiceSpec):
        super().__init__(world, name)
        self.inbox: deque[Message] = deque()  # messages waiting for a free worker
        self._idle: list[simpy.Event] = []  # workers waiting for a message
        self.handler: Callable[[Service, Message], Generator] | None = None
        self.status: dict[tuple[int, int], str] = {}
        self.attempts: dict[tuple[int, int], int] = {}
        self.comp_attempts: dict[tuple[int, int], int] = {}
        self.records: dict[tuple[int, int], dict[str, str]] = {}
        self.seen: set[int] = set()
        self.journal: list[tuple] = []
        self.participants: dict[int, Any] = {}  # step index -> plugged behaviour
        self.db: dict[Any, Any] = {}  # the plugged behaviour's own durable table
        self.busy: dict[simpy.Process, Message] = {}
        self.workers = [self.env.process(self._work()) for _ in range(spec.workers)]
        sc = world.scenario
        self._steps = sc.steps
        self._policy = sc.policy
        self._u = world.streams.u
        self._emit = world.tracer.emit
        self._fail = world.fail_step
        self._durations = world.durations
        self._comp_durations = world.comp_durations
        self._fail_comp = world.fail_compensation

    # --- message loop ------------------------------------------------------------------------

    def receive(self, m: Message) -> None:
        if self._idle:
            self._idle.pop().succeed(m)
        else:
            self.inbox.append(m)

    def _work(self) -> Generator:
        env = self.env
        inbox = self.inbox
        while True:
            if inbox:
                m = inbox.popleft()
            else:
                wake = env.event()
                self._idle.append(wake)
                m = yield wake
            proc = env.active_process
            self.busy[proc] = m
            try:
                yield from self.handler(self, m)
            except simpy.Interrupt:
                pass
            finally:
                del self.busy[proc]

    def _lose_work(self) -> None:
        for proc, m in list(self.busy.items()):
            self._emit(
                "work_lost",
                m.saga,
                self.name,
                "",
                self._step_label(m.step),
                m.name,
                m.msg_id,
                m.attempt,
                "in-flight work lost in the crash",
            )
            proc.interrupt("crash")
        for m in list(self.inbox):
            self._emit(
                "drop",
                m.saga,
                m.source,
                self.name,
                self._step_label(m.step),
                m.name,
                m.msg_id,
                m.attempt,
                f"queued at {self.name}, lost in the crash",
            )
        self.inbox.clear()
        for key, st in list(self.status.items()):
            if st == RUNNING:
                del self.status[key]
            elif st == COMPENSATING:
                self.status[key] = COMMITTED

    def _step_label(self, i: int) -> str:
        return self._steps[i].name if i >= 0 else ""

    def is_duplicate(self, m: Message) -> bool:
        """True (and traced) when this exact message was already handled, or is being handled
        by another worker, and deduplication is on."""
        if not self._policy.idempotent or self._plugged(m.step, m.phase):
            return False
        if m.msg_id in self.seen:
            why = "duplicate message id: already handled"
        else:
            me = self.env.active_process
            if not any(o.msg_id == m.msg_id for p, o in self.busy.items() if p is not me):
                return False
            why = "duplicate message id: being handled by another worker"
        step = self._step_label(m.step)
        self._emit("ignored", m.saga, self.name, m.source, step, m.name, m.msg_id, m.attempt, why)
        return True

    def _plugged(self, i: int, phase: int) -> Any:
        """The participant plugged into step ``i`` for this phase, or None."""
        p = self.participants.get(i)
        if p is None:
            return None
        return getattr(p, "action" if phase == ACTION else "compensation", None)

    def _ask(self, fn: Any, phase: str, saga: int, i: int, m: Message) -> str:
        req = Request(
            saga, self._steps[i].name, phase, m.msg_id, m.attempt, m.name, m.source, self.env.now
        )
        verdict = fn(req, self.db)
        allowed = ACTION_VERDICTS if phase == "action" else COMPENSATION_VERDICTS
        if verdict not in allowed:
            raise ValueError(
                f"the participant plugged into {req.step!r} answered {verdict!r} to its {phase}; "
                f"expected one of: {', '.join(map(repr, allowed))}"
            )
        return verdict

    def handled(self, m: Message) -> None:
        """Remember that this message id is done (durably, with the local transaction)."""
        self.seen.add(m.msg_id)

    def _journal(self, seq: int, saga: int, i: int, op: str) -> None:
        self.journal.append((self.env.now, seq, saga, i, op, self.name))

    # --- local transactions ------------------------------------------------------------------

    def run_action(self, saga: int, i: int, m: Message) -> Generator:
        """Run step ``i``'s local transaction for ``saga``; returns OK, FAILED, ALREADY, BUSY or
        REFUSED."""
        key = (saga, i)
        st = self.status.get(key)
        step = self._steps[i]
        pol = self._policy
        plugged = self._plugged(i, ACTION) if self.participants else None
        if plugged is None and pol.idempotent and st in (COMMITTED, COMPENSATING, RUNNING):
            what = "already committed" if st != RUNNING else "already in progress"
            self._emit(
                "ignored",
                saga,
                self.name,
                m.source,
                step.name,
                m.name,
                m.msg_id,
                m.attempt,
                f"{what} (idempotent consumer)",
            )
            return ALREADY if st != RUNNING else BUSY
        if plugged is None and pol.barrier and st in (COMPENSATED, NULL_COMPENSATED):
            seq = self._emit(
                "tx_refused",
                saga,
                self.name,
                "",
                step.name,
                step.action,
                m.msg_id,
                m.attempt,
                "barrier: the compensation already ran",
            )
            self._journal(seq, saga, i, "refused")
            return REFUSED
        n = self.attempts.get(key, 0) + 1
        self.attempts[key] = n
        if st is None or pol.idempotent:
            self.status[key] = RUNNING
        yield self.env.timeout(self._durations[i](self._u(SERVICE, saga, i, n)))
        if self._fail(saga, i, n):
            if self.status.get(key) == RUNNING:
                del self.status[key]
            seq = self._emit(
                "tx_abort",
                saga,
                self.name,
                "",
                step.name,
                step.action,
                m.msg_id,
                n,
                "business failure (fail_step)",
            )
            self._journal(seq, saga, i, "abort")
            return FAILED
        st = self.status.get(key)
        verdict = "apply" if plugged is None else self._ask(plugged, "action", saga, i, m)
        if verdict == "skip":
            if st == RUNNING:  # nothing new committed: back to what the store holds
                if key in self.records:
                    self.status[key] = COMMITTED
                else:
                    del self.status[key]
            self._emit(
                "ignored",
                saga,
                self.name,
                m.source,
                step.name,
                m.name,
                m.msg_id,
                n,
                "the participant skipped it: already applied",
            )
            return ALREADY
        if verdict == "refuse" or (
            plugged is None and pol.barrier and st in (COMPENSATED, NULL_COMPENSATED)
        ):
            if st == RUNNING and key not in self.records:
                del self.status[key]
            seq = self._emit(
                "tx_refused",
                saga,
                self.name,
                "",
                step.name,
                step.action,
                m.msg_id,
                n,
                "barrier: the compensation ran while this action was running"
                if plugged is None
                else "the participant refused it",
            )
            self._journal(seq, saga, i, "refused")
            return REFUSED
        record = {k: _fill(v, saga) for k, v in step.writes.items()}
        self.records[key] = record
        if st not in (COMPENSATED, NULL_COMPENSATED):
            self.status[key] = COMMITTED
        detail = ", ".join(f"{k}={v}" for k, v in record.items())
        seq = self._emit(
            "tx_commit", saga, self.name, "", step.name, step.action, m.msg_id, n, detail
        )
        self._journal(seq, saga, i, "commit")
        return OK

    def run_compensation(self, saga: int, i: int, m: Message) -> Generator:
        """Run step ``i``'s compensation for ``saga``; returns OK, FAILED, ALREADY or BUSY."""
        key = (saga, i)
        st = self.status.get(key)
        step = self._steps[i]
        pol = self._policy
        plugged = self._plugged(i, COMPENSATION) if self.participants else None
        done = (COMPENSATED, NULL_COMPENSATED, COMPENSATING)
        if plugged is None and pol.idempotent and st in done:
            what = "already compensated" if st != COMPENSATING else "compensation in progress"
            self._emit(
                "ignored",
                saga,
                self.name,
                m.source,
                step.name,
                m.name,
                m.msg_id,
                m.attempt,
                f"{what} (idempotent consumer)",
            )
            return ALREADY if st != COMPENSATING else BUSY
        if (
            plugged is None
            and st not in (COMMITTED, COMPENSATED, COMPENSATING)
            and key not in self.records
        ):
            self.status[key] = NULL_COMPENSATED
            seq = self._emit(
                "comp_null",
                saga,
                self.name,
                "",
                step.name,
                step.compensation,
                m.msg_id,
                m.attempt,
                "the action never ran here: nothing to undo",
            )
            self._journal(seq, saga, i, "comp_null")
            return OK
        n = self.comp_attempts.get(key, 0) + 1
        self.comp_attempts[key] = n
        before = st
        self.status[key] = COMPENSATING
        yield self.env.timeout(self._comp_durations[i](self._u(COMP_SERVICE, saga, i, n)))
        if self._fail_comp(saga, i, n):
            self.status[key] = COMMITTED
            seq = self._emit(
                "comp_fail",
                saga,
                self.name,
                "",
                step.name,
                step.compensation,
                m.msg_id,
                n,
                "compensation failed (fail_compensation)",
            )
            self._journal(seq, saga, i, "comp_fail")
            return FAILED
        verdict = "undo" if plugged is None else self._ask(plugged, "compensation", saga, i, m)
        if verdict == "skip":
            if before is None:  # nothing changes in the store
                del self.status[key]
            else:
                self.status[key] = before
            self._emit(
                "ignored",
                saga,
                self.name,
                m.source,
                step.name,
                m.name,
                m.msg_id,
                n,
                "the participant skipped it: already undone",
            )
            return ALREADY
        if verdict == "null":
            self.status[key] = NULL_COMPENSATED
            seq = self._emit(
                "comp_null",
                saga,
                self.name,
                "",
                step.name,
                step.compensation,
                m.msg_id,
                n,
                "the participant found nothing to undo",
            )
            self._journal(seq, saga, i, "comp_null")
            return OK
        self.status[key] = COMPENSATED
        self.records.pop(key, None)
        seq = self._emit(
            "comp_commit", saga, self.name, "", step.name, step.compensation, m.msg_id, n, ""
        )
        self._journal(seq, saga, i, "comp")
        return OK


def compile_step_faults(faults: list, step_index: dict[str, int]) -> tuple[Callable, Callable]:
    """Turn fail_step and fail_compensation faults into two fast predicates."""
    fail_at: dict[tuple[int, int], list[int | None]] = {}
    comp_fail: dict[int, list[tuple[int | None, int | None]]] = {}
    for f in faults:
        if isinstance(f, FailStep):
            saga = None if f.saga == "all" else f.saga
            fail_at.setdefault((step_index[f.step], f.attempt), []).append(saga)
        elif isinstance(f, FailCompensation):
            saga = None if f.saga == "all" else f.saga
            comp_fail.setdefault(step_index[f.step], []).append((saga, f.times))

    def fail_step(saga: int, i: int, attempt: int) -> bool:
        sel = fail_at.get((i, attempt))
        return sel is not None and any(s is None or s == saga for s in sel)

    def fail_compensation(saga: int, i: int, attempt: int) -> bool:
        for s, times in comp_fail.get(i, ()):
            if (s is None or s == saga) and (times is None or attempt <= times):
                return True
        return False

    return fail_step, fail_compensation
