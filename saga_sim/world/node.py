"""A node of the world: something with a name that messages reach, and that can crash."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from .messages import Message
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
    """The outside world that starts sagas; it never crashes."""

    def receive(self, m: Message) -> None:
        pass
