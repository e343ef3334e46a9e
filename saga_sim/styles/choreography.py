"""Choreography: no coordinator; services react to each other's domain events through a broker.

The event flow is derived from the same step list the orchestrator walks (``derive``):

- the service of step 0 subscribes to ``saga_requested``; the service of step i to
  ``<step i-1>.succeeded``; the service of the last step, on success, sees the saga completed;
- a step that aborts at or before the pivot publishes ``<step>.failed``; the service of the
  nearest earlier compensatable step subscribes to it, compensates, and publishes
  ``<step>.compensated``, which the service of the next earlier one listens to, and so on in
  reverse order; the service that undoes the first one (or the failing one, when nothing before
  it can be undone) sees the saga compensated;
- a retriable step after the pivot is retried by its own service, with backoff, until it commits.

Nobody owns the whole saga: each service keeps its own per-saga state, and a lost event that
nobody waits for leaves the saga stalled. The broker keeps durable subscriptions: a message for a
subscriber that is down waits for its restart, and a message not acknowledged (handled) within
``policy.redelivery`` seconds, or when its subscriber restarts, is delivered again (same message
id: the idempotent consumer ignores the copy). What the broker cannot save is an event that never
reached it: a lost publish has nobody watching.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pandas as pd

from ..world.deadlines import Deadlines
from ..world.messages import ACTION, COMPENSATION, REPLY, REQUEST, Message
from ..world.node import Node
from ..world.service import ALREADY, BUSY, FAILED, OK, Service

if TYPE_CHECKING:  # pragma: no cover
    from ..scenario import Scenario
    from ..world.world import World

__all__ = ["Choreography", "Reaction", "choreography_flow", "derive"]


@dataclass(frozen=True)
class Reaction:
    """A service's subscription: on ``topic``, do ``what`` (run or compensate) for ``step``."""

    topic: str
    service: str
    what: str  # "run" | "compensate" | "observe" (track the saga's end: no local transaction)
    step: int


def _prev_undoable(sc: Scenario, i: int) -> int | None:
    for k in range(i - 1, -1, -1):
        if sc.steps[k].undoable:
            return k
    return None


def sinks(sc: Scenario) -> tuple[int, ...]:
    """The final steps: those no other step waits for."""
    preds = sc.predecessors
    return tuple(i for i in range(len(sc.steps)) if not any(i in p for p in preds))


def coordinated_end(sc: Scenario) -> bool:
    """Whether ending the saga needs word from several branches.

    In a line compensated in reverse one participant always finishes last (the last step, or the
    one that undoes the earliest step) and declares the end itself. With parallel steps, or
    ``compensation_order: parallel``, several branches finish on their own: the end is declared
    by a participant that has heard every branch end (``expected_ends``).
    """
    return not sc.is_linear or sc.policy.compensation_order == "parallel"


def expected_ends(sc: Scenario, i: int) -> tuple[int, ...]:
    """When step ``i`` fails: the steps whose end its service waits to hear of (their
    ``compensated`` or ``compensation_failed``) before it declares the saga over.

    In a line compensated in parallel, every earlier undoable step. In a graph, every
    compensatable step that does not depend on ``i`` (a step with nothing to undo is told too:
    it may still be running in another branch, and it answers once fenced).
    """
    steps = sc.steps
    if sc.is_linear:
        return tuple(k for k in range(i) if steps[k].undoable)
    below = sc.descendants(i)
    return tuple(
        k for k, st in enumerate(steps) if k != i and k not in below and st.kind == "compensatable"
    )


