"""The safety oracle: what must hold of a run with every safeguard on and a fault plan that heals.

``check(case)`` runs both styles and returns every ``Failure`` found, each with a ``signature``
(style, assertion, detail) that groups failures of one kind. The assertions (issue 10, "Done
means", and issue 12's property on the end of a saga):

- ``violation``: no invariant is violated, in either style (``Run.violations`` is empty); the
  detail is the invariant's name. One exception: with ``compensation_order: parallel`` a
  ``compensation_order`` violation is what the policy asks for (dependent steps undone at once);

- ``inconsistent``: orchestration never ends a saga ``inconsistent`` (also implied by the first);
- ``stalled_without_reason``: a choreographed saga is ``stalled`` only where its trace shows why
  (a dead letter, a start request that never arrived, or a lost publish; see ``PUBLISHER_ACKS``);
- ``orchestration_stalled``: an orchestrated saga that started ends by the horizon (the faults
  heal and the budgets outlast them, so a coordinator that keeps its promises finishes);
- ``end_before_effect``: a saga's declared end (its first terminal ``state`` row) comes after the
  last effect (``tx_commit`` or ``comp_commit``) of that saga, on every branch;
- ``believed_differs``: a saga that ended ``completed`` or ``compensated`` in the stores was
  declared so (by the coordinator, or a participant): with every fault healed nothing hides the
  truth from the declarer (issue 12's "believed and true outcomes agree"), and an undeclared end
  keeps the saga's semantic locks forever;
- ``exception``: the run itself raised;
- ``healthy_not_completed`` (``check_healthy``): with no fault, one saga and no floor, every
  step can commit, so both styles complete.
"""

from __future__ import annotations

from dataclasses import dataclass

import saga_sim as ss

__all__ = ["PUBLISHER_ACKS", "Failure", "check", "check_healthy", "check_run", "stall_reasons"]

PUBLISHER_ACKS = True
"""Whether the simulator models publisher acknowledgements (issue 12): with them and the outbox
on, a publish lost between a service and the broker is re-sent by the relay, so a lost publish
is no longer a reason for a choreographed saga to stall. Until the lead implements them it is
accepted as a reason here, and ``tests/safety_cases/lost_publish_outbox_on.yaml`` (strict xfail)
records the behaviour expected once they are."""

TERMINAL = ("completed", "compensated", "needs_intervention")
EFFECTS = ("tx_commit", "comp_commit")


@dataclass(frozen=True)
class Failure:
    """One broken safety assertion in one run."""

    style: str
    assertion: str
    detail: str
    saga: int
    message: str

    @property
    def signature(self) -> tuple[str, str, str]:
        """What groups failures of one kind: (style, assertion, detail)."""
        return (self.style, self.assertion, self.detail)

    def __str__(self) -> str:
        return f"[{self.style}] {self.assertion}/{self.detail} saga {self.saga}: {self.message}"


class _Trace:
    """A run's trace as plain lists, read once (pandas per saga would be slow)."""

    def __init__(self, run: ss.Run):
        ev = run.events
        self.rows = list(
            zip(
                ev.index.tolist(),
                ev["time"].tolist(),
                ev["saga"].tolist(),
                ev["kind"].tolist(),
                ev["source"].tolist(),
                ev["target"].tolist(),
                ev["step"].tolist(),
                ev["detail"].tolist(),
            )
        )
        self.first_end: dict[int, tuple] = {}  # saga -> its first terminal state row
        self.last_effect: dict[int, tuple] = {}  # saga -> its last tx_commit / comp_commit row
        self.dead_letter: set[int] = set()
        self.lost_publish: set[int] = set()
        for r in self.rows:
            _seq, _t, saga, kind, source, target, _step, detail = r
            if kind == "state":
                if saga not in self.first_end and detail.split(":")[0] in TERMINAL:
                    self.first_end[saga] = r
            elif kind in EFFECTS:
                self.last_effect[saga] = r
            elif kind == "dead_letter":
                self.dead_letter.add(saga)
            elif kind == "drop" and target == "broker" and source != "client":
                self.lost_publish.add(saga)


