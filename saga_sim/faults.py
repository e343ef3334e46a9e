"""Fault models: what can go wrong in a run, one form for scenario file, CLI, app and notebooks.

A fault is a mapping with a ``kind``. Messages are chosen by ``step`` with a ``leg`` (``request``:
the message that makes the step's service act; ``reply``: the step's outcome message), and
``compensation: true`` for the compensation's messages; this works the same in both styles. In
orchestration the request is the coordinator's command and the reply the participant's answer; in
choreography the request is the broker's delivery of the triggering event and the reply the
service's published result event. ``message`` (an exact message name) and ``link``
(``"a->b"``) select style-specific messages.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "Crash",
    "CrashCoordinator",
    "Delay",
    "Drop",
    "Duplicate",
    "FailCompensation",
    "FailStep",
    "Fault",
    "MessageFault",
    "Partition",
    "describe_fault",
]

SagaSel = Annotated[int, Field(ge=1)] | Literal["all"]


class _Fault(BaseModel):
    # strict: '2' and true are not numbers (an int still passes where a float goes)
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True, strict=True)

    def applies_to(self, saga: int) -> bool:
        sel = getattr(self, "saga", "all")
        return sel == "all" or sel == saga


class FailStep(_Fault):
    """The step's local transaction aborts (a business failure) at the given attempt."""

    kind: Literal["fail_step"] = "fail_step"
    step: str
    attempt: int = Field(default=1, ge=1, le=1000)
    saga: SagaSel = "all"


class FailCompensation(_Fault):
    """The step's compensation fails ``times`` times (forever when omitted)."""

    kind: Literal["fail_compensation"] = "fail_compensation"
    step: str
    times: int | None = Field(default=None, ge=1, le=1000)
    saga: SagaSel = "all"


class Crash(_Fault):
    """A service is down for ``for`` seconds; its in-flight work is lost.

    It goes down at time ``at``, or, with ``when`` and ``step``, at a point of a local
    transaction: ``before_commit`` (the work is lost) or ``after_commit`` (the effect is in the
    store but the message that should follow is not sent yet). A trigger fires once, in the
    first saga it matches (or in ``saga``).
    """

    kind: Literal["crash"] = "crash"
    service: str
    at: float | None = Field(default=None, ge=0, le=1e7)
    when: Literal["before_commit", "after_commit"] | None = None
    step: str | None = None
    saga: SagaSel = "all"
    duration: float = Field(alias="for", gt=0, le=1e7)

    @model_validator(mode="after")
    def _time_or_trigger(self) -> Crash:
        if (self.at is None) == (self.when is None):
            raise ValueError("give either 'at' (a time) or 'when' with 'step' (a trigger)")
        if self.when is not None and self.step is None:
            raise ValueError("'when' needs the 'step' whose local transaction it interrupts")
        if self.when is None and (self.step is not None or self.saga != "all"):
            raise ValueError("'step' and 'saga' go with 'when', not with 'at'")
        return self


class CrashCoordinator(_Fault):
    """The orchestrator is down from ``at`` for ``for`` seconds; it recovers from its saga log."""

    kind: Literal["crash_coordinator"] = "crash_coordinator"
    at: float = Field(ge=0, le=1e7)
    duration: float = Field(alias="for", gt=0, le=1e7)


class MessageFault(_Fault):
    """The base of the faults that select messages (drop, duplicate, delay): by ``step`` and
    ``leg``, ``message`` or ``link``, and ``saga``."""

    message: str | None = None
    link: str | None = None
    step: str | None = None
    leg: Literal["request", "reply", "any"] = "any"
    compensation: bool = False
    saga: SagaSel = "all"

    @field_validator("link")
    @classmethod
    def _link_form(cls, v: str | None) -> str | None:
        if v is not None and (v.count("->") != 1 or not all(p.strip() for p in v.split("->"))):
            raise ValueError(f"link {v!r} must look like 'source->target'")
        return v.replace(" ", "") if v is not None else v

    @model_validator(mode="after")
    def _has_selector(self) -> MessageFault:
        if self.message is None and self.link is None and self.step is None:
            raise ValueError("name at least one of: message, link, step")
        return self

    @property
    def link_pair(self) -> tuple[str, str] | None:
        if self.link is None:
            return None
        a, b = self.link.split("->")
        return a, b


