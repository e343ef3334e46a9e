"""One-click failure presets, derived from a scenario's own steps and services.

Each preset is a short list of faults (YAML flow mappings, the same form as everywhere else)
aimed at the scenario's first compensatable step, its pivot (or last step) and their services,
plus a sentence on what the theory predicts, so a class can guess before it clicks.
"""

from __future__ import annotations

from dataclasses import dataclass

from .scenario import Scenario

__all__ = ["Preset", "presets"]


@dataclass(frozen=True)
class Preset:
    """A named fault plan for one scenario."""

    key: str
    label: str
    faults: tuple[str, ...]
    lesson: str


def _service_label(sc: Scenario, name: str) -> str:
    """The service's description when it names the service ("identity provider"), else its
    name."""
    desc = sc.services[name].description.split(";")[0].strip()
    return desc if desc and name in desc and len(desc) <= 28 else name


def presets(scenario: Scenario) -> tuple[Preset, ...]:
    """The failure presets for a scenario, happy path first.

    Targets: the first step that has something to undo (its service is the one that goes down or
    gets cut off), and the pivot step (else the last step) as the step that fails for good.
    """
    steps = scenario.steps
    undo = next((s for s in steps if s.undoable), None)
    pivot_i = scenario.pivot_index
    late = steps[pivot_i] if pivot_i is not None else steps[-1]
    out = [
        Preset(
            "happy",
            "No failure",
            (),
            "Every step commits: both styles complete; they differ only in messages and timing.",
        ),
        Preset(
            "late_step_fails",
            f"{late.name} step fails",
            (f"{{kind: fail_step, step: {late.name}}}",),
            f"{late.name} aborts: every committed compensatable step before it is undone, in "
            "reverse order. Both styles end compensated.",
        ),
        Preset(
            "first_step_fails",
            f"{steps[0].name} step fails",
            (f"{{kind: fail_step, step: {steps[0].name}}}",),
            "The very first step aborts: nothing has been committed yet, nothing to undo.",
        ),
    ]
    if undo is not None:
        svc = undo.service
        label = _service_label(scenario, svc)
        out += [
            Preset(
                "service_down",
                f"{label} down",
                (f"{{kind: crash, service: {svc}, at: 0.01, for: 2.0}}",),
                f"{svc} is down for 2 s. The orchestrator times out, retries, gives up and "
                "compensates; in choreography the broker keeps the event until the service "
                "comes back, and the saga completes late.",
            ),
            Preset(
                "reply_lost",
                f"{undo.name} reply lost",
                (f"{{kind: drop, step: {undo.name}, leg: reply}}",),
                f"{undo.name} commits but its reply is lost. The orchestrator times out and asks "
                "again (the idempotent service answers from its record); in choreography nobody "
                "waits for the lost event, so the saga stalls.",
            ),
            Preset(
                "compensation_fails",
                "compensation keeps failing",
                (
                    f"{{kind: fail_step, step: {late.name}}}",
                    f"{{kind: fail_compensation, step: {undo.name}}}",
                ),
                f"{late.name} fails and the compensation of {undo.name} fails every time: after "
                "its retries the saga is left inconsistent, in both styles, and reported.",
            ),
            Preset(
                "partition",
                f"network partition around {svc}",
                (f'{{kind: partition, between: [{svc}, "*"], at: 0.01, for: 2.0}}',),
                f"No message reaches {svc} for 2 s. Orchestration gives up and compensates; the "
                "broker redelivers after the partition heals.",
            ),
            Preset(
                "duplicate",
                f"{undo.name} request duplicated",
                (f"{{kind: duplicate, step: {undo.name}}}",),
                "The network delivers a request twice; the idempotent consumer ignores the copy "
                "and the effect is applied once.",
            ),
        ]
    out.append(
        Preset(
            "coordinator_crash",
            "orchestrator crashes mid-saga",
            ("{kind: crash_coordinator, at: 0.03, for: 0.5}",),
            "The orchestrator is down for 0.5 s in the middle of the saga; on restart it rebuilds "
            "the saga from its log and re-sends the current command. Choreography has no "
            "orchestrator to crash.",
        )
    )
    return tuple(out)
