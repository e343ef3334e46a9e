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
- ``exception``: the run itself raised.
"""

from __future__ import annotations

from dataclasses import dataclass

import saga_sim as ss

__all__ = ["PUBLISHER_ACKS", "Failure", "check", "check_run", "stall_reasons"]

PUBLISHER_ACKS = False
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


def stall_reasons(run: ss.Run, saga: int, publisher_acks: bool = PUBLISHER_ACKS) -> list[str]:
    """Why the trace says a choreographed saga could stall: the reasons issue 10 accepts."""
    reasons = []
    row = run.sagas[run.sagas["saga"] == saga].iloc[0]
    if not bool(row["started"]):
        reasons.append("never started")
    ev = run.events[run.events["saga"] == saga]
    if (ev["kind"] == "dead_letter").any():
        reasons.append("dead letter")
    lost = ev[(ev["kind"] == "drop") & (ev["target"] == "broker") & (ev["source"] != "client")]
    if len(lost) and (not run.scenario.policy.outbox or not publisher_acks):
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
    sagas = run.sagas
    for saga, outcome, started in zip(sagas["saga"], sagas["outcome"], sagas["started"]):
        saga = int(saga)
        # the judge adds a violation to every inconsistent saga; say so if it ever does not
        if (
            style == "orchestration"
            and outcome == "inconsistent"
            and not any(v.saga == saga for v in run.violations)
        ):
            out.append(Failure(style, "inconsistent", "", saga, "inconsistent, no violation"))
        if outcome == "stalled":
            if style == "choreography":
                if not stall_reasons(run, saga, publisher_acks):
                    out.append(
                        Failure(
                            style,
                            "stalled_without_reason",
                            "",
                            saga,
                            "stalled with no dead letter, no lost publish, and it started",
                        )
                    )
            elif bool(started):
                out.append(
                    Failure(
                        style,
                        "orchestration_stalled",
                        "",
                        saga,
                        "started but not over by the horizon",
                    )
                )
    ev = run.events
    states = ev[ev["kind"] == "state"]
    ends = states[states["detail"].str.split(":").str[0].isin(TERMINAL)]
    first_end = ends.groupby("saga").head(1)
    effects = ev[ev["kind"].isin(EFFECTS)]
    last_effect = effects.groupby("saga").tail(1)
    last_by_saga = {
        int(r.saga): (seq, r) for seq, r in zip(last_effect.index, last_effect.itertuples())
    }
    for seq, r in zip(first_end.index, first_end.itertuples()):
        last = last_by_saga.get(int(r.saga))
        if last is not None and last[0] > seq:
            e = last[1]
            out.append(
                Failure(
                    style,
                    "end_before_effect",
                    r.detail.split(":")[0],
                    int(r.saga),
                    f"declared {r.detail} by {r.source} at {r.time:.4f} s (row {seq}), but "
                    f"{e.kind} {e.step} at {e.time:.4f} s (row {last[0]}) came later",
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