def _end_observers(sc: Scenario) -> list[Reaction]:
    """The subscriptions a coordinated end needs: a final step's service hears the other final
    steps succeed; a failing step's service hears every expected branch end."""
    steps = sc.steps
    out: list[Reaction] = []
    ends = sinks(sc)
    if len(ends) > 1:
        for j in ends:
            for k in ends:
                if k != j and steps[k].service != steps[j].service:
                    out.append(
                        Reaction(f"{steps[k].name}.succeeded", steps[j].service, "observe", j)
                    )
    for i, st in enumerate(steps):
        if st.kind == "retriable":
            continue
        for k in expected_ends(sc, i):
            if steps[k].service != st.service:
                for outcome in ("compensated", "compensation_failed"):
                    out.append(Reaction(f"{steps[k].name}.{outcome}", st.service, "observe", i))
    return out


def derive(sc: Scenario) -> list[Reaction]:
    """The subscriptions that make the saga run as a choreography, in a deterministic order.

    With ``policy.compensation_order: parallel`` every earlier compensatable step listens to a
    failure directly (all undo at once) instead of to the next one's ``compensated`` event.
    """
    steps = sc.steps
    if not sc.is_linear:
        return _derive_dag(sc) + _end_observers(sc)
    parallel = sc.policy.compensation_order == "parallel"
    out = [Reaction("saga_requested", steps[0].service, "run", 0)]
    for i in range(1, len(steps)):
        out.append(Reaction(f"{steps[i - 1].name}.succeeded", steps[i].service, "run", i))
    for i, s in enumerate(steps):
        if s.kind != "retriable":
            if parallel:
                for k in range(i - 1, -1, -1):
                    if steps[k].undoable:
                        out.append(Reaction(f"{s.name}.failed", steps[k].service, "compensate", k))
            else:
                k = _prev_undoable(sc, i)
                if k is not None:
                    out.append(Reaction(f"{s.name}.failed", steps[k].service, "compensate", k))
        if s.undoable and not parallel:
            k = _prev_undoable(sc, i)
            if k is not None:
                out.append(Reaction(f"{s.name}.compensated", steps[k].service, "compensate", k))
    if parallel:
        out += _end_observers(sc)
    return out


def _nearest_undoable_below(sc: Scenario, k: int) -> tuple[int, ...]:
    """The undoable steps that wait on ``k`` with no undoable step in between."""
    preds = sc.predecessors
    out: list[int] = []
    frontier = [j for j in range(k + 1, len(sc.steps)) if k in preds[j]]
    seen: set[int] = set()
    while frontier:
        j = frontier.pop(0)
        if j in seen:
            continue
        seen.add(j)
        if sc.steps[j].undoable:
            out.append(j)
        else:
            frontier += [x for x in range(j + 1, len(sc.steps)) if j in preds[x]]
    return tuple(sorted(out))


def _derive_dag(sc: Scenario) -> list[Reaction]:
    """Subscriptions for a saga with parallel steps.

    A step runs when it has seen every predecessor's ``succeeded`` event (a join). A failure is
    heard by every step that can be undone and does not depend on the failed one: each undoes
    itself once the undoable steps that depended on it have announced ``compensated`` (a step
    that never ran announces it too, as a null compensation), so compensation still runs in
    reverse order along every branch.
    """
    steps = sc.steps
    preds = sc.predecessors
    out: list[Reaction] = []
    for j, st in enumerate(steps):
        for p in preds[j]:
            out.append(Reaction(f"{steps[p].name}.succeeded", st.service, "run", j))
        if not preds[j]:
            out.append(Reaction("saga_requested", st.service, "run", j))
    for i, st in enumerate(steps):
        if st.kind == "retriable":
            continue
        below = sc.descendants(i)
        for k, other in enumerate(steps):
            # (a step with nothing to undo hears it too: it fences itself, see _react_dag)
            if other.kind == "compensatable" and k not in below:
                out.append(Reaction(f"{st.name}.failed", other.service, "compensate", k))
    for c, st in enumerate(steps):
        if not st.undoable:
            continue
        for k, other in enumerate(steps[:c]):
            if other.undoable and c in _nearest_undoable_below(sc, k):
                out.append(Reaction(f"{st.name}.compensated", other.service, "compensate", k))
    return out


