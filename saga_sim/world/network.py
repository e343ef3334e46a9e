"""The network: latency, loss, duplication, partitions and message faults between named nodes.

Every send becomes a SimPy timeout whose callback delivers the message to its target node; a
message is traced when sent, and again when delivered, dropped or duplicated. Latencies are
drawn per message from the run's streams, so messages overtake each other when jitter says so.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import simpy

from ..faults import Delay, Drop, Duplicate, Partition, describe_fault
from .messages import COMPENSATION, REPLY, REQUEST, Message
from .streams import DUPLICATE, LATENCY, LOSS

if TYPE_CHECKING:  # pragma: no cover
    from .world import World

__all__ = ["Network"]

_LEG = {"request": REQUEST, "reply": REPLY}


class _MessageRule:
    """A drop/duplicate/delay fault compiled for fast matching, with its remaining count."""

    __slots__ = ("fault", "label", "leg", "link", "name", "phase", "remaining", "saga", "step")

    def __init__(self, fault: Drop | Duplicate | Delay, step_index: dict[str, int]):
        self.fault = fault
        self.label = describe_fault(fault)
        self.remaining = fault.count  # None: unlimited (delay only)
        self.step = step_index[fault.step] if fault.step is not None else None
        self.leg = _LEG.get(fault.leg)
        self.phase = COMPENSATION if fault.compensation else None
        if fault.step is not None and not fault.compensation:
            self.phase = 0
        self.name = fault.message
        self.link = fault.link_pair
        self.saga = None if fault.saga == "all" else fault.saga

    def matches(self, m: Message) -> bool:
        if self.remaining is not None and self.remaining <= 0:
            return False
        if self.saga is not None and m.saga != self.saga:
            return False
        if self.step is not None and (m.step != self.step or m.phase != self.phase):
            return False
        if self.leg is not None and self.step is not None and m.leg != self.leg:
            return False
        if self.name is not None and m.name != self.name:
            return False
        if self.link is not None:
            a, b = self.link
            if (a != "*" and a != m.source) or (b != "*" and b != m.target):
                return False
        return True

    def use(self) -> None:
        if self.remaining is not None:
            self.remaining -= 1


class Network:
    """Delivers messages between the world's nodes."""

    def __init__(self, world: World):
        self.world = world
        self.env = world.env
        self.rows = world.tracer.rows
        self.nodes = world.nodes
        self.u = world.streams.u
        net = world.scenario.network
        self.latency = net.latency.sampler()
        self.loss = net.loss
        self.dup = net.duplicate
        self.next_id = 0
        self.sent_per_saga = world.sent
        self.started = world.started
        idx = world.step_index
        self.drops = [_MessageRule(f, idx) for f in world.faults if isinstance(f, Drop)]
        self.dups = [_MessageRule(f, idx) for f in world.faults if isinstance(f, Duplicate)]
        self.delays = [_MessageRule(f, idx) for f in world.faults if isinstance(f, Delay)]
        self.partitions = [
            (f.between[0], f.between[1], f.at, f.at + f.duration, describe_fault(f))
            for f in world.faults
            if isinstance(f, Partition)
        ]
        self.step_names = [s.name for s in world.scenario.steps]
        self.relay = world.scenario.policy.outbox  # publisher acknowledgements (see _lost)
        # the message rides on its latency timeout as its value; callbacks bound once
        self._on_arrival = self._arrival
        self._on_second_arrival = self._second_arrival
        self.plain = not (
            self.partitions or self.drops or self.dups or self.delays or self.loss or self.dup
        )

    # ---------------------------------------------------------------------------------------

    def _cut(self, src: str, dst: str) -> str | None:
        now = self.env.now
        for a, b, start, end, label in self.partitions:
            if start <= now < end and (
                ((a == "*" or a == src) and (b == "*" or b == dst))
                or ((a == "*" or a == dst) and (b == "*" or b == src))
            ):
                return label
        return None

    def _trace(self, kind: str, m: Message, detail: str) -> None:
        step = self.step_names[m.step] if m.step >= 0 else ""
        self.rows.append(
            (
                self.env.now,
                m.saga,
                kind,
                m.source,
                m.target,
                step,
                m.name,
                m.msg_id,
                m.attempt,
                detail,
            )
        )

    def send(self, m: Message) -> None:
        """Put a message on the network (it gets an id unless it is a redelivery)."""
        if m.msg_id == 0:
            self.next_id += 1
            m.msg_id = self.next_id
        self.sent_per_saga[m.saga] += 1
        if self.plain:  # no faults, no loss, no duplication: the common case, kept short
            saga, i, attempt = m.saga, m.step, m.attempt
            self.rows.append(
                (
                    self.env.now,
                    saga,
                    "send",
                    m.source,
                    m.target,
                    self.step_names[i] if i >= 0 else "",
                    m.name,
                    m.msg_id,
                    attempt,
                    m.note,
                )
            )
            delay = self.latency(self.u(LATENCY, saga, i, m.leg, m.phase, attempt, 0))
            self.env.timeout(delay, m).callbacks.append(self._on_arrival)
            return
        trace = self._trace
        trace("send", m, m.note)
        if self.partitions:
            cut = self._cut(m.source, m.target)
            if cut is not None:
                self._lost(m, f"partition ({cut})")
                return
        for rule in self.drops:
            if rule.matches(m):
                rule.use()
                self._lost(m, f"fault: {rule.label}")
                return
        saga, step, leg, phase, attempt = m.saga, m.step, m.leg, m.phase, m.attempt
        u = self.u
        reliable = m.source == "client"  # the start request is an RPC: random loss is a failed
        # call, which the client retries; it is not drawn, so both styles start alike
        if self.loss and not reliable and u(LOSS, saga, step, leg, phase, attempt) < self.loss:
            self._lost(m, "lost by the network")
            return
        extra = 0.0
        for rule in self.delays:
            if rule.matches(m):
                rule.use()
                extra += rule.fault.extra
        delay = self.latency(u(LATENCY, saga, step, leg, phase, attempt, 0)) + extra
        self.env.timeout(delay, m).callbacks.append(self._on_arrival)
        duplicated = None
        lag = 0.0
        for rule in self.dups:
            if rule.matches(m):
                rule.use()
                duplicated = f"fault: {rule.label}"
                lag = rule.fault.lag
                break
        if (
            duplicated is None
            and not reliable
            and self.dup
            and u(DUPLICATE, saga, step, leg, phase, attempt) < self.dup
        ):
            duplicated = "duplicated by the network"
        if duplicated is not None:
            trace("duplicate", m, duplicated)
            delay = self.latency(u(LATENCY, saga, step, leg, phase, attempt, 1)) + extra + lag
            self.env.timeout(delay, m).callbacks.append(self._on_second_arrival)

    def _arrival(self, ev: simpy.Timeout) -> None:
        m = ev.value
        node = self.nodes[m.target]
        if self.plain and node.up:  # the common case, kept short
            i = m.step
            self.rows.append(
                (
                    self.env.now,
                    m.saga,
                    "deliver",
                    m.source,
                    m.target,
                    self.step_names[i] if i >= 0 else "",
                    m.name,
                    m.msg_id,
                    m.attempt,
                    m.note,
                )
            )
            if m.source == "client":
                self.started[m.saga] = True
            node.receive(m)
            return
        self._arrive(m, 0)

    def _second_arrival(self, ev: simpy.Timeout) -> None:
        self._arrive(ev.value, 1)

    def _lost(self, m: Message, why: str) -> None:
        """Trace a lost message. The client's start request is retried (see ``Client``); an
        event a service publishes is published again by its outbox relay, with the outbox on
        (see ``Service.unacknowledged``)."""
        self._trace("drop", m, why)
        if m.source == "client":
            self.nodes["client"].call_failed(m, why)
        elif m.target == "broker" and self.relay:
            self.nodes[m.source].unacknowledged(m)

    def _arrive(self, m: Message, copy: int) -> None:
        node = self.nodes[m.target]
        if self.partitions:
            cut = self._cut(m.source, m.target)
            if cut is not None:
                self._lost(m, f"partition ({cut})")
                return
        if not node.up:
            self._lost(m, f"{m.target} is down")
            return
        self._trace("deliver", m, "second copy" if copy else m.note)
        if m.source == "client":
            self.started[m.saga] = True
        node.receive(m)
