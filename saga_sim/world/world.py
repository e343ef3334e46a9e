"""The world of one run: a SimPy environment, its streams, tracer, network, nodes and faults.

A style (orchestration or choreography) adds its own nodes (a coordinator, a broker) and gives
each service its message handler; the world then starts the client's arrivals and the crash
processes, and runs the clock to the horizon.
"""

from __future__ import annotations

import math
import time
from collections import Counter
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
    from ..run import Budget
    from ..scenario import Scenario

__all__ = ["DEFAULT_TAIL", "LIVELOCK_BASE", "World"]

DEFAULT_TAIL = 60.0
"""Seconds of simulated time after the last arrival when the scenario sets no horizon."""

LIVELOCK_BASE = 20_000
"""Events at one simulated instant beyond which a run is a zero-time loop (plus an allowance
that grows with sagas, steps and retries, see ``World.max_events_per_instant``)."""

_BATCH = 1024  # events between two checks of the clock and the budget


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
        budget: Budget | None = None,
    ):
        self.scenario = scenario
        self.budget = budget
        self.stopped: str | None = None  # why the run ended before its horizon, if it did
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
        self._run_clock()

    @property
    def max_events_per_instant(self) -> int:
        """The most events one simulated instant may hold before the run counts as a zero-time
        loop: generous for sagas that legitimately all run at once (every retry at no delay)."""
        pol = self.scenario.policy
        tries = pol.retries + pol.compensation_retries + 2
        return LIVELOCK_BASE + 20 * self.n_sagas * len(self.scenario.steps) * tries

    def _run_clock(self) -> None:
        """``env.run(until=horizon)`` in batches of ``_BATCH`` events, counting between them: a
        zero-time loop or a spent budget ends the run with ``stopped`` saying why (and a note),
        not a hang. The stop event is the one ``env.run`` schedules (urgent, at the horizon), so
        the trace is the same event for event."""
        env = self.env
        stop = simpy.Event(env)
        stop._ok, stop._value = True, None
        env.schedule(stop, simpy.events.URGENT, self.horizon - env.now)
        stop.callbacks.append(simpy.core.StopSimulation.callback)
        rows = self.tracer.rows
        b = self.budget
        max_events = b.events if b is not None and b.events is not None else math.inf
        max_rows = b.rows if b is not None and b.rows is not None else math.inf
        deadline = time.perf_counter() + b.seconds if b is not None and b.seconds else math.inf
        per_instant = self.max_events_per_instant
        step = env.step
        batch = range(_BATCH)
        done, now, same = 0, -1.0, 0
        try:
            while True:
                for _ in batch:
                    step()
                done += _BATCH
                if env.now != now:  # time moved during the batch
                    now, same = env.now, 0
                else:  # every event of the batch happened at this instant
                    same += _BATCH
                    if same > per_instant:
                        return self._stop(self._livelock_finding(per_instant))
                if done >= max_events:
                    return self._stop(
                        f"the run stopped at {now:.3f} s: it used its budget of {max_events} events"
                    )
                if len(rows) > max_rows:
                    return self._stop(
                        f"the run stopped at {now:.3f} s: it used its budget of {max_rows} "
                        "trace rows"
                    )
                if time.perf_counter() > deadline:
                    return self._stop(
                        f"the run stopped at {now:.3f} s (simulated): it used its budget of "
                        f"{b.seconds:g} s of computing time"
                    )
        except simpy.core.StopSimulation:
            return None

    def _stop(self, why: str) -> None:
        self.stopped = why
        self.notes.append(why)

    def _livelock_finding(self, limit: int) -> str:
        """Say what loops, from the most common kind of event among the last rows."""
        tail = self.tracer.rows[-2000:]
        common = Counter((r[2], r[5]) for r in tail if r[5]).most_common(1)
        what = ""
        if common:
            (kind, step), _n = common[0]
            what = f" Most of the last events are {kind!r} of step {step!r}."
        pol = self.scenario.policy
        hint = (
            " A step retried with no delay (policy.retry_delay is 0) that takes no time and never "
            "succeeds loops forever: give the retry a delay, or the step or the network a duration."
            if pol.retry_delay == 0
            else " Something is rescheduled with no delay: give the step or the network a duration."
        )
        return (
            f"the run stopped at {self.env.now:.3f} s: more than {limit} events happened at this "
            f"one instant without the simulated clock moving (a zero-time loop).{what}{hint}"
        )
