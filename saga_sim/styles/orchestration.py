"""Orchestration: a central coordinator walks the saga as a persisted state machine.

Per saga the coordinator is a SimPy process. It enters a state for each step (``executing``) and
each compensation (``compensating``), writes every transition to its durable saga log (traced as
``state``), sends the step's command and waits for the reply with a timeout, re-sending with
exponential backoff. An abort, or a step out of retries, at or before the pivot makes it
compensate every committed compensatable step in reverse order (the timed-out step included: it
may have committed, and its service records a null compensation if it did not). Retriable steps
after the pivot are retried until they succeed. A compensation that keeps failing ends the saga
in ``failed``: it needs manual intervention.

A coordinator crash interrupts every saga process; on restart it reads its log and resumes each
unfinished saga from its last state, re-sending the current command (a new attempt; participants
deduplicate, so this is safe).
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING

import pandas as pd
import simpy

from ..world.messages import ACTION, COMPENSATION, REPLY, REQUEST, Message
from ..world.node import Node
from ..world.service import ALREADY, BUSY, FAILED, OK, REFUSED, Service

if TYPE_CHECKING:  # pragma: no cover
    from ..scenario import Scenario
    from ..world.world import World

__all__ = ["Orchestration", "orchestration_states"]

TERMINAL = ("completed", "compensated", "failed")


class Coordinator(Node):
    """The orchestrator node, with its durable saga log."""

    def __init__(self, world: World):
        super().__init__(world, "coordinator")
        sc = world.scenario
        self.steps = sc.steps
        self.policy = sc.policy
        self.log: dict[int, list[tuple[float, str, int, int]]] = {}
        self.procs: dict[int, simpy.Process] = {}
        self.waiting: dict[int, tuple[int, int, simpy.Event]] = {}
        self.emit = world.tracer.emit
        self.send = world.network.send

    # --- log -----------------------------------------------------------------------------------

    def _enter(self, saga: int, state: str, i: int, attempt: int) -> None:
        self.log.setdefault(saga, []).append((self.env.now, state, i, attempt))
        step = self.steps[i].name if i >= 0 else ""
        self.emit(
            "state", saga, self.name, "", step, "", 0, attempt, f"{state}:{step}" if step else state
        )
        if state in TERMINAL:
            self.world.declare(saga, state, self.name)

    def _note_attempt(self, saga: int, state: str, i: int, attempt: int) -> None:
        self.log[saga].append((self.env.now, state, i, attempt))

    # --- messages ------------------------------------------------------------------------------

    def receive(self, m: Message) -> None:
        if m.kind == "start":
            if m.saga in self.log:
                self.emit(
                    "ignored",
                    m.saga,
                    self.name,
                    m.source,
                    "",
                    m.name,
                    m.msg_id,
                    m.attempt,
                    "saga already started",
                )
                return
            self._enter(m.saga, "started", -1, 0)
            self.procs[m.saga] = self.env.process(self._saga(m.saga, "executing", 0, 0))
            return
        w = self.waiting.get(m.saga)
        if w is not None and w[0] == m.step and w[1] == m.phase and not w[2].triggered:
            w[2].succeed(m.body)
        else:
            self.emit(
                "ignored",
                m.saga,
                self.name,
                m.source,
                self.steps[m.step].name,
                m.name,
                m.msg_id,
                m.attempt,
                "stale reply: not waiting for it",
            )

    # --- crash and recovery --------------------------------------------------------------------

    def _lose_work(self) -> None:
        for proc in list(self.procs.values()):
            if proc.is_alive:
                proc.interrupt("crash")
        self.procs.clear()
        self.waiting.clear()

    def _recover(self) -> None:
        for saga, entries in self.log.items():
            _, state, i, attempt = entries[-1]
            if state in TERMINAL:
                continue
            if state == "started":
                state, i, attempt = "executing", 0, 0
            self.emit(
                "state",
                saga,
                self.name,
                "",
                self.steps[i].name,
                "",
                0,
                attempt,
                f"recovering:{state}:{self.steps[i].name}",
            )
            self.procs[saga] = self.env.process(self._saga(saga, state, i, attempt))

    # --- the state machine -----------------------------------------------------------------------

    def _saga(self, saga: int, state: str, i: int, attempt: int) -> Generator:
        try:
            n = len(self.steps)
            if state == "executing":
                while i < n:
                    res = yield from self._invoke(saga, i, ACTION, attempt)
                    attempt = 0
                    if res == OK:
                        i += 1
                        continue
                    first = i if (res == "timeout" and self.steps[i].undoable) else i - 1
                    yield from self._compensate(saga, first, 0)
                    return
                self._enter(saga, "completed", -1, 0)
            else:
                yield from self._compensate(saga, i, attempt)
        except simpy.Interrupt:
            return
        finally:
            if self.procs.get(saga) is self.env.active_process:
                del self.procs[saga]

    def _compensate(self, saga: int, first: int, attempt: int) -> Generator:
        for c in range(first, -1, -1):
            if not self.steps[c].undoable:
                continue
            res = yield from self._invoke(saga, c, COMPENSATION, attempt)
            attempt = 0
            if res != OK:
                self._enter(saga, "failed", c, 0)
                return
        self._enter(saga, "compensated", -1, 0)

    def _invoke(self, saga: int, i: int, phase: int, attempt: int) -> Generator:
        """Send step ``i``'s command (or compensation) until it succeeds or gives up."""
        env = self.env
        step = self.steps[i]
        pol = self.policy
        state = "executing" if phase == ACTION else "compensating"
        name = step.action if phase == ACTION else step.compensation
        if phase == ACTION:
            limit = None if step.kind == "retriable" else pol.retries + 1
        else:
            limit = pol.compensation_retries + 1
        if attempt == 0:
            self._enter(saga, state, i, 1)
        while True:
            attempt += 1
            if attempt > 1:
                self._note_attempt(saga, state, i, attempt)
            self.send(
                Message(saga, name, "command", self.name, step.service, i, REQUEST, phase, attempt)
            )
            ev = env.event()
            self.waiting[saga] = (i, phase, ev)
            timer = env.timeout(pol.timeout)
            timer.callbacks.append(
                lambda _t, ev=ev: None if ev.triggered else ev.succeed("timeout")
            )
            res = yield ev
            if self.waiting.get(saga, (None, None, None))[2] is ev:
                del self.waiting[saga]
            if res == OK:
                return OK
            if res == "timeout":
                self.emit(
                    "timeout",
                    saga,
                    self.name,
                    step.service,
                    step.name,
                    name,
                    0,
                    attempt,
                    f"no reply within {pol.timeout:g}s",
                )
            elif phase == ACTION and step.kind != "retriable":
                return FAILED
            if limit is not None and attempt >= limit:
                return "timeout" if res == "timeout" else FAILED
            wait = pol.retry_delay * pol.backoff ** (attempt - 1)
            self.emit(
                "retry",
                saga,
                self.name,
                step.service,
                step.name,
                name,
                0,
                attempt + 1,
                f"attempt {attempt + 1} after {wait:.3g}s backoff",
            )
            if wait > 0:
                yield env.timeout(wait)


