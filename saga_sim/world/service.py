"""Services: SimPy processes with an inbox, workers and a local store (their own database).

A service runs local transactions for the steps it owns. A transaction takes its drawn
duration, then commits (its record goes into the store and its journal) or aborts. The
store survives crashes; work in progress does not: a crash interrupts the workers (a SimPy
``Interrupt``) and loses the inbox. What lives here is shared by both styles:

- idempotency (``policy.idempotent``): deduplication by message id and by saga step;
- the barrier (``policy.barrier``): an action whose compensation already ran is refused, and
  a compensation of an action that never ran is recorded as a null compensation;
- the transactional outbox (``policy.outbox``): a message sent after a local transaction is
  committed with it, so a crash between commit and send delays it (the relay sends it on
  restart) instead of losing it, and an event the broker does not acknowledge (lost on the way)
  is published again by the relay (``policy.relay_timeout``, then ``policy.backoff``);
- crash triggers: ``crash`` faults with ``when: before_commit | after_commit``.

The style gives the service its ``handler`` for incoming messages.

A *participant* can be plugged into a step (``simulate(..., participants={step: obj})``, used by
the coursework): an object with an ``action(request, db)`` and/or a ``compensation(request, db)``
method. It is asked at the commit point of the local transaction, after the step's duration and
any injected business failure, and decides what the transaction does (``apply``, ``skip``,
``refuse``; ``undo``, ``null``, ``skip``); ``db`` is the service's own durable dict, committed with
the transaction. For the phases it plugs, the participant takes over the service's built-in
safeguards (deduplication, barrier, null compensation): they are its job. A status query
(``policy.query_status``) is answered from the service's store, and the fence it sets (a step
declared not run refuses a late request) is kept by the service: the participant never sees it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import simpy

from ..faults import Crash, FailCompensation, FailStep, describe_fault
from .messages import ACTION, COMPENSATION
from .node import Node
from .streams import COMP_SERVICE, SERVICE

if TYPE_CHECKING:  # pragma: no cover
    from ..scenario import Service as ServiceSpec
    from .messages import Message
    from .world import World

__all__ = ["ACTION_VERDICTS", "COMPENSATION_VERDICTS", "Request", "Service"]

RUNNING = "running"
COMMITTED = "committed"
COMPENSATING = "compensating"
COMPENSATED = "compensated"
NULL_COMPENSATED = "null_compensated"
ABANDONED = "abandoned"  # the coordinator was told it never ran: a barrier tombstone
ABORTED = "aborted"  # it aborted and is not retriable: it must not run later for this saga

UNDONE = (COMPENSATED, NULL_COMPENSATED, ABANDONED, ABORTED)

# Results of local transactions (begin_action / commit_action, run_compensation)
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


def _fill(template: str, saga: int) -> str:
    try:
        return template.format(saga=saga)
    except (KeyError, IndexError, ValueError):
        return template


def _writer(writes: dict[str, str]) -> Callable[[int], tuple[dict[str, str], str]]:
    """A function saga -> (the record a step writes, its trace detail), precompiled per step."""
    if not any("{" in v for v in writes.values()):
        record = dict(writes)
        detail = ", ".join(f"{k}={v}" for k, v in record.items())
        return lambda saga: (record, detail)
    fixed = {k: v for k, v in writes.items() if "{" not in v}
    templated = [(k, v) for k, v in writes.items() if "{" in v]
    keys = list(writes)

    def write(saga: int) -> tuple[dict[str, str], str]:
        record = dict(fixed)
        for k, v in templated:
            record[k] = _fill(v, saga)
        return record, ", ".join([f"{k}={record[k]}" for k in keys])

    return write


class _Trigger:
    """A crash fault armed on a local transaction of this service (fires once)."""

    __slots__ = ("duration", "fired", "label", "saga", "step", "when")

    def __init__(self, fault: Crash, step: int):
        self.when = fault.when
        self.step = step
        self.saga = None if fault.saga == "all" else fault.saga
        self.duration = fault.duration
        self.label = describe_fault(fault)
        self.fired = False

    def matches(self, when: str, saga: int, step: int) -> bool:
        return (
            not self.fired
            and self.when == when
            and self.step == step
            and (self.saga is None or self.saga == saga)
        )


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
        self.outbox: list[Message] = []
        self._relayed: dict[int, int] = {}  # message id -> times the relay published it again
        self.participants: dict[int, Any] = {}  # step index -> plugged behaviour
        self.db: dict[Any, Any] = {}  # the plugged behaviour's own durable table
        self.busy: dict[simpy.Process, Message] = {}
        self._busy_ids: dict[int, int] = {}  # message id -> handlers working on it
        self.workers = [self.env.process(self._work()) for _ in range(spec.workers)]
        sc = world.scenario
        self._steps = sc.steps
        self._policy = sc.policy
        self._u = world.streams.u
        self._fail = world.fail_step
        self._fail_comp = world.fail_compensation
        self._durations = world.durations
        self._writers = [_writer(st.writes) for st in sc.steps]
        self._comp_durations = world.comp_durations
        self._send = world.network.send
        self._triggers = [
            _Trigger(f, world.step_index[f.step])
            for f in world.faults
            if isinstance(f, Crash) and f.when is not None and f.service == name
        ]
        self._crash_after_commit: _Trigger | None = None
        # shared items: name -> [value, version, writer saga, trace row of the write]
        self.items: dict[str, list[int]] = {k: [v, 0, 0, -1] for k, v in spec.data.items()}
        self.locks: dict[str, int] = {}  # item -> saga holding its semantic lock
        self._known: dict[tuple[int, str], int] = {}  # (saga, item) -> version it last saw
        self._isolation = sc.policy.isolation
        self._data_log = world.data_log

    def _journal(self, seq: int, saga: int, i: int, op: str) -> None:
        self.journal.append((self.env.now, seq, saga, i, op, self.name))

    # --- message loop ------------------------------------------------------------------------

    def receive(self, m: Message) -> None:
        if self._idle:
            self._idle.pop().succeed(m)
        else:
            self.inbox.append(m)

    def _work(self) -> Generator:
        env = self.env
        inbox = self.inbox
        idle = self._idle
        busy = self.busy
        ids = self._busy_ids
        proc = env.active_process
        while True:
            if inbox:
                m = inbox.popleft()
            else:
                wake = env.event()
                idle.append(wake)
                m = yield wake
            busy[proc] = m
            mid = m.msg_id
            ids[mid] = ids.get(mid, 0) + 1
            try:
                yield from self.handler(self, m)
            except simpy.Interrupt:
                pass
            finally:
                del busy[proc]
                if ids[mid] == 1:
                    del ids[mid]
                else:
                    ids[mid] -= 1

    def _lose_work(self) -> None:
        me = self.env.active_process
        for proc, m in list(self.busy.items()):
            self._t(
                "work_lost",
                m.saga,
                "",
                m.step,
                m.name,
                m.msg_id,
                m.attempt,
                "in-flight work lost in the crash",
            )
            if proc is not me:
                proc.interrupt("crash")
        for m in self.inbox:
            step = self._steps[m.step].name if m.step >= 0 else ""
            self._rows.append(
                (
                    self.env.now,
                    m.saga,
                    "drop",
                    m.source,
                    self.name,
                    step,
                    m.name,
                    m.msg_id,
                    m.attempt,
                    f"queued at {self.name}, lost in the crash",
                )
            )
        self.inbox.clear()
        for key, st in list(self.status.items()):
            if st == RUNNING:
                del self.status[key]
            elif st == COMPENSATING:
                self.status[key] = COMMITTED

    def _recover(self) -> None:
        relay, self.outbox = self.outbox, []
        for m in relay:
            m.note = "relayed from the outbox after the restart"
            self._send(m)

    def unacknowledged(self, m: Message) -> None:
        """With the outbox on, an event published to the broker and lost on the way is not
        acknowledged: the relay publishes it again (the same outbox entry, the same message id)
        ``policy.relay_timeout`` after, each next wait ``policy.backoff`` times longer, until the
        broker has it. A relay that is down keeps it in the outbox and publishes it on restart.
        The acknowledgement itself is not drawn as a message (it is taken as reliable)."""
        pol = self._policy
        k = self._relayed.get(m.msg_id, 0) + 1
        self._relayed[m.msg_id] = k
        wait = pol.relay_timeout * pol.backoff ** min(k - 1, 20)

        def again(_ev: simpy.Event) -> None:
            self.world.retries[m.saga] += 1
            note = f"outbox relay: no broker ack within {wait:.3g}s, published again"
            copy = m.redelivery(m.attempt + 1, note)
            self._t("retry", m.saga, "broker", m.step, m.name, m.msg_id, copy.attempt, note)
            if self.up:
                self._send(copy)
            else:
                self.outbox.append(copy)

        self.env.timeout(wait).callbacks.append(again)

    def _crash_now(self, trigger: _Trigger) -> None:
        """Crash from inside a handler (a crash trigger): down now, up after its duration."""
        trigger.fired = True
        self.crash(trigger.label)
        self.world.schedule_restart(self, trigger.duration, trigger.label)
        raise simpy.Interrupt("crash")

    # --- messages --------------------------------------------------------------------------------

    def is_duplicate(self, m: Message) -> str | None:
        """With deduplication on, whether this exact message is a copy (traced as ignored):
        ``"handled"`` (its outcome is already durable), ``"busy"`` (another worker is handling
        it: its outcome is not known yet), or None."""
        if not self._policy.idempotent or (self.participants and self._plugged(m.step, m.phase)):
            return None
        if m.msg_id in self.seen:
            why, verdict = "duplicate message id: already handled", "handled"
        elif self._busy_ids.get(m.msg_id, 0) > 1:  # this handler counts itself once
            why, verdict = "duplicate message id: being handled by another worker", "busy"
        else:
            return None
        self._t("ignored", m.saga, m.source, m.step, m.name, m.msg_id, m.attempt, why)
        return verdict

    def _plugged(self, i: int, phase: int) -> Any:
        """The participant's method plugged into step ``i`` for this phase, or None."""
        p = self.participants.get(i) if self.participants else None
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

    def send(self, m: Message) -> None:
        """Send a message that follows a local transaction (a reply, a domain event).

        If a crash trigger fired right after the commit, the service goes down now: with the
        outbox the message waits in it and is relayed on restart; without, it is lost.
        """
        trigger = self._crash_after_commit
        if trigger is None:
            self._send(m)
            return
        self._crash_after_commit = None
        if self._policy.outbox:
            self.outbox.append(m)
        else:
            self._t(
                "drop",
                m.saga,
                m.target,
                m.step,
                m.name,
                0,
                m.attempt,
                f"never sent: {self.name} crashed between commit and send (no outbox)",
            )
        self._crash_now(trigger)

    def status_of(self, saga: int, i: int) -> str:
        """Answer a status query about step ``i`` of ``saga``: committed, running or not_run.

        With the barrier on, a step that never ran is marked abandoned, so a late request for
        it is refused and the coordinator can safely treat it as not done.
        """
        st = self.status.get((saga, i))
        if st in (COMMITTED, COMPENSATING):
            return "committed"
        if st == RUNNING:
            return "running"
        if st is None and self._policy.barrier:
            self.status[(saga, i)] = ABANDONED
        return "not_run"

    # --- shared items --------------------------------------------------------------------------

    def release_locks(self, saga: int) -> None:
        """The saga ended: its semantic locks on this service's items are released."""
        for item in [k for k, holder in self.locks.items() if holder == saga]:
            del self.locks[item]

    def _read(self, saga: int, i: int, item: str, m: Message, n: int) -> tuple | str:
        """Read a shared item at the start of a local transaction (a reason string: abort)."""
        iso = self._isolation
        holder = self.locks.get(item)
        if iso.semantic_lock and holder is not None and holder != saga:
            return f"{item} is pending in saga {holder} (semantic lock)"
        value, version, writer, wseq = self.items[item]
        if iso.reread:
            # the version this saga last saw: its own read, or its own write or undo since
            earlier = self._known.get((saga, item))
            if earlier is not None and earlier != version:
                return (
                    f"{item} changed since this saga last saw it (version {earlier} -> "
                    f"{version}): abort (reread)"
                )
            self._known[(saga, item)] = version
        if iso.semantic_lock and saga not in self.world.declared:
            # (a late transaction of a saga already over must not lock the item for good)
            self.locks[item] = saga
        who = f"saga {writer}" if writer else "initial value"
        seq = self._t(
            "read", saga, "", i, item, m.msg_id, n, f"{item}={value} (version {version}, {who})"
        )
        self._data_log.append(
            (self.env.now, seq, saga, i, "read", item, value, version, writer, wseq, version)
        )
        return (value, version, seq)

    def _plan_write(
        self, saga: int, i: int, d: object, read: tuple, m: Message, n: int
    ) -> tuple | str | None:
        """Decide the write at commit: (detail, new value, based-on version), or a reason to abort,
        or None for a read-only step."""
        iso = self._isolation
        value, version, _ = read
        cur = self.items[d.item]
        if d.change == 0:
            return None
        if cur[1] != version and iso.reread:
            return (
                f"{d.item} changed since it was read (version {version} -> {cur[1]}): "
                "abort (reread)"
            )
        if iso.commutative or (iso.version and cur[1] != version):
            base, based_on = cur[0], cur[1]  # apply to the current value
            how = " (commutative update)" if iso.commutative else " (version conflict: redone)"
        else:
            base, based_on, how = value, version, ""
        new = base + d.change
        if d.floor is not None and new < d.floor:
            return f"{d.item} would fall to {new}, below {d.floor}"
        return (f"{d.item}: {base} -> {new}{how}", new, based_on)

    def _apply_write(self, seq: int, saga: int, i: int, item: str, write: tuple) -> None:
        _, new, based_on = write
        cell = self.items[item]
        cell[0] = new
        cell[1] += 1
        cell[2], cell[3] = saga, seq
        if self._isolation.reread:
            self._known[(saga, item)] = cell[1]
        self._data_log.append(
            (self.env.now, seq, saga, i, "write", item, new, cell[1], saga, seq, based_on)
        )

    # --- local transactions ------------------------------------------------------------------

    def _aborted(self, key: tuple[int, int], step: object) -> None:
        """The local transaction aborted, whatever the cause (a business failure, a semantic
        lock, a reread, a floor): a non-retriable step must not run later for this saga (with
        the barrier on, a late copy of its request is refused)."""
        st = self.status.get(key)
        if st is None or st == RUNNING:
            if self._policy.barrier and step.kind != "retriable":
                self.status[key] = ABORTED
            elif st is not None:
                del self.status[key]

    def begin_action(self, saga: int, i: int, m: Message) -> str | tuple:
        """Start step ``i``'s local transaction for ``saga``: a result (OK, FAILED, ALREADY, BUSY
        or REFUSED) if it ends here, else the transaction in progress, ``(duration, attempt,
        read)``: the handler waits ``duration`` (the transaction's work), then calls
        ``commit_action``. Two plain calls rather than one generator: actions are the hot path,
        and a generator frame per message costs."""
        key = (saga, i)
        st = self.status.get(key)
        step = self._steps[i]
        pol = self._policy
        plugged = self._plugged(i, ACTION) if self.participants else None
        if plugged is None and pol.idempotent and st in (COMMITTED, COMPENSATING, RUNNING):
            what = "already committed" if st != RUNNING else "already in progress"
            self._t(
                "ignored",
                saga,
                m.source,
                i,
                m.name,
                m.msg_id,
                m.attempt,
                f"{what} (idempotent consumer)",
            )
            return ALREADY if st != RUNNING else BUSY
        if pol.barrier and (st in UNDONE if plugged is None else st == ABANDONED):
            why = {ABANDONED: "it was declared not run", ABORTED: "it already aborted"}.get(
                st, "the compensation already ran"
            )
            seq = self._t(
                "tx_refused", saga, "", i, step.action, m.msg_id, m.attempt, f"barrier: {why}"
            )
            self._journal(seq, saga, i, "refused")
            return REFUSED
        n = self.attempts.get(key, 0) + 1
        self.attempts[key] = n
        read = None
        if step.data is not None:
            read = self._read(saga, i, step.data.item, m, n)
            if isinstance(read, str):
                self._aborted(key, step)
                seq = self._t("tx_abort", saga, "", i, step.action, m.msg_id, n, read)
                self._journal(seq, saga, i, "abort")
                return FAILED
        if st is None or pol.idempotent:
            self.status[key] = RUNNING
        return (self._durations[i](self._u(SERVICE, saga, i, n)), n, read)

    def commit_action(self, saga: int, i: int, m: Message, tx: tuple) -> str:
        """Finish the transaction ``begin_action`` started: OK, FAILED or REFUSED (or ALREADY, a
        participant's skip)."""
        _, n, read = tx
        key = (saga, i)
        step = self._steps[i]
        pol = self._policy
        plugged = self._plugged(i, ACTION) if self.participants else None
        if self._triggers:
            for trig in self._triggers:
                if trig.matches("before_commit", saga, i):
                    self._crash_now(trig)
        if self._fail(saga, i, n):
            self._aborted(key, step)
            seq = self._t(
                "tx_abort", saga, "", i, step.action, m.msg_id, n, "business failure (fail_step)"
            )
            self._journal(seq, saga, i, "abort")
            return FAILED
        st = self.status.get(key)
        fenced = pol.barrier and (st in UNDONE if plugged is None else st == ABANDONED)
        if fenced:
            verdict = "refuse"
        else:
            verdict = "apply" if plugged is None else self._ask(plugged, "action", saga, i, m)
        if verdict == "skip":
            if st == RUNNING:  # nothing new committed: back to what the store holds
                if key in self.records:
                    self.status[key] = COMMITTED
                else:
                    del self.status[key]
            why = "the participant skipped it: already applied"
            self._t("ignored", saga, m.source, i, m.name, m.msg_id, n, why)
            return ALREADY
        if verdict == "refuse":
            if st == RUNNING and key not in self.records:
                del self.status[key]
            if not fenced:
                why = "the participant refused it"
            elif plugged is not None:
                why = "barrier: it was declared not run while this action was running"
            else:
                why = "barrier: the compensation ran while this action was running"
            seq = self._t("tx_refused", saga, "", i, step.action, m.msg_id, n, why)
            self._journal(seq, saga, i, "refused")
            return REFUSED
        write = None
        if read is not None:
            write = self._plan_write(saga, i, step.data, read, m, n)
            if isinstance(write, str):
                self._aborted(key, step)
                seq = self._t("tx_abort", saga, "", i, step.action, m.msg_id, n, write)
                self._journal(seq, saga, i, "abort")
                return FAILED
        record, detail = self._writers[i](saga)
        self.records[key] = record
        if st not in UNDONE:
            self.status[key] = COMMITTED
        if write is not None:
            detail = f"{detail}, {write[0]}" if detail else write[0]
        seq = self._t("tx_commit", saga, "", i, step.action, m.msg_id, n, detail)
        self._journal(seq, saga, i, "commit")
        if write is not None:
            self._apply_write(seq, saga, i, step.data.item, write)
        if self._triggers:
            for trig in self._triggers:
                if trig.matches("after_commit", saga, i):
                    self._crash_after_commit = trig
        return OK

    def fence(self, saga: int, i: int, m: Message) -> str:
        """A step with nothing to undo hears that its saga failed: if its action has not
        committed (it never ran, or it is running), record a null compensation, so that with the
        barrier on its action is refused when it comes (or reaches its commit point). OK."""
        key = (saga, i)
        st = self.status.get(key)
        if st in (COMMITTED, NULL_COMPENSATED, ABANDONED, ABORTED) or key in self.records:
            return OK
        self.status[key] = NULL_COMPENSATED
        seq = self._t(
            "comp_null",
            saga,
            "",
            i,
            "",
            m.msg_id,
            m.attempt,
            "fenced: the saga failed before this step committed (nothing to undo)",
        )
        self._journal(seq, saga, i, "comp_null")
        return OK

    def run_compensation(self, saga: int, i: int, m: Message) -> Generator:
        """Run step ``i``'s compensation for ``saga``; returns OK, FAILED, ALREADY or BUSY."""
        tx = self.begin_compensation(saga, i, m)
        if tx.__class__ is str:
            return tx
        yield self.env.timeout(tx[0])
        return self.commit_compensation(saga, i, m, tx)

    def begin_compensation(self, saga: int, i: int, m: Message) -> str | tuple:
        """The first half of ``run_compensation``, as ``begin_action``: a result, or
        ``(duration, attempt, status before)`` for ``commit_compensation``."""
        key = (saga, i)
        st = self.status.get(key)
        step = self._steps[i]
        pol = self._policy
        plugged = self._plugged(i, COMPENSATION) if self.participants else None
        done = (COMPENSATED, NULL_COMPENSATED, COMPENSATING)
        if plugged is None and pol.idempotent and st in done:
            what = "already compensated" if st != COMPENSATING else "compensation in progress"
            self._t(
                "ignored",
                saga,
                m.source,
                i,
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
            seq = self._t(
                "comp_null",
                saga,
                "",
                i,
                step.compensation,
                m.msg_id,
                m.attempt,
                "the action never ran here: nothing to undo",
            )
            self._journal(seq, saga, i, "comp_null")
            return OK
        n = self.comp_attempts.get(key, 0) + 1
        self.comp_attempts[key] = n
        self.status[key] = COMPENSATING
        return (self._comp_durations[i](self._u(COMP_SERVICE, saga, i, n)), n, st)

    def commit_compensation(self, saga: int, i: int, m: Message, tx: tuple) -> str:
        """The second half of ``run_compensation``."""
        _, n, before = tx
        key = (saga, i)
        step = self._steps[i]
        plugged = self._plugged(i, COMPENSATION) if self.participants else None
        if self._fail_comp(saga, i, n):
            self.status[key] = COMMITTED
            seq = self._t(
                "comp_fail",
                saga,
                "",
                i,
                step.compensation,
                m.msg_id,
                n,
                "compensation failed (fail_compensation)",
            )
            self._journal(seq, saga, i, "comp_fail")
            return FAILED
        verdict = "undo" if plugged is None else self._ask(plugged, "compensation", saga, i, m)
        if verdict == "skip":
            # nothing changes in the store: undo this compensation's own mark, unless another
            # transaction (a late action) changed the status meanwhile: its word stands
            if self.status.get(key) == COMPENSATING:
                if before is None:
                    del self.status[key]
                else:
                    self.status[key] = before
            why = "the participant skipped it: already undone"
            self._t("ignored", saga, m.source, i, m.name, m.msg_id, n, why)
            return ALREADY
        if verdict == "null":
            self.status[key] = NULL_COMPENSATED
            why = "the participant found nothing to undo"
            seq = self._t("comp_null", saga, "", i, step.compensation, m.msg_id, n, why)
            self._journal(seq, saga, i, "comp_null")
            return OK
        self.status[key] = COMPENSATED
        self.records.pop(key, None)
        undo = ""
        d = step.data
        if d is not None and d.change:
            cell = self.items[d.item]
            undo = f"{d.item}: {cell[0]} -> {cell[0] - d.change}"
        seq = self._t("comp_commit", saga, "", i, step.compensation, m.msg_id, n, undo)
        self._journal(seq, saga, i, "comp")
        if d is not None:
            if d.change:
                cell = self.items[d.item]
                based = cell[1]
                cell[0] -= d.change
                cell[1] += 1
                cell[2], cell[3] = saga, seq
                if self._isolation.reread:
                    self._known[(saga, d.item)] = cell[1]
                self._data_log.append(
                    (self.env.now, seq, saga, i, "undo", d.item, cell[0], cell[1], saga, seq, based)
                )
            if self.locks.get(d.item) == saga and not self._holds(saga, d.item):
                del self.locks[d.item]  # the last of the saga's changes to the item is undone
        return OK

    def _holds(self, saga: int, item: str) -> bool:
        """Whether a step of ``saga`` that touched ``item`` here still stands (committed, or its
        compensation not finished): its semantic lock must hold until that one is undone too."""
        for j, st in enumerate(self._steps):
            d = st.data
            if (
                d is not None
                and d.item == item
                and st.service == self.name
                and self.status.get((saga, j)) in (COMMITTED, COMPENSATING)
            ):
                return True
        return False


def compile_step_faults(faults: list, step_index: dict[str, int]) -> tuple[Callable, Callable]:
    """Turn fail_step and fail_compensation faults into two fast predicates.

    Both are dictionary lookups whatever the number of faults (a Monte Carlo batch names
    hundreds of sagas): ``None`` stands for "every saga".
    """
    fail_at: dict[tuple[int, int], set[int | None]] = {}
    # step -> saga (None: all) -> how many attempts fail (None: forever)
    comp_fail: dict[int, dict[int | None, int | None]] = {}
    for f in faults:
        if isinstance(f, FailStep):
            saga = None if f.saga == "all" else f.saga
            fail_at.setdefault((step_index[f.step], f.attempt), set()).add(saga)
        elif isinstance(f, FailCompensation):
            saga = None if f.saga == "all" else f.saga
            per = comp_fail.setdefault(step_index[f.step], {})
            if saga in per:
                old = per[saga]
                per[saga] = None if old is None or f.times is None else max(old, f.times)
            else:
                per[saga] = f.times

    def fail_step(saga: int, i: int, attempt: int) -> bool:
        sel = fail_at.get((i, attempt))
        return sel is not None and (None in sel or saga in sel)

    def fail_compensation(saga: int, i: int, attempt: int) -> bool:
        per = comp_fail.get(i)
        if per is None:
            return False
        for key in (None, saga):
            if key in per:
                times = per[key]
                if times is None or attempt <= times:
                    return True
        return False

    return fail_step, fail_compensation
