"""Deadlines that all lie the same delay ahead, served by one SimPy timer.

A coordinator's reply timeouts and a broker's redelivery timeouts each last a fixed time, so
their deadlines arrive in the order they are set. Instead of one SimPy timeout per request
(most requests are answered long before their deadline), one timer sleeps until the earliest
deadline that still matters; entries that no longer matter are dropped when it wakes.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

import simpy

__all__ = ["Deadlines"]


class Deadlines:
    """Calls ``expire(item)`` ``delay`` seconds after ``add(item)``, unless ``live(item)`` is
    false by then."""

    __slots__ = ("_delay", "_env", "_expire", "_live", "_queue", "_sleeping", "wakeups")

    def __init__(
        self,
        env: simpy.Environment,
        delay: float,
        expire: Callable[[Any], None],
        live: Callable[[Any], bool],
    ):
        self._env = env
        self._delay = delay
        self._expire = expire
        self._live = live
        self._queue: deque[tuple[float, Any]] = deque()
        self._sleeping = False
        self.wakeups = 0
        """How many times the timer woke (work, for tests that count it)."""

    def add(self, item: Any) -> None:
        """Start the clock for ``item``."""
        deadline = self._env.now + self._delay
        self._queue.append((deadline, item))
        if not self._sleeping:
            self._sleep_until(deadline)

    def _sleep_until(self, deadline: float) -> None:
        self._sleeping = True
        self._env.timeout(deadline - self._env.now).callbacks.append(self._wake)

    def _wake(self, _timer: simpy.Event) -> None:
        # ``_sleeping`` stays true while the queue is served: an ``expire`` that adds a deadline
        # (a broker re-arming a redelivery) only queues it, and this loop sets the one next timer.
        # (Clearing it first let every such add start a second timer: wake-ups grew with the
        # square of the load.)
        self.wakeups += 1
        now = self._env.now
        queue = self._queue
        while queue:
            deadline, item = queue[0]
            if not self._live(item):
                queue.popleft()
            elif deadline <= now:
                queue.popleft()
                self._expire(item)
            else:
                self._env.timeout(deadline - now).callbacks.append(self._wake)
                return
        self._sleeping = False
