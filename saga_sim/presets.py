"""One-click failure presets and safeguard lessons, derived from a scenario's own steps.

Each preset is a short list of faults (YAML flow mappings, the same form as everywhere else)
aimed at the scenario's first compensatable step, its pivot (or last step) and their services,
plus a sentence on what the theory predicts, so a class can guess before it clicks.

Each lesson (``lessons``) pairs a fault plan with a safeguard switch (``policy.idempotent``,
``policy.outbox``, ...): the failure with the switch off, the fix with it on.
"""

from __future__ import annotations

from dataclasses import dataclass

from .scenario import Scenario

__all__ = ["Lesson", "Preset", "lessons", "presets"]


@dataclass(frozen=True)
class Preset:
    """A named fault plan for one scenario."""

    key: str
    label: str
    faults: tuple[str, ...]
    lesson: str


def _service_label(sc: Scenario, name: str) -> str:
    """The service's description when it starts with the service's name ("identity
    provider"), else its name."""
    desc = sc.services[name].description.split(";")[0].strip()
    return desc if desc.startswith(name) and len(desc) <= 28 else name


def presets(scenario: Scenario) -> tuple[Preset, ...]:
    """The failure presets for a scenario, happy path first.

    Targets: the first step that has something to undo (its service is the one that goes down or
    gets cut off), and the pivot step (else the last step) as the step that fails for good.
    """
    steps = scenario.steps
    undo = next((s for s in steps if s.undoable), None)
    pivot_i = scenario.pivot_index
    late = steps[pivot_i] if pivot_i is not None else steps[-1]
    # steps that run alongside the first one (neither waits for the other)
    beside = [
        s.name
        for i, s in enumerate(steps)
        if i > 0 and s.undoable and i not in scenario.descendants(0)
    ]
    if beside:
        first_lesson = (
            f"The very first step aborts while {', '.join(beside)} "
            f"{'runs' if len(beside) == 1 else 'run'} alongside it: what "
            "committed there is undone (or, not yet run, fenced by a null compensation); "
            "both styles end compensated."
        )
    else:
        first_lesson = (
            "The very first step aborts: nothing has been committed yet, nothing to undo."
        )
    isolation = scenario.policy.isolation
    racing = (
        scenario.workload.sagas > 1
        and any(s.data is not None for s in steps)
        and not any(getattr(isolation, k) for k in _ISOLATION)
    )
    happy = "Every step commits: both styles complete; they differ only in messages and timing."
    if racing:
        happy = (
            f"Every step commits, but the {scenario.workload.sagas} sagas race for shared data "
            "with no isolation countermeasure on: lost updates and other anomalies leave sagas "
            "inconsistent, in both styles (see the race lessons)."
        )
    out = [
        Preset("happy", "No failure", (), happy),
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
            first_lesson,
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
                f"{svc} is down for 2 s. A saga whose {undo.name} request finds it down: the "
                "orchestrator times out, retries, gives up and compensates; in choreography "
                "the broker keeps the event until the service comes back, and the saga "
                "completes late.",
            ),
            Preset(
                "reply_lost",
                f"{undo.name} reply lost",
                (f"{{kind: drop, step: {undo.name}, leg: reply}}",),
                f"{undo.name} commits but its reply is lost. The orchestrator times out and asks "
                "again (the idempotent service answers from its record); in choreography the "
                "broker never acknowledged the event, so the outbox relay publishes it again: "
                "both complete, each a little late.",
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
                f"No message reaches or leaves {svc} for 2 s. The orchestrator gives up and asks "
                f"{svc} whether {undo.name} ran: a step that never ran is compensated around, "
                "one that committed before the cut is found out once the partition heals and "
                "the saga goes on. In choreography the broker redelivers after the partition "
                "heals: the saga completes late.",
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
    if racing:  # the race shows whatever the fault: say so, so the class does not blame it
        aside = (
            " (Here the concurrent sagas also race for shared data: expect isolation anomalies "
            "besides, in both styles.)"
        )
        out = [
            p
            if p.key in ("happy", "first_step_fails")
            else Preset(p.key, p.label, p.faults, p.lesson + aside)
            for p in out
        ]
    return tuple(out)


# --------------------------------------------------------------------------------------------
# Lessons: a fault plan together with the safeguard switch it is about


@dataclass(frozen=True)
class Lesson:
    """A fault plan and a safeguard switch: the failure with the switch off, the fix with it on.

    Attributes:
        key, label: an id and a button label.
        switch: the safeguard the lesson is about (a key of ``saga_sim.share.SAFEGUARDS``;
            ``None``: several).
        faults: the faults, as YAML flow mappings.
        without: the knobs (``RunConfig`` field names and values) that show the failure.
        fix: the knobs that show the safeguard at work (``None``: the lesson shows a problem
            without a single switch that removes it).
        lesson: what the theory predicts without the safeguard.
        fixed: what it predicts with it.
        seed: the seed the lesson runs with.
        sagas: how many sagas (``None``: the scenario's workload).
        reason: why the lesson does not apply to this scenario (``None``: it applies).
    """

    key: str
    label: str
    switch: str | None
    faults: tuple[str, ...]
    without: tuple[tuple[str, object], ...]
    fix: tuple[tuple[str, object], ...] | None
    lesson: str
    fixed: str
    seed: int = 1
    sagas: int | None = 1
    reason: str | None = None

    @property
    def applies(self) -> bool:
        """True when the lesson fits the scenario."""
        return self.reason is None


_ISOLATION = ("semantic_lock", "commutative", "reread", "version")


def _give_up_time(scenario: Scenario) -> float:
    """Seconds from a step's first request until the coordinator gives up on it."""
    p = scenario.policy
    waits = (p.retries + 1) * p.timeout
    delays = sum(p.retry_delay * p.backoff**k for k in range(p.retries))
    return waits + delays


def lessons(scenario: Scenario) -> tuple[Lesson, ...]:
    """The safeguard lessons, each with its faults and switch, for a scenario.

    Every lesson is returned; one that cannot be shown with this scenario (no step to undo, no
    shared data, ...) has a ``reason``. Each runs with its own seed and saga count, so what it
    predicts is what the class sees.
    """
    steps = scenario.steps
    undo = next((s for s in steps if s.undoable), None)
    target = undo or steps[0]
    pivot_i = scenario.pivot_index
    late_i = pivot_i if pivot_i is not None else len(steps) - 1
    late = steps[late_i]
    timeout = scenario.policy.timeout
    past = round(_give_up_time(scenario) + 2 * timeout, 3)
    no_undo = "needs a compensatable step (one with a compensation)"
    out: list[Lesson] = []

    out.append(
        Lesson(
            "no_idempotency",
            "duplicate without idempotency",
            "idempotent",
            (f"{{kind: duplicate, step: {target.name}, leg: request}}",),
            (("idempotent", False),),
            (("idempotent", True),),
            f"The {target.name} request is delivered twice and the consumer does not "
            "deduplicate: the effect is applied twice (duplicate_effect), inconsistent in both "
            "styles; in choreography the second commit publishes a second event downstream.",
            "The idempotent consumer recognises the copy by its message id and ignores it: "
            "both styles complete, every invariant holds.",
        )
    )
    out.append(
        Lesson(
            "no_outbox",
            "event lost on its way, no outbox",
            "outbox",
            (f"{{kind: drop, step: {target.name}, leg: reply}}",),
            (("outbox", False),),
            (("outbox", True),),
            f"{target.service} commits {target.name}, but the message that follows is lost on "
            "its way (the reply to the orchestrator; in choreography the event to the broker). "
            "The orchestrator times out and asks again (the idempotent service answers from "
            "its record) and completes. In choreography, without an outbox nobody sends the "
            "event again: the broker never had it and the trigger was already acknowledged, "
            "so nobody is waiting: the saga stalls.",
            "With the transactional outbox the event was committed with the local change, and "
            "the relay publishes it until the broker acknowledges it: the lost copy is sent "
            "again, both styles complete.",
        )
    )
    hanging_reason = no_undo if undo is None else None
    hang = undo or target
    out.append(
        Lesson(
            "hanging",
            "late request (hanging)",
            "barrier",
            (f"{{kind: delay, step: {hang.name}, leg: request, extra: {past:g}}}",),
            (("barrier", False), ("query_status", False)),
            (("barrier", True), ("query_status", False)),
            f"Every {hang.name} request arrives after the orchestrator gave up: it "
            "compensates a step that never ran (a null compensation), then the late request "
            "runs: an action after its compensation, inconsistent. Choreography has no timeout: "
            "it just completes late. (The status query is off, so the coordinator does not ask.)",
            "With the barrier the service remembers the null compensation and refuses the late "
            "request: orchestration ends compensated, cleanly.",
            reason=hanging_reason,
        )
    )
    ran_reason = None
    if late.undoable:
        ran_reason = (
            "needs a pivot (a step without compensation): here the barrier already refuses a "
            "late step that was compensated"
        )
    elif late_i == 0 or not any(s.undoable for s in steps[:late_i]):
        ran_reason = "needs a compensatable step before the pivot (or the last step)"
    out.append(
        Lesson(
            "timed_out_but_ran",
            "timed out but it ran",
            "query_status",
            (f"{{kind: delay, step: {late.name}, leg: request, extra: {past:g}}}",),
            (("query_status", False),),
            (("query_status", True),),
            f"{late.name} is so slow that the orchestrator gives up and compensates the steps "
            f"before it; then {late.name} commits after all: a committed step the saga "
            "abandoned, inconsistent. Choreography just completes late.",
            f"With the status query the orchestrator asks {late.service} whether "
            f"{late.name} ran; it never did, so it is fenced off and the saga ends compensated.",
            reason=ran_reason,
        )
    )

    def ordered_pair_before(i: int) -> bool:
        """Two undoable steps that step i waits for, one of which waits for the other: only
        then does the order of their compensations matter."""
        above = [a for a in range(i) if steps[a].undoable and i in scenario.descendants(a)]
        return any(b in scenario.descendants(a) for a in above for b in above if b != a)

    fail_i = next(
        (i for i in range(len(steps)) if steps[i].kind != "retriable" and ordered_pair_before(i)),
        None,
    )
    shared = any(s.data is not None for s in steps)
    par_reason = None
    if fail_i is None:
        par_reason = (
            "needs two compensatable steps, one after the other, before a step that can fail"
        )
    elif shared:
        par_reason = (
            "20 sagas racing for shared data would hide the ordering problem behind isolation "
            "anomalies: try it on the trip booking"
        )
    fail_step = steps[fail_i].name if fail_i is not None else late.name
    out.append(
        Lesson(
            "parallel_compensation",
            "parallel compensation race",
            "compensation_order",
            (f"{{kind: fail_step, step: {fail_step}}}",),
            (("compensation_order", "parallel"),),
            (("compensation_order", "reverse"),),
            f"{fail_step} fails in each of 20 sagas and every compensation starts at once: in "
            "some sagas an earlier step is undone before a later one (compensation_order "
            "violation); faster, but the order the saga promised is gone.",
            "In reverse order every saga undoes its steps last-first: all compensated, no "
            "violation, a little slower.",
            seed=3,
            sagas=20,
            reason=par_reason,
        )
    )
    comp_reason = None
    if undo is None:
        comp_reason = no_undo
    trigger = None
    if undo is not None:
        # a step that can fail and waits for undo: undo has surely committed when it fails
        below = scenario.descendants(steps.index(undo))
        trigger = next(
            (
                steps[j]
                for j in sorted(below)
                if steps[j] is not undo and steps[j].kind != "retriable"
            ),
            None,
        )
        if trigger is None:
            comp_reason = "needs a step that can fail after a compensatable step"
    out.append(
        Lesson(
            "compensation_fails",
            "compensation keeps failing",
            "compensation_retries",
            (
                f"{{kind: fail_step, step: {trigger.name if trigger else late.name}}}",
                f"{{kind: fail_compensation, step: {(undo or target).name}, times: 3}}",
            ),
            (("compensation_retries", 2),),
            (("compensation_retries", 5),),
            f"The compensation of {(undo or target).name} fails 3 times and only 2 retries "
            "are allowed: the undo message goes to the dead-letter queue and the saga ends in "
            "needs_intervention (inconsistent), in both styles.",
            "With 5 compensation retries the 4th attempt succeeds: compensated.",
            reason=comp_reason,
        )
    )
    out.append(
        Lesson(
            "dead_letter",
            "broker gives up: dead letter",
            "max_redeliveries",
            (f"{{kind: drop, link: broker->{target.service}, count: 3}}",),
            (("max_redeliveries", 2), ("redelivery", 1.0)),
            (("max_redeliveries", 5), ("redelivery", 1.0)),
            f"Choreography: the broker's first delivery to {target.service} and 2 redeliveries "
            "are lost; after max_redeliveries the message goes to the dead-letter queue and the "
            "saga stalls. Orchestration uses no broker: unaffected.",
            "With 5 redeliveries allowed the fourth delivery gets through: completed, late.",
        )
    )
    out.append(
        Lesson(
            "no_redelivery",
            "broker without redelivery",
            "redelivery",
            (f"{{kind: drop, link: broker->{target.service}, count: 1}}",),
            (("redelivery", 0.0),),
            (("redelivery", 1.0),),
            f"Choreography: one delivery to {target.service} is lost and the broker only "
            "redelivers when a subscriber restarts: the saga stalls. Orchestration's "
            "coordinator retries on its own timeout: unaffected.",
            "With redelivery after 1 s the broker sends the unacknowledged message again: "
            "completed, a second late.",
        )
    )
    iso_reason = None if shared else "needs shared data: steps with a data item (concurrent sagas)"
    all_off = tuple((k, False) for k in _ISOLATION)
    out.append(
        Lesson(
            "race",
            "race for stock (no countermeasure)",
            None,
            (),
            all_off,
            None,
            "Concurrent sagas read and write the same item with no countermeasure: lost "
            "updates, dirty reads and non-repeatable reads, in both styles. Switch on a "
            "countermeasure (next lessons) to see each anomaly go.",
            "",
            seed=0,
            sagas=None,
            reason=iso_reason,
        )
    )
    removes = {
        "semantic_lock": (
            "semantic lock",
            "lost updates, dirty reads and non-repeatable reads",
            " The price: a saga that finds the item pending aborts and is compensated.",
        ),
        "commutative": ("commutative updates", "lost updates", ""),
        "reread": (
            "reread value",
            "lost updates and non-repeatable reads",
            " The price: a saga whose item changed since it read it aborts.",
        ),
        "version": ("version file", "lost updates", ""),
    }
    for switch, (name, gone, price) in removes.items():
        out.append(
            Lesson(
                f"isolation_{switch}",
                f"countermeasure: {name}",
                switch,
                (),
                all_off,
                tuple((k, k == switch) for k in _ISOLATION),
                "Without a countermeasure the concurrent sagas show lost updates, dirty reads "
                "and non-repeatable reads.",
                f"With the {name} on, the {gone} are gone (in both styles).{price}",
                seed=0,
                sagas=None,
                reason=iso_reason,
            )
        )
    return tuple(out)