def choreography_flow(scenario: Scenario) -> pd.DataFrame:
    """The derived event flow: one row per (event, publisher, subscriber) edge.

    Columns: ``topic``, ``publisher``, ``subscriber``, ``reaction`` (``run <step>`` /
    ``compensate <step>``), ``path`` (``forward`` / ``failure`` / ``compensation``).
    """
    steps = scenario.steps
    rows = []
    for r in derive(scenario):
        if r.topic == "saga_requested":
            pub, path = "client", "forward"
        else:
            name, outcome = r.topic.rsplit(".", 1)
            pub = steps[scenario.step_index(name)].service
            path = {"succeeded": "forward", "failed": "failure"}.get(outcome, "compensation")
        if r.what == "observe":
            reaction = f"track the end (after {steps[r.step].name})"
        elif r.what == "compensate" and not steps[r.step].undoable:
            reaction = f"fence {steps[r.step].name}"
        else:
            reaction = f"{r.what} {steps[r.step].name}"
        rows.append((r.topic, pub, r.service, reaction, path))
    return pd.DataFrame(rows, columns=["topic", "publisher", "subscriber", "reaction", "path"])


_FROM_RECORD = "from the idempotency record"


class Broker(Node):
    """Publish/subscribe with durable subscriptions and redelivery of unacknowledged messages."""

    def __init__(self, world: World, reactions: list[Reaction]):
        super().__init__(world, "broker")
        self.subs: dict[str, list[Reaction]] = {}
        for r in reactions:
            self.subs.setdefault(r.topic, []).append(r)
        self.unacked: dict[str, dict[int, Message]] = {name: {} for name in world.services}
        self.send = world.network.send
        wait = world.scenario.policy.redelivery
        self._redelivery = (
            None if wait is None else Deadlines(self.env, wait, self._overdue, self._pending)
        )
        if self._redelivery is not None:
            world.timers.append(self._redelivery)
        for name, svc in world.services.items():
            svc.on_restart.append(lambda name=name: self._redeliver(name))

    def receive(self, m: Message) -> None:
        for r in self.subs.get(m.name, ()):
            phase = ACTION if r.what == "run" else COMPENSATION
            svc = self.world.services[r.service]
            if svc.up:
                d = Message(m.saga, m.name, "event", self.name, r.service, r.step, REQUEST, phase)
                self.send(d)
                self._watch(d)
            else:
                # Held for a subscriber that is down: it gets its id now and is sent on restart.
                net = self.world.network
                net.next_id += 1
                d = Message(
                    m.saga,
                    m.name,
                    "event",
                    self.name,
                    r.service,
                    r.step,
                    REQUEST,
                    phase,
                    0,
                    "",
                    net.next_id,
                )
            self.unacked[r.service][d.msg_id] = d

    def _watch(self, d: Message) -> None:
        """Redeliver ``d`` if it is still unacknowledged after the redelivery timeout."""
        if self._redelivery is not None:
            self._redelivery.add(d)

    def _pending(self, d: Message) -> bool:
        return self.unacked[d.target].get(d.msg_id) is d

    def _overdue(self, d: Message) -> None:
        pending = self.unacked[d.target]
        if pending.get(d.msg_id) is not d or not self.world.services[d.target].up:
            return  # acknowledged, already redelivered, or waiting for a restart
        self._again(d, "redelivered: not acknowledged in time")

    def _again(self, d: Message, note: str) -> None:
        pending = self.unacked[d.target]
        if d.attempt > self.world.scenario.policy.max_redeliveries:
            del pending[d.msg_id]
            step = self.world.scenario.steps[d.step].name
            self.world.tracer.rows.append(
                (
                    self.env.now,
                    d.saga,
                    "dead_letter",
                    self.name,
                    d.target,
                    step,
                    d.name,
                    d.msg_id,
                    d.attempt,
                    f"not acknowledged after {d.attempt} deliveries: dead-letter queue",
                )
            )
            return
        again = d.redelivery(d.attempt + 1, note)
        pending[d.msg_id] = again
        self.send(again)
        self._watch(again)

    def ack(self, service: str, msg_id: int) -> None:
        self.unacked[service].pop(msg_id, None)

    def _redeliver(self, service: str) -> None:
        pending = self.unacked[service]
        for msg_id in sorted(pending):
            d = pending[msg_id]
            note = "redelivered after restart" if d.attempt else f"held while {service} was down"
            self._again(d, note)


