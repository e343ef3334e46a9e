"""Orchestration: a central coordinator walks the saga as a persisted state machine.

Per saga the coordinator runs a state machine. It enters a state for each step (``executing``) and
each compensation (``compensating``), writes every transition to its durable saga log (traced as
``state``), sends the step's command and waits for the reply with a timeout, re-sending with
exponential backoff. An abort at or before the pivot makes it compensate every committed
compensatable step, in reverse order (``policy.compensation_order: reverse``) or all at once
(``parallel``). Retriable steps after the pivot are retried until they succeed.

A step that times out for good has an ambiguous outcome: it may have run. With
``policy.query_status`` the coordinator asks its service (``querying``): if it committed, the saga
goes forward; if it never ran, the service records that (a barrier tombstone, so a late request
is refused) and the coordinator compensates the earlier steps. Without an answer it compensates
the step too (its service records a null compensation if it never ran). A command that exhausts
its retries goes to the coordinator's dead-letter queue; a compensation that keeps failing ends
the saga in ``needs_intervention``.

A coordinator crash loses what it held in memory (it interrupts every saga process and forgets the
commands it was waiting on); on restart it reads its log and resumes each unfinished saga, as a
process, from its last state, re-sending the current command (a new attempt; participants
deduplicate, so this is safe).

The happy path of a linear saga is driven by message callbacks, as a production orchestrator is:
the start request and each ``ok`` reply make the coordinator log the next state and send the next
command, with no SimPy process per saga. The first reply that is not ``ok``, or the first timeout,
hands the saga to a process of its own (``_saga``), which takes over from that result: retries,
status queries and compensation. Both paths write the same log entries and trace rows
(``Coordinator.fast_path = False`` runs every saga as a process; a property test compares them).
Sagas with parallel steps always run as processes.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import TYPE_CHECKING

import pandas as pd
import simpy

from ..world.deadlines import Deadlines
from ..world.messages import ACTION, COMPENSATION, REPLY, REQUEST, STATUS, Message
from ..world.node import Node
from ..world.service import ALREADY, BUSY, FAILED, OK, REFUSED, Service

if TYPE_CHECKING:  # pragma: no cover
    from ..scenario import Scenario
    from ..world.world import World

__all__ = ["Orchestration", "orchestration_states"]

TERMINAL = ("completed", "compensated", "needs_intervention")
TIMEOUT = "timeout"
BACKOFF = "backoff"  # a retry's backoff ran out with no reply
# Log entries that say the saga is compensating: recovery goes on undoing, never forward.
UNDOING = ("undo_plan", "compensating", "undone")


class Coordinator(Node):
    """The orchestrator node, with its durable saga log."""

    fast_path = True
    """Drive a linear saga's happy path by callbacks (False: a process per saga throughout; the
    trace is the same, a test checks it)."""

    def __init__(self, world: World):
        super().__init__(world, "coordinator")
        sc = world.scenario
        self.steps = sc.steps
        self.policy = sc.policy
        # the durable saga log: saga -> its entries (time, state, step, attempt); tuples, so the
        # garbage collector stops scanning them (10,000 sagas would leave 10,000 lists behind)
        self.log: dict[int, tuple[tuple[float, str, int, int], ...]] = {}
        self.procs: dict[int, list[simpy.Process]] = {}
        self.waiting: dict[tuple[int, int, int], simpy.Event] = {}
        self.pending: dict[int, Message] = {}  # sagas on the fast path: the command out
        self.linear = sc.is_linear
        self.preds = sc.predecessors
        # reply timeouts: every wait lasts policy.timeout (one timer for all of them)
        self._timeouts = Deadlines(
            self.env,
            self.policy.timeout,
            lambda ev: ev.succeed(TIMEOUT),
            lambda ev: not ev.triggered,
        )
        self._fast_timeouts = Deadlines(
            self.env,
            self.policy.timeout,
            self._fast_timeout,
            lambda c: self.pending.get(c.saga) is c,
        )
        world.timers += [self._timeouts, self._fast_timeouts]
        self.send = world.network.send
        self._labels: dict[tuple[str, int], str] = {}  # (state, step) -> traced state label

    def _enter(self, saga: int, state: str, i: int, attempt: int) -> None:
        self._log(saga, state, i, attempt)
        label = self._labels.get((state, i))
        if label is None:
            label = self._labels[(state, i)] = f"{state}:{self.steps[i].name}" if i >= 0 else state
        self._t("state", saga, "", i, "", 0, attempt, label)
        if state in TERMINAL:
            self.world.declare(saga, state, self.name)

    def _log(self, saga: int, state: str, i: int, attempt: int) -> None:
        """Write an entry to the saga's durable log (it survives a coordinator crash)."""
        self.log[saga] = (*self.log.get(saga, ()), (self.env.now, state, i, attempt))

    # --- messages ------------------------------------------------------------------------------

    def receive(self, m: Message) -> None:
        if m.kind == "start":
            if m.saga in self.log:
                self._t(
                    "ignored",
                    m.saga,
                    m.source,
                    -1,
                    m.name,
                    m.msg_id,
                    m.attempt,
                    "saga already started",
                )
                return
            self._enter(m.saga, "started", -1, 0)
            if self.linear and self.fast_path:
                self._command(m.saga, 0)
            elif self.linear:
                self._spawn(m.saga, self._saga(m.saga, "executing", 0, 0))
            else:
                self._spawn(m.saga, self._dag(m.saga))
            return
        c = self.pending.get(m.saga)
        if c is not None and c.step == m.step and m.phase == ACTION:
            del self.pending[m.saga]
            if m.body == OK:
                self._command(m.saga, c.step + 1)
            else:
                self._spawn(
                    m.saga, self._saga(m.saga, "executing", c.step, 0, (c.attempt, c, m.body))
                )
            return
        ev = self.waiting.get((m.saga, m.step, m.phase))
        if ev is not None and not ev.triggered:
            ev.succeed(m.body)
        else:
            self._t(
                "ignored",
                m.saga,
                m.source,
                m.step,
                m.name,
                m.msg_id,
                m.attempt,
                "stale reply: not waiting for it",
            )

    # --- the fast path: callbacks while every reply is ok ----------------------------------------

    def _command(self, saga: int, i: int) -> None:
        """Enter step ``i`` (or completion, past the last step) and send its first command."""
        if i == len(self.steps):
            self._enter(saga, "completed", -1, 0)
            return
        self._enter(saga, "executing", i, 1)
        step = self.steps[i]
        c = Message(saga, step.action, "command", self.name, step.service, i, REQUEST, ACTION, 1)
        self.send(c)
        self.pending[saga] = c
        self._fast_timeouts.add(c)

    def _fast_timeout(self, c: Message) -> None:
        """No reply to command ``c`` in time: trace it and hand the saga to its process."""
        del self.pending[c.saga]
        self._timed_out(c.saga, c.step, ACTION, c)
        self._spawn(c.saga, self._saga(c.saga, "executing", c.step, 0, (c.attempt, c, TIMEOUT)))

    def _spawn(self, saga: int, gen: Generator) -> simpy.Process:
        proc = self.env.process(gen)
        self.procs.setdefault(saga, []).append(proc)
        return proc

    # --- crash and recovery --------------------------------------------------------------------

    def _lose_work(self) -> None:
        for procs in self.procs.values():
            for proc in procs:
                if proc.is_alive:
                    proc.interrupt("crash")
        self.procs.clear()
        self.waiting.clear()
        self.pending.clear()

    def _recover(self) -> None:
        """Resume every unfinished saga from the last entry of its log.

        A linear saga's log ends in one of: ``started``, ``executing`` or ``querying`` (resume
        that step: re-send its command, a new attempt that participants deduplicate, or ask
        again), or, once compensation began (``undo_plan``, then ``compensating`` and ``undone``
        per step), an entry of the compensation: recovery undoes the steps of the plan that are
        not ``undone`` yet, in the plan's order, and never runs the saga forward again.
        """
        for saga, entries in self.log.items():
            _, state, i, attempt = entries[-1]
            if state in TERMINAL:
                continue
            if not self.linear:
                self._t("state", saga, "", -1, "", 0, 0, "recovering")
                self._spawn(saga, self._dag(saga))
                continue
            plan = [e[2] for e in entries if e[1] == "undo_plan"]
            if plan:
                undone = {e[2] for e in entries if e[1] == "undone"}
                targets = [c for c in self._targets(plan[-1]) if c not in undone]
                if state != "compensating" or self.policy.compensation_order == "parallel":
                    attempt = 0  # the next target has not been sent yet (parallel: send all)
                label = self.steps[targets[0]].name if targets else ""
                self._t("state", saga, "", -1, "", 0, attempt, f"recovering:compensating:{label}")
                self._spawn(saga, self._recover_undo(saga, targets, attempt))
                continue
            if state == "started":
                state, i, attempt = "executing", 0, 0
            step = self.steps[i].name
            self._t("state", saga, "", i, "", 0, attempt, f"recovering:{state}:{step}")
            self._spawn(saga, self._saga(saga, state, i, attempt))

    def _recover_undo(self, saga: int, targets: list[int], attempt: int) -> Generator:
        try:
            yield from self._undo(saga, targets, attempt)
        except simpy.Interrupt:
            return

    # --- the state machine -----------------------------------------------------------------------

    def _saga(
        self, saga: int, state: str, i: int, attempt: int, first: tuple | None = None
    ) -> Generator:
        """Walk the saga from ``state`` at step ``i``; ``first`` is (attempt, message, result) of
        a command the fast path already sent for step ``i``."""
        try:
            n = len(self.steps)
            while i < n:
                if state == "querying":
                    res = TIMEOUT
                else:
                    res = yield from self._invoke(saga, i, ACTION, attempt, first)
                state, attempt, first = "executing", 0, None
                if res == OK:
                    i += 1
                    continue
                if res == FAILED:  # the local transaction aborted: nothing to undo here
                    first = i - 1
                else:
                    answer = "unknown"
                    if self.policy.query_status:
                        answer = yield from self._query(saga, i)
                    if answer == "committed":
                        i += 1
                        continue
                    undo_this = answer == "unknown" and self.steps[i].undoable
                    first = i if undo_this else i - 1
                yield from self._compensate(saga, first, 0)
                return
            self._enter(saga, "completed", -1, 0)
        except simpy.Interrupt:
            return

    def _targets(self, first: int) -> list[int]:
        """The steps a linear saga undoes, from step ``first`` back, in reverse order."""
        return [c for c in range(first, -1, -1) if self.steps[c].undoable]

    def _compensate(self, saga: int, first: int, attempt: int) -> Generator:
        self._log(saga, "undo_plan", first, 0)  # durable: recovery goes on undoing from here
        yield from self._undo(saga, self._targets(first), attempt)

    def _undo(self, saga: int, targets: list[int], attempt: int) -> Generator:
        """Compensate ``targets`` (in that order, or all at once), then end the saga."""
        if self.policy.compensation_order == "parallel" and len(targets) > 1:
            children = [self._spawn(saga, self._child(saga, c)) for c in targets]
            results = yield self.env.all_of(children)
            failed = [c for c, p in zip(targets, children) if results[p] != OK]
            if failed:
                self._enter(saga, "needs_intervention", failed[0], 0)
                return
        else:
            for c in targets:
                res = yield from self._invoke(saga, c, COMPENSATION, attempt)
                attempt = 0
                if res != OK:
                    self._enter(saga, "needs_intervention", c, 0)
                    return
                self._log(saga, "undone", c, 0)
        self._enter(saga, "compensated", -1, 0)

    def _child(self, saga: int, c: int) -> Generator:
        try:
            res = yield from self._invoke(saga, c, COMPENSATION, 0)
            if res == OK:
                self._log(saga, "undone", c, 0)
            return res
        except simpy.Interrupt:
            return "interrupted"

    # --- parallel steps (the saga is a DAG) -----------------------------------------------------

    def _dag(self, saga: int) -> Generator:
        """Run every step whose predecessors committed, in parallel; on a failure, let the steps
        in flight finish, then undo what committed in reverse order of commit."""
        try:
            log = self.log[saga]
            done = [e[2] for e in log if e[1] == "done"]
            undo_too = [e[2] for e in log if e[1] == "undo_too"]
            if any(e[1] == "compensating" for e in log):  # recovering mid-compensation
                undone = {e[2] for e in log if e[1] == "undone"}
                targets = [
                    c for c in undo_too + done[::-1] if self.steps[c].undoable and c not in undone
                ]
                yield from self._undo(saga, targets, 0)
                return
            running: dict[int, simpy.Process] = {}
            failed = False
            while True:
                if not failed:
                    for j in range(len(self.steps)):
                        if (
                            j not in running
                            and j not in done
                            and all(p in done for p in self.preds[j])
                        ):
                            running[j] = self._spawn(saga, self._branch(saga, j))
                if not running:
                    break
                yield self.env.any_of(list(running.values()))
                for j, proc in list(running.items()):
                    if proc.is_alive:
                        continue
                    del running[j]
                    if proc.value == OK:
                        done.append(j)
                        self._log(saga, "done", j, 0)
                        continue
                    failed = True
                    if proc.value == "unknown" and self.steps[j].undoable:
                        undo_too.append(j)
                        self._log(saga, "undo_too", j, 0)
            if not failed:
                self._enter(saga, "completed", -1, 0)
                return
            targets = undo_too + [c for c in reversed(done) if self.steps[c].undoable]
            yield from self._undo(saga, targets, 0)
        except simpy.Interrupt:
            return

    def _branch(self, saga: int, j: int) -> Generator:
        """One step of a DAG saga: OK, FAILED (aborted), not_run or unknown."""
        try:
            res = yield from self._invoke(saga, j, ACTION, 0)
            if res in (OK, FAILED):
                return res
            answer = "unknown"
            if self.policy.query_status:
                answer = yield from self._query(saga, j)
            return OK if answer == "committed" else answer
        except simpy.Interrupt:
            return "interrupted"

    def _await(self, keys: tuple, backoff: float | None = None) -> Generator:
        """Wait for a reply about any of ``keys`` ((saga, step, phase)): for the reply timeout
        (``TIMEOUT``), or, during a retry's ``backoff``, for that long (``BACKOFF``).

        A reply for the saga's current step and phase is accepted whenever it arrives: while
        its own attempt is awaited, a later one, or the backoff between them (a reply slower
        than the timeout is still the step's answer; throwing it away made the coordinator
        compensate around a step that had committed).
        """
        ev = self.env.event()
        waiting = self.waiting
        for key in keys:
            waiting[key] = ev
        if backoff is None:
            self._timeouts.add(ev)
        else:
            self.env.timeout(backoff).callbacks.append(
                lambda _t: None if ev.triggered else ev.succeed(BACKOFF)
            )
        res = yield ev
        for key in keys:
            if waiting.get(key) is ev:
                del waiting[key]
        return res

    def _ask(self, saga: int, i: int, phase: int, m: Message) -> Generator:
        """Send ``m`` and wait for the reply about (saga, step, phase), or the timeout."""
        self.send(m)
        res = yield from self._await(((saga, i, phase),))
        if res == TIMEOUT:
            self._timed_out(saga, i, phase, m)
        return res

    def _timed_out(self, saga: int, i: int, phase: int, m: Message) -> None:
        self.world.timeouts[saga] += 1
        what = "answer" if phase == STATUS else "reply"
        self._t(
            "timeout",
            saga,
            m.target,
            i,
            m.name,
            0,
            m.attempt,
            f"no {what} within {self.policy.timeout:g}s",
        )

    def _invoke(
        self, saga: int, i: int, phase: int, attempt: int, first: tuple | None = None
    ) -> Generator:
        """Send step ``i``'s command (or compensation) until it succeeds or gives up; ``first``:
        (attempt, message, result) of an attempt already made."""
        step = self.steps[i]
        pol = self.policy
        state = "executing" if phase == ACTION else "compensating"
        name = step.action if phase == ACTION else step.compensation
        if phase == ACTION:
            limit = None if step.kind == "retriable" else pol.retries + 1
        else:
            limit = pol.compensation_retries + 1
        if attempt == 0 and first is None:
            self._enter(saga, state, i, 1)
        while True:
            if first is not None:
                attempt, m, res = first
                first = None
            else:
                attempt += 1
                if attempt > 1:
                    self._log(saga, state, i, attempt)
                m = Message(
                    saga, name, "command", self.name, step.service, i, REQUEST, phase, attempt
                )
                res = yield from self._ask(saga, i, phase, m)
            if res == OK:
                return OK
            if res != TIMEOUT and phase == ACTION and step.kind != "retriable":
                return FAILED
            if limit is not None and attempt >= limit:
                why = "no reply" if res == TIMEOUT else "failed"
                self._t(
                    "dead_letter",
                    saga,
                    step.service,
                    i,
                    name,
                    m.msg_id,
                    attempt,
                    f"{why} after {attempt} attempt(s): given up",
                )
                return res
            try:
                wait = pol.retry_delay * pol.backoff ** (attempt - 1)
            except OverflowError:  # a retriable step's ~1,000th try: past any horizon
                wait = 0.0 if pol.retry_delay == 0 else float("inf")
            self.world.retries[saga] += 1
            self._t(
                "retry",
                saga,
                step.service,
                i,
                name,
                0,
                attempt + 1,
                f"attempt {attempt + 1} after {wait:.3g}s backoff",
            )
            if wait > 0:
                late = yield from self._await(((saga, i, phase),), wait)
                if late != BACKOFF:  # an earlier attempt's reply, during the backoff: the
                    first = (attempt, m, late)  # retry announced is not sent

    def _query(self, saga: int, i: int) -> Generator:
        """Ask step ``i``'s service whether it ran: committed, not_run or unknown.

        A step reported ``running`` is waited for (asked again after a backoff, without limit):
        it is never compensated around while it runs. Only questions left unanswered count
        against ``policy.retries``, and only for a step that can be undone (its compensation
        is then sent too, which the barrier makes safe whether or not it ran); a step that
        cannot be undone (a pivot, a step with nothing to undo) is asked until its service
        answers: compensating around it while it may have committed, or may still commit,
        would end the saga with its effect standing. A late reply to the step's own command,
        arriving meanwhile, answers the question too.
        """
        step = self.steps[i]
        pol = self.policy
        patient = not step.undoable
        self._enter(saga, "querying", i, 1)
        keys = ((saga, i, STATUS), (saga, i, ACTION))
        unanswered = 0
        attempt = 0
        while True:
            attempt += 1
            m = Message(
                saga,
                f"{step.name}.status?",
                "query",
                self.name,
                step.service,
                i,
                REQUEST,
                STATUS,
                attempt,
            )
            self.send(m)
            res = yield from self._await(keys)
            if res == TIMEOUT:
                self._timed_out(saga, i, STATUS, m)
                unanswered += 1
            elif res != "running":
                break
            wait = pol.retry_delay * pol.backoff ** min(attempt - 1, 6)
            res = yield from self._await(keys, wait)
            if res == "running":  # a late answer to an earlier question: ask again now
                continue
            if res != BACKOFF:
                break
            if unanswered > pol.retries and not patient:
                return "unknown"
        if res in ("committed", OK):
            return "committed"
        return "not_run"  # not_run, or the command's own reply: it failed


