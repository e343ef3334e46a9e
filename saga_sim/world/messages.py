"""Messages that cross the network, and the codes that place them in a saga.

``step``, ``leg`` and ``phase`` say what a message is *for* in style-neutral terms: the request
that makes a service act on a step (or its compensation), or the reply/result of that act. Faults
select messages by these fields, and the network keys its random draws on them, so the message
that makes the identity service create user 3 gets the same latency in both styles.
"""

from __future__ import annotations

__all__ = ["ACTION", "COMPENSATION", "REPLY", "REQUEST", "Message"]

REQUEST = 0
REPLY = 1
ACTION = 0
COMPENSATION = 1
STATUS = 2  # a coordinator's question: did this step run?


class Message:
    """One message: a command, reply, saga start or domain event."""

    __slots__ = (
        "attempt",
        "body",
        "kind",
        "leg",
        "msg_id",
        "name",
        "note",
        "phase",
        "saga",
        "source",
        "step",
        "target",
    )

    def __init__(
        self,
        saga: int,
        name: str,
        kind: str,
        source: str,
        target: str,
        step: int,
        leg: int,
        phase: int,
        attempt: int = 1,
        body: str = "",
        msg_id: int = 0,
        note: str = "",
    ):
        self.msg_id = msg_id
        self.saga = saga
        self.name = name
        self.kind = kind
        self.source = source
        self.target = target
        self.step = step
        self.leg = leg
        self.phase = phase
        self.attempt = attempt
        self.body = body
        self.note = note

    def redelivery(self, attempt: int, note: str) -> Message:
        """The same message (same id) sent again, as a broker redelivers it."""
        return Message(
            self.saga,
            self.name,
            self.kind,
            self.source,
            self.target,
            self.step,
            self.leg,
            self.phase,
            attempt,
            self.body,
            self.msg_id,
            note,
        )

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return f"<m{self.msg_id} {self.name} {self.source}->{self.target} saga {self.saga}>"