class Choreography:
    """Plugs a broker into the world and gives each service its derived reactions."""

    name = "choreography"

    def __init__(self, world: World):
        self.world = world
        sc = world.scenario
        self.reactions = derive(sc)
        self.broker = Broker(world, self.reactions)
        world.add_node(self.broker)
        self.by_topic: dict[tuple[str, str], list[Reaction]] = {}
        for r in self.reactions:
            self.by_topic.setdefault((r.topic, r.service), []).append(r)
        self.prev_undoable = [_prev_undoable(sc, i) for i in range(len(sc.steps))]
        self.topics = [(f"{s.name}.succeeded", f"{s.name}.failed") for s in sc.steps]
        self.linear = sc.is_linear
        n = len(sc.steps)
        self.step_of = {st.name: i for i, st in enumerate(sc.steps)}
        self.sinks = set(sinks(sc))
        self.below = [sc.descendants(i) for i in range(n)]
        self.waits_for = [_nearest_undoable_below(sc, k) for k in range(n)]
        # Who declares the end (see coordinated_end): with several final steps, a final step's
        # service once it knows every final step committed; with several branches to undo, the
        # failing step's service once it heard every expected branch end.
        self.coordinated = coordinated_end(sc)
        self.several_sinks = len(self.sinks) > 1
        self.expect = [expected_ends(sc, i) for i in range(n)]
        # each service's own per-saga view (durable, in its database): (service, saga) -> ...
        self.sinks_seen: dict[tuple[str, int], set[int]] = {}
        self.origins: dict[tuple[str, int], list[int]] = {}  # steps of it that failed
        self.ended: dict[tuple[str, int], set[int]] = {}  # branches heard compensated
        self.gave_up: dict[tuple[str, int], set[int]] = {}  # compensations given up
        self.over: set[tuple[str, int]] = set()  # this service declared the end
        self.fenced: set[tuple[int, int]] = set()  # (saga, step) with nothing to undo, fenced
        if not self.linear:
            self.preds = sc.predecessors
            self.joined: dict[tuple[int, int], set[int]] = {}
            self.failure: dict[tuple[str, int], int] = {}
            self.undone_seen: dict[tuple[str, int], set[int]] = {}
        handler = self._handle
        for svc in world.services.values():
            svc.handler = handler

    def run(self) -> None:
        self.world.run("broker", "saga_requested", "event")

    def _publish(
        self,
        svc: Service,
        saga: int,
        topic: str,
        i: int,
        phase: int,
        attempt: int,
        note: str = "",
    ) -> None:
        svc.send(
            Message(saga, topic, "event", svc.name, "broker", i, REPLY, phase, attempt, note=note)
        )

    def _declare(self, svc: Service, saga: int, state: str, i: int = -1) -> None:
        step = svc.world.scenario.steps[i].name if i >= 0 else ""
        svc.world.tracer.emit("state", saga, svc.name, "", step, "", 0, 0, state)
        svc.world.declare(saga, state, svc.name)

    def _handle(self, svc: Service, m: Message) -> Generator:
        dup = svc.is_duplicate(m)
        if dup is not None:
            # Acknowledge only an outcome that is durable: a copy of a message another worker is
            # still handling is left unacknowledged (that worker acknowledges it; if a crash loses
            # its work, the broker redelivers it after the restart).
            if dup == "handled":
                self.broker.ack(svc.name, m.msg_id)
            return
        busy = False
        for r in self.by_topic.get((m.name, svc.name), ()):
            if r.what == "observe":
                self._observe(svc, m.saga, m.name)
                continue
            if not self.linear:
                res = yield from self._react_dag(svc, m, r)
            elif r.what == "run":
                res = yield from self._run_step(svc, m, r.step)
            else:
                res = yield from self._compensate(svc, m, r.step)
            busy = busy or res == BUSY
        if not busy:  # a copy of work in progress elsewhere: that handler will acknowledge
            svc.handled(m)
            self.broker.ack(svc.name, m.msg_id)

    def _backoff(self, svc: Service, saga: int, i: int, name: str, attempt: int) -> Generator:
        pol = svc.world.scenario.policy
        try:
            wait = pol.retry_delay * pol.backoff ** (attempt - 1)
        except OverflowError:  # a retriable step's ~1,000th try: past any horizon
            wait = 0.0 if pol.retry_delay == 0 else float("inf")
        svc.world.retries[saga] += 1
        svc.world.tracer.emit(
            "retry",
            saga,
            svc.name,
            svc.name,
            svc.world.scenario.steps[i].name,
            name,
            0,
            attempt + 1,
            f"local retry {attempt + 1} after {wait:.3g}s",
        )
        if wait > 0:
            yield svc.env.timeout(wait)

    def _run_step(self, svc: Service, m: Message, i: int) -> Generator:
        sc = svc.world.scenario
        step = sc.steps[i]
        saga = m.saga
        tries = 0
        while True:
            tries += 1
            res = svc.begin_action(saga, i, m)  # the local transaction, in two calls
            if res.__class__ is not str:
                yield svc.env.timeout(res[0])
                res = svc.commit_action(saga, i, m, res)
            if res == OK:
                try:
                    self._publish(svc, saga, self.topics[i][0], i, ACTION, tries)
                finally:
                    # The end of the saga is part of the transaction's durable outcome: a crash
                    # between the commit and the publish (which interrupts here) keeps it.
                    if i in self.sinks:
                        if self.several_sinks:
                            self.sinks_seen.setdefault((svc.name, saga), set()).add(i)
                            self._check_end(svc, saga)
                        else:
                            self._declare(svc, saga, "completed")
                return res
            if res == ALREADY:  # a redelivered trigger: answer it from the record
                self._publish(svc, saga, self.topics[i][0], i, ACTION, tries, _FROM_RECORD)
                return res
            if res != FAILED:  # BUSY (the worker on it publishes), REFUSED: nothing to publish
                return res
            if step.kind == "retriable":
                yield from self._backoff(svc, saga, i, step.action, tries)
                continue
            if self.coordinated:
                self.origins.setdefault((svc.name, saga), []).append(i)
            self._publish(svc, saga, self.topics[i][1], i, ACTION, tries)
            if self.coordinated:
                self._check_end(svc, saga)
            elif self.prev_undoable[i] is None:  # nothing before it to undo
                self._declare(svc, saga, "compensated")
            return res

    def _compensate(self, svc: Service, m: Message, c: int) -> Generator:
        sc = svc.world.scenario
        step = sc.steps[c]
        saga = m.saga
        tries = 0
        while True:
            tries += 1
            if step.undoable:
                res = yield from svc.run_compensation(saga, c, m)
            elif (saga, c) in self.fenced:  # told by a second failure: already answered
                return ALREADY
            else:
                self.fenced.add((saga, c))
                res = svc.fence(saga, c, m)
            if res == OK:
                self._publish(svc, saga, f"{step.name}.compensated", c, COMPENSATION, tries)
                if self.coordinated:
                    self.ended.setdefault((svc.name, saga), set()).add(c)
                    self._check_end(svc, saga)
                elif self.prev_undoable[c] is None:  # the earliest step: the chain's end
                    self._declare(svc, saga, "compensated")
                return res
            if res == ALREADY and step.undoable:  # answer a redelivered trigger from the record
                topic = f"{step.name}.compensated"
                self._publish(svc, saga, topic, c, COMPENSATION, tries, _FROM_RECORD)
                return res
            if res != FAILED:  # ALREADY or BUSY
                return res
            if tries > sc.policy.compensation_retries:
                svc.world.tracer.emit(
                    "dead_letter",
                    saga,
                    svc.name,
                    "",
                    step.name,
                    m.name,
                    m.msg_id,
                    tries,
                    f"compensation {step.compensation} failed {tries} times: given up",
                )
                if self.coordinated:  # other branches may still be undoing: the end waits
                    self.gave_up.setdefault((svc.name, saga), set()).add(c)
                    topic = f"{step.name}.compensation_failed"
                    self._publish(svc, saga, topic, c, COMPENSATION, tries)
                    self._check_end(svc, saga)
                else:  # a line undone in reverse: nothing else runs
                    self._declare(svc, saga, "needs_intervention", c)
                return res
            yield from self._backoff(svc, saga, c, step.compensation, tries)

    def _react_dag(self, svc: Service, m: Message, r: Reaction) -> Generator:
        """A service's reaction in a saga with parallel steps: joins and failure handling."""
        saga = m.saga
        if r.what == "run":
            seen = self.joined.setdefault((saga, r.step), set())
            if m.name != "saga_requested":
                seen.add(self.step_of[m.name.rsplit(".", 1)[0]])
            if not all(p in seen for p in self.preds[r.step]):
                return OK  # waiting for the other branches
            return (yield from self._run_step(svc, m, r.step))
        key = (svc.name, saga)
        name, outcome = m.name.rsplit(".", 1)
        idx = self.step_of[name]
        if outcome == "failed":
            self.failure.setdefault(key, idx)
        else:
            self.undone_seen.setdefault(key, set()).add(idx)
        failed = self.failure.get(key)
        if failed is None:
            return OK  # a compensation heard before the failure itself
        k = r.step
        if not self.world.scenario.steps[k].undoable:  # nothing to undo: fence it at once
            return (yield from self._compensate(svc, m, k))
        waiting = [
            c
            for c in self.waits_for[k]
            if c not in self.below[failed] and c not in self.undone_seen.get(key, ())
        ]
        if waiting:
            return OK  # steps that depend on this one are not undone yet
        return (yield from self._compensate(svc, m, k))

    # --- the end of a saga with several branches ------------------------------------------------

    def _observe(self, svc: Service, saga: int, topic: str) -> None:
        """A branch's end, heard by a service that may declare the saga's end."""
        name, outcome = topic.rsplit(".", 1)
        k = self.step_of[name]
        key = (svc.name, saga)
        if outcome == "succeeded":
            self.sinks_seen.setdefault(key, set()).add(k)
        elif outcome == "compensated":
            self.ended.setdefault(key, set()).add(k)
        else:
            self.gave_up.setdefault(key, set()).add(k)
        self._check_end(svc, saga)

    def _check_end(self, svc: Service, saga: int) -> None:
        """Declare the saga over if this service knows every branch ended."""
        key = (svc.name, saga)
        if key in self.over:
            return
        seen = self.sinks_seen.get(key)
        if seen is not None and self.sinks <= seen:
            self.over.add(key)
            self._declare(svc, saga, "completed")
            return
        origins = self.origins.get(key)
        if not origins:
            return
        ended = self.ended.get(key, set())
        gave_up = self.gave_up.get(key, set())
        for i in origins:
            below = self.below[i]

            def cut(k: int, below: frozenset[int] = below) -> bool:
                # a compensation that waits for one given up (or cut) will never run
                return any(c in gave_up or cut(c) for c in self.waits_for[k] if c not in below)

            if all(k in ended or k in gave_up or cut(k) for k in self.expect[i]):
                self.over.add(key)
                failed = [k for k in self.expect[i] if k in gave_up]
                if failed:
                    self._declare(svc, saga, "needs_intervention", failed[0])
                else:
                    self._declare(svc, saga, "compensated")
                return