_NOTES = {REFUSED: "refused by the barrier", ALREADY: "from the idempotency record"}


def _participant(steps: list) -> Callable[[Service, Message], Generator]:
    """A service's handler in orchestration: do what the command says, then reply."""
    # reply names by step and phase: (ok, failed)
    names = [
        (
            (f"{s.action}.ok", f"{s.action}.failed"),
            (f"{s.compensation}.ok", f"{s.compensation}.failed"),
        )
        for s in steps
    ]

    def handle(svc: Service, m: Message) -> Generator:
        if svc.is_duplicate(m):
            return
        i = m.step
        phase = m.phase
        if phase == STATUS:
            answer = svc.status_of(m.saga, i)
            svc.handled(m)
            svc.send(
                Message(
                    m.saga,
                    f"{steps[i].name}.status",
                    "reply",
                    svc.name,
                    "coordinator",
                    i,
                    REPLY,
                    STATUS,
                    m.attempt,
                    answer,
                    note=answer,
                )
            )
            return
        if phase == ACTION:  # the local transaction, in two calls (the hot path)
            res = svc.begin_action(m.saga, i, m)
            if res.__class__ is not str:
                yield svc.env.timeout(res[0])
                res = svc.commit_action(m.saga, i, m, res)
        else:
            res = svc.begin_compensation(m.saga, i, m)
            if res.__class__ is not str:
                yield svc.env.timeout(res[0])
                res = svc.commit_compensation(m.saga, i, m, res)
        svc.handled(m)
        if res == BUSY:
            return
        ok = res in (OK, ALREADY)
        svc.send(
            Message(
                m.saga,
                names[i][phase][0 if ok else 1],
                "reply",
                svc.name,
                "coordinator",
                i,
                REPLY,
                phase,
                m.attempt,
                OK if ok else FAILED,
                note=_NOTES.get(res, ""),
            )
        )

    return handle


