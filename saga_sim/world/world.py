"""The world of one run: a SimPy environment, its streams, tracer, network, nodes and faults.

A style (orchestration or choreography) adds its own nodes (a coordinator, a broker) and gives
each service its message handler; the world then starts the client's arrivals and the crash
processes, and runs the clock to the horizon.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
from typing import TYPE_CHECKING, Any

import simpy

from ..faults import Crash, CrashCoordinator, Partition, describe_fault
from ..trace import Tracer
from .deadlines import Deadlines
from .messages import ACTION, REQUEST, Message
from .network import Network
from .node import Client, Node
from .service import Service, compile_step_faults
from .streams import ARRIVAL, Streams

if TYPE_CHECKING:  # pragma: no cover
    from ..scenario import Scenario

__all__ = ["DEFAULT_TAIL", "World"]

DEFAULT_TAIL = 60.0
"""Seconds of simulated time after the last arrival when the scenario sets no horizon."""


class World:
    """Everything a run simulates, before a style is plugged in."""

    def __init__(
        self,
        scenario: Scenario,
        faults: tuple,
        seed: int,
        sagas: int | None = None,
        horizon: float | None = None,
        participants: Mapping[str, Any] | None = None,
    ):
        self.scenario = scenario
        self.faults = list(faults)
        self.seed = seed
        self.env = simpy.Environment()
        self.streams = Streams(seed)
        self.tracer = Tracer(self.env)
        self.step_index = {s.name: i for i, s in enumerate(scenario.steps)}
        self.durations = [s.duration.sampler() for s in scenario.steps]
        self.comp_durations = [
            (s.compensation_duration or s.duration).sampler() for s in scenario.steps
        ]
        self.fail_step, self.fail_compensation = compile_step_faults(self.faults, self.step_index)
        self.n_sagas = sagas if sagas is not None else scenario.workload.sagas
        self.arrivals = self._arrival_times()
        if horizon is None:
            horizon = scenario.horizon
        if horizon is None:
            horizon = self.arrivals[-1] + DEFAULT_TAIL
        self.horizon = float(horizon)
        self.declared: dict[int, tuple[str, float, str]] = {}
        # per-saga tallies kept while running (the sagas frame needs no pass over the trace)
        n = self.n_sagas + 1
        self.sent = [0] * n
        self.retries = [0] * n
        self.timeouts = [0] * n
        self.started = [False] * n
        # shared-item operations: (time, seq, saga, step, op, item, value, version, writer saga,
        # writer seq, based-on version); op: read | write | undo
        self.data_log: list[tuple] = []
        self.nodes: dict[str, Node] = {}
        self.network = Network(self)
        self.nodes["client"] = Client(self, "client")
        self.services: dict[str, Service] = {}
        for name, spec in scenario.services.items():
            svc = Service(self, name, spec)
            self.services[name] = svc
            self.nodes[name] = svc
        for step, behaviour in (participants or {}).items():
            i = self.step_index[step]
            self.services[scenario.steps[i].service].participants[i] = behaviour
        self.notes: list[str] = []
        self.timers: list[Deadlines] = []  # the styles' shared deadline timers

    def work(self) -> dict[str, int]:
        """What the run cost, counted (not timed): events the SimPy environment scheduled, the
        deadline timers' wake-ups and the trace rows. Tests assert these grow linearly."""
        eid = getattr(self.env, "_eid", None)  # simpy's event counter (an itertools.count)
        return {
            "events": next(eid) if eid is not None else -1,
            "timer_wakeups": sum(t.wakeups for t in self.timers),
            "rows": len(self.tracer.rows),
        }

    def _arrival_times(self) -> list[float]:
        draw = self.scenario.workload.interarrival.sampler()
        u = self.streams.u
        t = 0.0
        times = [0.0]
        for saga in range(2, self.n_sagas + 1):
            t += draw(u(ARRIVAL, saga))
            times.append(t)
        return times

    def add_node(self, node: Node) -> None:
        self.nodes[node.name] = node

    def declare(self, saga: int, state: str, by: str) -> None:
        """A participant or the coordinator says the saga has ended. The first word counts, except
        that a call for manual intervention overrides an earlier all-clear (in a choreography one
        branch can say compensated while another gives up)."""
        if saga in self.declared and state == "needs_intervention":
            self.declared[saga] = (state, self.env.now, by)
        if saga not in self.declared:
            self.declared[saga] = (state, self.env.now, by)
            if self.data_log:
                for svc in self.services.values():
                    svc.release_locks(saga)

    # --- processes -------------------------------------------------------------------------

    def _client(self, entry: str, start_name: str, kind: str) -> Generator:
        env = self.env
        send = self.network.send
        for saga, at in enumerate(self.arrivals, start=1):
            if at > env.now:
                yield env.timeout(at - env.now)
            send(Message(saga, start_name, kind, "client", entry, -1, REQUEST, ACTION))

    def _crash(self, node: Node, at: float, duration: float, label: str) -> Generator:
        yield self.env.timeout(at)
        node.crash(label)
        yield self.env.timeout(duration)
        node.restart(label)

    def schedule_restart(self, node: Node, duration: float, label: str) -> None:
        """Bring a node that a crash trigger took down back up after ``duration``."""
        self.env.timeout(duration).callbacks.append(lambda _ev: node.restart(label))

    def _partition(self, f: Partition) -> Generator:
        """Trace a partition's window (the network enforces it; this makes it visible)."""
        label = describe_fault(f)
        a, b = f.between
        yield self.env.timeout(f.at)
        self.tracer.emit("partition", 0, a, b, "", "", 0, 0, label)
        yield self.env.timeout(f.duration)
        self.tracer.emit("heal", 0, a, b, "", "", 0, 0, label)

    def run(self, entry: str, start_name: str, start_kind: str) -> None:
        """Start arrivals and crashes, then run the clock to the horizon."""
        env = self.env
        env.process(self._client(entry, start_name, start_kind))
        for f in self.faults:
            if isinstance(f, Crash) and f.at is not None:
                env.process(self._crash(self.nodes[f.service], f.at, f.duration, describe_fault(f)))
            elif isinstance(f, Partition):
                env.process(self._partition(f))
            elif isinstance(f, CrashCoordinator):
                node = self.nodes.get("coordinator")
                if node is None:
                    self.notes.append(
                        f"{describe_fault(f)}: no effect in this style, which has no coordinator"
                    )
                else:
                    env.process(self._crash(node, f.at, f.duration, describe_fault(f)))
        env.run(until=self.horizon)