class Drop(MessageFault):
    """The first ``count`` matching messages are lost."""

    kind: Literal["drop"] = "drop"
    count: int = Field(default=1, ge=1, le=1_000_000)


class Duplicate(MessageFault):
    """The first ``count`` matching messages are delivered twice, the copy ``lag`` s later."""

    kind: Literal["duplicate"] = "duplicate"
    count: int = Field(default=1, ge=1, le=1_000_000)
    lag: float = Field(default=0.0, ge=0, le=1e7)


class Delay(MessageFault):
    """Matching messages take ``extra`` seconds longer (the first ``count``, or all)."""

    kind: Literal["delay"] = "delay"
    extra: float = Field(gt=0, le=1e7)
    count: int | None = Field(default=None, ge=1, le=1_000_000)


class Partition(_Fault):
    """No message crosses between the two sides (node names, or ``*`` for every other node)."""

    kind: Literal["partition"] = "partition"
    between: tuple[str, str] = Field(strict=False)  # a YAML list is fine here
    at: float = Field(ge=0, le=1e7)
    duration: float = Field(alias="for", gt=0, le=1e7)


Fault = Annotated[
    FailStep | FailCompensation | Crash | CrashCoordinator | Drop | Duplicate | Delay | Partition,
    Field(discriminator="kind"),
]
"""Any fault, chosen by its ``kind`` key."""

FAULT_KINDS: tuple[str, ...] = (
    "fail_step",
    "fail_compensation",
    "crash",
    "crash_coordinator",
    "drop",
    "duplicate",
    "delay",
    "partition",
)


def _message_target(f: MessageFault) -> str:
    parts = []
    if f.step is not None:
        what = "compensation " if f.compensation else ""
        leg = "" if f.leg == "any" else f" {f.leg}"
        parts.append(f"{what}{f.step}{leg}")
    if f.message is not None:
        parts.append(f"message {f.message}")
    if f.link is not None:
        parts.append(f"link {f.link}")
    sel = ", ".join(parts)
    return sel + ("" if f.saga == "all" else f" (saga {f.saga})")


def describe_fault(fault: _Fault) -> str:
    """One short human sentence for a fault, used as its label on timelines and in the CLI."""
    if isinstance(fault, FailStep):
        s = "" if fault.saga == "all" else f", saga {fault.saga}"
        return f"{fault.step} fails (attempt {fault.attempt}{s})"
    if isinstance(fault, FailCompensation):
        times = "forever" if fault.times is None else f"{fault.times}x"
        return f"compensation of {fault.step} fails {times}"
    if isinstance(fault, Crash):
        if fault.when is not None:
            where = "before" if fault.when == "before_commit" else "after"
            s = "" if fault.saga == "all" else f" (saga {fault.saga})"
            return (
                f"{fault.service} crashes {where} committing {fault.step}{s}, "
                f"down {fault.duration:g}s"
            )
        return f"{fault.service} down {fault.at:g}s-{fault.at + fault.duration:g}s"
    if isinstance(fault, CrashCoordinator):
        return f"coordinator down {fault.at:g}s-{fault.at + fault.duration:g}s"
    if isinstance(fault, Drop):
        return f"drop {fault.count}x {_message_target(fault)}"
    if isinstance(fault, Duplicate):
        return f"duplicate {fault.count}x {_message_target(fault)}"
    if isinstance(fault, Delay):
        n = "all" if fault.count is None else f"{fault.count}x"
        return f"delay {n} {_message_target(fault)} by {fault.extra:g}s"
    if isinstance(fault, Partition):
        a, b = fault.between
        return f"partition {a} | {b} {fault.at:g}s-{fault.at + fault.duration:g}s"
    return str(fault)  # pragma: no cover
