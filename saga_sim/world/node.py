"""A node of the world: something with a name that messages reach, and that can crash."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from .messages import Message

if TYPE_CHECKING:  # pragma: no cover
    from .world import World

__all__ = ["Node"]


class Node:
    """Base of services, the coordinator, the broker and the client."""

    def __init__(self, world: World, name: str):
        self.world = world
        self.env = world.env
        self.name = name
        self.up = True
        self._down = 0
        self.on_restart: list[Callable[[], None]] = []
        self._rows = world.tracer.rows
        self._step_names = [st.name for st in world.scenario.steps]

    def _t(
        self,
        kind: str,
        saga: int,
        target: str,
        i: int,
        message: str,
        msg_id: int,
        attempt: int,
        detail: str = "",
    ) -> int:
        """Trace an event of this node about step ``i`` (-1: none); returns its row number."""
        rows = self._rows
        step = self._step_names[i] if i >= 0 else ""
        rows.append(
            (self.env.now, saga, kind, self.name, target, step, message, msg_id, attempt, detail)
        )
        return len(rows) - 1

    def receive(self, m: Message) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def crash(self, label: str) -> None:
        """Go down (overlapping crashes nest: the node is up again when the last one ends)."""
        self._down += 1
        if self._down == 1:
            self.up = False
            self.world.tracer.emit("crash", 0, self.name, "", "", "", 0, 0, label)
            self._lose_work()

    def restart(self, label: str) -> None:
        """Come back up and let listeners (a broker, a recovering coordinator) act."""
        self._down -= 1
        if self._down == 0:
            self.up = True
            self.world.tracer.emit("restart", 0, self.name, "", "", "", 0, 0, label)
            self._recover()
            for fn in self.on_restart:
                fn()

    def _lose_work(self) -> None:
        """Drop what is in memory; subclasses interrupt their processes here."""

    def _recover(self) -> None:
        """Rebuild from durable state; subclasses resume here."""


class Client(Node):
    """The outside world that starts sagas; it never crashes.

    Its start request is a call that either reaches the saga's entry point (the coordinator, or
    the broker) or fails visibly to the caller (the entry point is down, cut off, or the request
    was lost): a failed call is traced as ``retry`` and sent again after the policy's backoff
    (``retry_delay``, times ``backoff`` per attempt), until it is taken. A saga whose start
    never arrives by the horizon has ``started = False``.
    """

    def receive(self, m: Message) -> None:
        pass

    def call_failed(self, m: Message, why: str) -> None:
        """The start request ``m`` did not arrive: send it again after the backoff."""
        pol = self.world.scenario.policy
        wait = pol.retry_delay * pol.backoff ** min(m.attempt - 1, 20)
        again = Message(
            m.saga, m.name, m.kind, m.source, m.target, m.step, m.leg, m.phase, m.attempt + 1
        )
        self.world.retries[m.saga] += 1
        self._t(
            "retry",
            m.saga,
            m.target,
            -1,
            m.name,
            0,
            again.attempt,
            f"start request failed ({why}): again after {wait:.3g}s",
        )
        send = self.world.network.send
        self.env.timeout(wait).callbacks.append(lambda _ev: send(again))