def _participant(svc: Service, m: Message) -> Generator:
    """A service's handler in orchestration: do what the command says, then reply."""
    if svc.is_duplicate(m):
        return
    i = m.step
    step = svc.world.scenario.steps[i]
    if m.phase == ACTION:
        res = yield from svc.run_action(m.saga, i, m)
        name = step.action
    else:
        res = yield from svc.run_compensation(m.saga, i, m)
        name = step.compensation
    svc.handled(m)
    if res == BUSY:
        return
    body = OK if res in (OK, ALREADY) else FAILED
    suffix = "ok" if body == OK else "failed"
    note = (
        "refused by the barrier"
        if res == REFUSED
        else ("from the idempotency record" if res == ALREADY else "")
    )
    svc.world.network.send(
        Message(
            m.saga,
            f"{name}.{suffix}",
            "reply",
            svc.name,
            "coordinator",
            i,
            REPLY,
            m.phase,
            m.attempt,
            body,
            note=note,
        )
    )


class Orchestration:
    """Plugs a coordinator into the world and gives services the command handler."""

    name = "orchestration"

    def __init__(self, world: World):
        self.world = world
        self.coordinator = Coordinator(world)
        world.add_node(self.coordinator)
        for svc in world.services.values():
            svc.handler = _participant

    def run(self) -> None:
        self.world.run("coordinator", "start_saga", "start")


def orchestration_states(scenario: Scenario) -> pd.DataFrame:
    """The coordinator's state machine for a scenario: one row per possible transition.

    Columns: ``source``, ``target``, ``label`` (what causes it). State names are those traced as
    ``state`` events: ``started``, ``executing:<step>``, ``compensating:<step>``, ``completed``,
    ``compensated``, ``failed``.
    """
    steps = scenario.steps
    rows: list[tuple[str, str, str]] = []
    ex = [f"executing:{s.name}" for s in steps]
    rows.append(("started", ex[0], "saga requested"))
    for i, s in enumerate(steps):
        nxt = ex[i + 1] if i + 1 < len(steps) else "completed"
        rows.append((ex[i], nxt, f"{s.action} ok"))
        rows.append((ex[i], ex[i], "timeout: retry" if s.kind != "retriable" else "failed: retry"))
        if s.kind == "retriable":
            continue
        undo_from = [c for c in range(i if s.undoable else i - 1, -1, -1) if steps[c].undoable]
        target = f"compensating:{steps[undo_from[0]].name}" if undo_from else "compensated"
        rows.append((ex[i], target, f"{s.action} failed"))
    for c, s in enumerate(steps):
        if not s.undoable:
            continue
        prev = [k for k in range(c - 1, -1, -1) if steps[k].undoable]
        nxt = f"compensating:{steps[prev[0]].name}" if prev else "compensated"
        me = f"compensating:{s.name}"
        rows.append((me, nxt, f"{s.compensation} ok"))
        rows.append((me, me, "failed or timeout: retry"))
        rows.append((me, "failed", "out of retries"))
    return pd.DataFrame(rows, columns=["source", "target", "label"]).drop_duplicates(
        ignore_index=True
    )