class Orchestration:
    """Plugs a coordinator into the world and gives services the command handler."""

    name = "orchestration"

    def __init__(self, world: World):
        self.world = world
        self.coordinator = Coordinator(world)
        world.add_node(self.coordinator)
        handler = _participant(world.scenario.steps)
        for svc in world.services.values():
            svc.handler = handler

    def run(self) -> None:
        self.world.run("coordinator", "start_saga", "start")


def orchestration_states(scenario: Scenario) -> pd.DataFrame:
    """The coordinator's state machine for a scenario: one row per possible transition.

    Columns: ``source``, ``target``, ``label`` (what causes it). State names are those traced as
    ``state`` events: ``started``, ``executing:<step>``, ``querying:<step>``,
    ``compensating:<step>``, ``completed``, ``compensated``, ``needs_intervention``.
    """
    steps = scenario.steps
    pol = scenario.policy
    parallel = pol.compensation_order == "parallel"
    rows: list[tuple[str, str, str]] = []
    ex = [f"executing:{s.name}" for s in steps]

    def undo_target(first: int) -> str:
        targets = [c for c in range(first, -1, -1) if steps[c].undoable]
        return f"compensating:{steps[targets[0]].name}" if targets else "compensated"

    preds = scenario.predecessors
    sinks = [i for i in range(len(steps)) if not any(i in p for p in preds)]
    for i, p in enumerate(preds):
        if not p:
            rows.append(("started", ex[i], "saga requested"))
    for i, s in enumerate(steps):
        nexts = [ex[j] for j, p in enumerate(preds) if i in p]
        if i in sinks:
            nexts.append("completed")
        for nxt in nexts:
            rows.append((ex[i], nxt, f"{s.action} ok"))
        nxt = nexts[0]
        rows.append((ex[i], ex[i], "timeout: retry" if s.kind != "retriable" else "failed: retry"))
        if s.kind == "retriable":
            continue
        rows.append((ex[i], undo_target(i - 1), f"{s.action} failed"))
        if pol.query_status:
            q = f"querying:{s.name}"
            rows.append((ex[i], q, "out of retries: did it run?"))
            rows.append((q, nxt, "it committed"))
            rows.append((q, undo_target(i - 1), "it never ran"))
            rows.append((q, undo_target(i), "no answer"))
        else:
            rows.append((ex[i], undo_target(i), "out of retries"))
    for c, s in enumerate(steps):
        if not s.undoable:
            continue
        me = f"compensating:{s.name}"
        nxt = "compensated" if parallel else undo_target(c - 1)
        rows.append((me, nxt, f"{s.compensation} ok"))
        rows.append((me, me, "failed or timeout: retry"))
        rows.append((me, "needs_intervention", "out of retries"))
    return pd.DataFrame(rows, columns=["source", "target", "label"]).drop_duplicates(
        ignore_index=True
    )