def stall_reasons(
    run: ss.Run, saga: int, publisher_acks: bool = PUBLISHER_ACKS, trace: _Trace | None = None
) -> list[str]:
    """Why the trace says a choreographed saga could stall: the reasons issue 10 accepts."""
    trace = trace or _Trace(run)
    reasons = []
    if not bool(run.sagas["started"].iloc[saga - 1]):
        reasons.append("never started")
    if saga in trace.dead_letter:
        reasons.append("dead letter")
    if saga in trace.lost_publish and (not run.scenario.policy.outbox or not publisher_acks):
        reasons.append("lost publish")
    return reasons


def check_run(run: ss.Run, publisher_acks: bool = PUBLISHER_ACKS) -> list[Failure]:
    """Every safety assertion on one finished run."""
    out: list[Failure] = []
    style = run.style
    parallel = run.scenario.policy.compensation_order == "parallel"
    for v in run.violations:
        if parallel and v.invariant == "compensation_order":
            # undoing dependent steps all at once is a race by definition: with
            # ``compensation_order: parallel`` this violation is the right answer (the lesson that
            # shows it), not a fault of the simulator
            continue
        out.append(Failure(style, "violation", v.invariant, v.saga, v.message))
    trace = _Trace(run)
    violated = {v.saga for v in run.violations}
    sagas = run.sagas
    for saga, outcome, started, believed in zip(
        sagas["saga"].tolist(),
        sagas["outcome"].astype(str).tolist(),
        sagas["started"].tolist(),
        sagas["believed"].tolist(),
    ):
        if outcome in ("completed", "compensated") and believed != outcome:
            out.append(
                Failure(
                    style,
                    "believed_differs",
                    f"{believed or 'undeclared'}->{outcome}",
                    saga,
                    f"the saga is {outcome} in the stores but "
                    + (f"was declared {believed}" if believed else "nobody declared it over"),
                )
            )
        # the judge adds a violation to every inconsistent saga; say so if it ever does not
        if style == "orchestration" and outcome == "inconsistent" and saga not in violated:
            out.append(Failure(style, "inconsistent", "", saga, "inconsistent, no violation"))
        if outcome == "stalled":
            if style == "choreography":
                if not stall_reasons(run, saga, publisher_acks, trace):
                    out.append(
                        Failure(
                            style,
                            "stalled_without_reason",
                            "",
                            saga,
                            "stalled with no dead letter, no lost publish, and it started",
                        )
                    )
            elif started:
                out.append(
                    Failure(
                        style,
                        "orchestration_stalled",
                        "",
                        saga,
                        "started but not over by the horizon",
                    )
                )
    for saga, end in trace.first_end.items():
        last = trace.last_effect.get(saga)
        if last is not None and last[0] > end[0]:
            out.append(
                Failure(
                    style,
                    "end_before_effect",
                    end[7].split(":")[0],
                    saga,
                    f"declared {end[7]} by {end[4]} at {end[1]:.4f} s (row {end[0]}), but "
                    f"{last[3]} {last[6]} at {last[1]:.4f} s (row {last[0]}) came later",
                )
            )
    return out


def check(
    scenario: ss.Scenario,
    faults: list,
    seed: int,
    styles: tuple[str, ...] = ss.STYLES,
    publisher_acks: bool = PUBLISHER_ACKS,
) -> list[Failure]:
    """Run each style and return every failure (an exception in a run is one too)."""
    out: list[Failure] = []
    for style in styles:
        try:
            run = ss.simulate(scenario, style, faults=faults, seed=seed)
        except Exception as exc:
            out.append(Failure(style, "exception", type(exc).__name__, 0, repr(exc)[:300]))
            continue
        out += check_run(run, publisher_acks)
    return out


def check_healthy(scenario: ss.Scenario, seed: int) -> list[Failure]:
    """No fault at all, one saga, no floor: every step can commit, so both styles must complete
    (``healthy_not_completed``), besides every assertion of ``check_run`` — unless the
    orchestrator gave up on a step that outlasted its timeout and retries (a ``dead_letter``:
    the policy's own decision, after which compensating is the correct, consistent end)."""
    out: list[Failure] = []
    for style in ss.STYLES:
        run = ss.simulate(scenario, style, seed=seed, sagas=1)
        out += check_run(run)
        ev = run.events
        gave_up = style == "orchestration" and (ev["kind"] == "dead_letter").any()
        if gave_up and run.outcome == "compensated":
            continue
        if run.outcome != "completed":
            out.append(
                Failure(
                    style,
                    "healthy_not_completed",
                    run.outcome,
                    1,
                    f"no fault, one saga, nothing to abort on, yet it ended {run.outcome}",
                )
            )
    return out
