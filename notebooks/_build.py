"""Build the coursework notebooks, the students' and the instructors' versions, from one source.

    python notebooks/_build.py [OUT_DIR]

writes ``notebooks/NN_name.ipynb`` (exercises left as ``...``) and
``notebooks/solutions/NN_name.ipynb`` (exercises filled in), without outputs. Exercise questions
and answer forms come from ``saga_sim.coursework``, so the notebooks and the checks cannot
disagree. Edit this file, not the notebooks, then run it again and commit both.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from saga_sim import coursework as cw

HERE = Path(__file__).resolve().parent

SETUP = """\
# Setup: import the simulator. It is installed with the project (see the README), so this
# notebook runs from any folder; the bundled scenarios load by name.
import pandas as pd
import saga_sim as ss
import saga_sim.coursework as cw
from saga_sim import viz

pd.set_option("display.max_colwidth", 80)
"""


def _d(text: str) -> str:
    return textwrap.dedent(text).strip("\n")


class Book:
    """One notebook, in its two versions."""

    def __init__(self, name: str, title: str, minutes: str, goals: list[str], intro: str):
        self.name = name
        self.cells: list[tuple[str, str, str]] = []  # (kind, student, solution)
        goal_lines = "\n".join(f"- {g}" for g in goals)
        self.md(
            f"# {title}\n\n*About {minutes} minutes.*\n\n**Learning goals.** After this "
            f"notebook you can:\n{goal_lines}\n\n{_d(intro)}"
        )
        self.code(SETUP)

    def md(self, text: str, solution: str | None = None) -> None:
        self.cells.append(("markdown", _d(text), _d(solution) if solution else _d(text)))

    def code(self, src: str, solution: str | None = None) -> None:
        self.cells.append(("code", _d(src), _d(solution) if solution else _d(src)))

    def predict(self, question: str, answer: str) -> None:
        """A 'predict, then run' question: write a prediction before running the next cell."""
        self.md(f"**Predict, then run.** {_d(question)}")
        self.md(
            "*Your prediction (double-click to edit):* ...",
            "*Instructor's note:* " + _d(answer),
        )

    def exercise(self, eid: str, student: str, solution: str, note: str = "") -> None:
        """An exercise: its question from saga_sim.coursework, then a cell that checks it."""
        if eid in cw.GRADED:
            question, form = cw.GRADED[eid].question, "a Participant subclass"
        else:
            question, form = cw.EXERCISES[eid].question, cw.EXERCISES[eid].form
        extra = f"\n\n{_d(note)}" if note else ""
        self.md(f"### Exercise `{eid}`\n\n{question}\n\n*Answer: {form}.*{extra}")
        self.code(student, solution)

    def write(self, out: Path = HERE) -> None:
        for version, folder in (("student", out), ("solution", out / "solutions")):
            nb = new_notebook()
            nb.metadata["kernelspec"] = {
                "name": "python3",
                "display_name": "Python 3 (ipykernel)",
                "language": "python",
            }
            nb.metadata["language_info"] = {"name": "python"}
            for k, (kind, student, solution) in enumerate(self.cells):
                src = student if version == "student" else solution
                if version == "solution" and k == 0:
                    src = src.replace(
                        "\n",
                        "\n\n*Instructor's version: every exercise is "
                        "answered, and every check should say right.*\n",
                        1,
                    )
                make = new_code_cell if kind == "code" else new_markdown_cell
                cell = make(src)
                cell["id"] = f"{self.name[:2]}-{k:02d}"
                nb.cells.append(cell)
            nbformat.validate(nb)
            folder.mkdir(exist_ok=True)
            path = folder / f"{self.name}.ipynb"
            path.write_text(nbformat.writes(nb) + "\n", encoding="utf-8")


# =============================================================================================
# 01


def nb01() -> Book:
    b = Book(
        "01_what_is_a_saga",
        "01 · What is a saga?",
        "25",
        [
            "say what a saga is: local transactions, one per service, undone by compensations",
            "tell compensatable, pivot and retriable steps apart",
            "run a saga with `saga_sim` and read its trace, timeline and state machine",
        ],
        """
        Run the cells from top to bottom (Shift+Enter). Exercises end with a call to
        `cw.check(...)`: it says whether your answer is right and gives a hint when it is not,
        without ever showing the answer. Replace each `...` with your answer.
        """,
    )
    b.md(
        """
        ## The problem

        A user signs up. Three services take part, **each with its own database**:

        1. a **validator** checks and cleans the form (it keeps nothing);
        2. an **identity provider** creates the user and keeps the new user's id;
        3. a **notifier** sends the welcome email and records which template it used.

        One database transaction cannot span three databases (and two-phase commit would make
        every service wait for, and lock on behalf of, the others). A **saga** is the usual
        answer: a sequence of **local transactions**, each committed at once in one service.
        If a later one fails, the earlier ones are not rolled back: they are undone by
        **compensations**, new local transactions that semantically undo them (delete the
        user that was created).

        Here is the scenario file that describes this saga to the simulator:
        """
    )
    b.code('print((cw.SCENARIO_DIR / "user_registration.yaml").read_text())')
    b.md(
        """
        ## Step kinds

        - **compensatable**: can be undone by its `compensation` (`create_user` is undone by
          `delete_user`). A step with `compensation: null` has nothing to undo.
        - **pivot**: the point of no return. Once it commits the saga can only go forward
          (an email cannot be unsent). A failure *at or before* the pivot compensates the
          committed compensatable steps, in reverse order.
        - **retriable**: after the pivot; retried until it succeeds.

        The file is validated into a frozen `Scenario` object:
        """
    )
    b.code(
        """
        sc = cw.bundled("user_registration")   # the same as ss.load_scenario("user_registration")
        pd.DataFrame([(s.name, s.service, s.kind, s.compensation) for s in sc.steps],
                     columns=["step", "service", "kind", "compensation"])
        """
    )
    b.exercise(
        "01.pivot",
        """
        pivot = ...   # the name of the pivot step, as a string
        cw.check("01.pivot", pivot)
        """,
        """
        pivot = next(s.name for s in sc.steps if s.kind == "pivot")
        cw.check("01.pivot", pivot)
        """,
    )
    b.md(
        """
        ## Run it

        `ss.simulate` runs the saga in a discrete-event simulation: services, a network with
        latency, and (later) faults. We start with **orchestration**: a central coordinator
        sends each service a command and waits for its reply.
        """
    )
    b.predict(
        "How many messages will be sent in total for one sign-up, with no faults? Count the "
        "client's request to start the saga too.",
        "1 (client to coordinator) + 2 per step (command and reply) x 3 steps = 7.",
    )
    b.code(
        """
        run = ss.simulate(sc, style="orchestration", seed=7)
        run
        """
    )
    b.md(
        """
        `run.events` is the **trace**: one row per event, in the order they happened. The
        `kind` column says what happened:
        """
    )
    b.code('pd.Series(ss.EVENT_KINDS, name="meaning").to_frame()')
    b.code('run.events[["time", "kind", "source", "target", "step", "message", "detail"]]')
    b.md(
        """
        The same trace as a **timeline** (a sequence diagram): one lane per node, an arrow per
        message, markers for commits. Hover for details.
        """
    )
    b.code('viz.timeline(run.events, saga=1, title="Sign-up, orchestrated (seed 7)")')
    b.exercise(
        "01.messages",
        """
        messages = ...   # hint: count the rows of run.events whose kind is "send"
        cw.check("01.messages", messages)
        """,
        """
        messages = int((run.events["kind"] == "send").sum())
        cw.check("01.messages", messages)
        """,
    )
    b.md(
        """
        `run.effects` is the ground truth: the services' journals of what they applied, as
        `(time, seq, saga, step, op, service)` tuples (`op` is `commit`, `comp`, `abort`, ...).
        """
    )
    b.code("run.effects")
    b.exercise(
        "01.commit_order",
        """
        committed = ...   # a list of step names, in the order their local transactions committed
        cw.check("01.commit_order", committed)
        """,
        """
        committed = [step for (_t, _seq, _saga, step, op, _svc) in run.effects if op == "commit"]
        cw.check("01.commit_order", committed)
        """,
    )
    b.md(
        """
        `run.sagas` has one row per saga: its outcome (`completed`, `compensated`,
        `inconsistent` or `stalled`), its latency, counts of messages, retries and
        compensations. `run.metrics` sums them up.
        """
    )
    b.code("run.sagas")
    b.exercise(
        "01.latency",
        """
        latency = ...   # seconds, from run.sagas
        cw.check("01.latency", latency)
        """,
        """
        latency = run.sagas.loc[0, "latency"]
        cw.check("01.latency", latency)
        """,
    )
    b.exercise(
        "01.slowest_step",
        """
        ev = run.events
        durations = {}   # step -> time of its tx_commit minus time its request reached its service
        # for _, row in ev[ev["kind"] == "tx_commit"].iterrows(): ...
        slowest = ...   # the step with the largest duration
        cw.check("01.slowest_step", slowest)
        """,
        """
        ev = run.events
        durations = {}
        for _, row in ev[ev["kind"] == "tx_commit"].iterrows():
            arrived = ev[(ev["kind"] == "deliver") & (ev["target"] == row["source"])
                         & (ev["step"] == row["step"]) & (ev["time"] <= row["time"])]
            delivered = arrived["time"].max()
            durations[row["step"]] = row["time"] - delivered
        slowest = max(durations, key=durations.get)
        print(durations)
        cw.check("01.slowest_step", slowest)
        """,
    )
    b.md(
        """
        ## The coordinator's state machine

        The orchestrator walks a state machine, one state per step and per compensation, and
        writes every transition to its saga log (the `state` events). The figure shows every
        possible transition; the ones this run took are highlighted.
        """
    )
    b.code(
        """
        states = ss.orchestration_states(sc)
        viz.state_machine(states, run.events, title="Sign-up coordinator")
        """
    )
    b.md(
        """
        ## Seeds

        Service times and network delays are random, drawn from streams fixed by the `seed`.
        The same seed gives the same trace, to the row; another seed gives other timings.
        """
    )
    b.predict(
        "Will the order in which the three steps commit change from one seed to another?",
        "No. The steps of one saga run one after another: only the timings change.",
    )
    b.code(
        """
        rows = []
        for seed in range(8):
            r = ss.simulate(sc, seed=seed)
            order = [step for (_t, _s, _g, step, op, _v) in r.effects if op == "commit"]
            rows.append((seed, round(r.sagas.loc[0, "latency"], 4), " > ".join(order)))
        pd.DataFrame(rows, columns=["seed", "latency (s)", "commit order"])
        """
    )
    b.exercise(
        "01.why_not_2pc",
        """
        why = ...   # "a", "b" or "c"
        cw.check("01.why_not_2pc", why)
        """,
        """
        why = "b"
        cw.check("01.why_not_2pc", why)
        """,
    )
    b.md(
        """
        ## Summary

        A saga trades atomicity and isolation for availability: every step commits locally at
        once, and failures are handled by compensations. Next, in notebook 02, we break things
        on purpose and watch the compensations run.
        """
    )
    return b


# =============================================================================================
# 02


def nb02() -> Book:
    b = Book(
        "02_failures_and_compensations",
        "02 · Failures and compensations",
        "30",
        [
            "inject faults into a run (a fault is a small mapping with a `kind`)",
            "predict which compensations run, and in which order",
            "explain what the pivot changes for a failure",
            "recognise what happens when a compensation itself fails",
        ],
        """
        We use the classic trip booking (car, hotel, flight: every step can be cancelled), the
        sign-up of notebook 01, and an order fulfilment with retriable steps after its pivot.
        """,
    )
    b.md(
        """
        ## Faults

        A fault is a mapping with a `kind`, written as a Python dict or as a YAML flow mapping
        (the same text works on the command line and in the app):
        """
    )
    b.code(
        """
        trip = cw.bundled("trip_booking")
        print(trip.description)
        faults = ["{kind: fail_step, step: book_flight}"]      # the flight cannot be booked
        [ss.describe_fault(f) for f in ss.parse_faults(faults, trip)]
        """
    )
    b.code("ss.FAULT_KINDS")
    b.predict(
        "The flight cannot be booked (`book_flight` aborts). Which steps are compensated, and "
        "in which order?",
        "The hotel is cancelled first, then the car: compensations run in the reverse order of "
        "the actions (the last effect is undone first).",
    )
    b.exercise(
        "02.compensation_order",
        """
        run = ss.simulate(trip, "orchestration", faults=faults, seed=3, sagas=1)
        compensated = ...   # step names, in the order their compensations committed
        cw.check("02.compensation_order", compensated)
        """,
        """
        run = ss.simulate(trip, "orchestration", faults=faults, seed=3, sagas=1)
        compensated = [step for (_t, _s, _g, step, op, _v) in run.effects if op == "comp"]
        cw.check("02.compensation_order", compensated)
        """,
    )
    b.md("The compensations on a time axis, and as a table:")
    b.code('viz.compensation_gantt(run.events, title="book_flight fails")')
    b.code("viz.compensation_table(run.events)")
    b.code('viz.timeline(run.events, saga=1, title="Trip booking: book_flight fails")')
    b.md(
        """
        ## Failing at the pivot

        In the sign-up, `validate_input` has `compensation: null` (nothing to undo) and
        `send_welcome_email` is the pivot.
        """
    )
    b.predict(
        "The pivot `send_welcome_email` fails. Which steps are compensated?",
        "Only create_user: validate_input has nothing to undo, and the failed pivot never "
        "committed.",
    )
    b.exercise(
        "02.undone_on_pivot_failure",
        """
        signup = cw.bundled("user_registration")
        run = ss.simulate(signup, faults=["{kind: fail_step, step: send_welcome_email}"], seed=7)
        undone = ...
        cw.check("02.undone_on_pivot_failure", undone)
        """,
        """
        signup = cw.bundled("user_registration")
        run = ss.simulate(signup, faults=["{kind: fail_step, step: send_welcome_email}"], seed=7)
        undone = [step for (_t, _s, _g, step, op, _v) in run.effects if op == "comp"]
        cw.check("02.undone_on_pivot_failure", undone)
        """,
    )
    b.md(
        """
        ## After the pivot

        The order fulfilment saga reserves stock as its pivot; after it, scheduling the
        shipment and approving the order are **retriable**.
        """
    )
    b.code(
        """
        orders = cw.bundled("order_fulfillment")
        pd.DataFrame([(s.name, s.service, s.kind, s.compensation) for s in orders.steps],
                     columns=["step", "service", "kind", "compensation"])
        """
    )
    b.predict(
        "For each step, what will the saga's outcome be if that step fails once?",
        "create_order, charge_card and reserve_stock (up to and including the pivot): "
        "compensated. schedule_shipment and approve_order (retriable): completed, after a retry.",
    )
    b.exercise(
        "02.outcomes_by_step",
        """
        outcomes = {}   # step name -> outcome
        for step in orders.steps:
            fault = ...   # a fault making this step fail; then simulate one saga (sagas=1), seed 5
            # outcomes[step.name] = ...
        cw.check("02.outcomes_by_step", outcomes)
        """,
        """
        outcomes = {}
        for step in orders.steps:
            run = ss.simulate(orders, faults=[{"kind": "fail_step", "step": step.name}],
                              seed=5, sagas=1)
            outcomes[step.name] = run.outcome
        print(outcomes)
        cw.check("02.outcomes_by_step", outcomes)
        """,
    )
    b.code(
        """
        retry = ["{kind: fail_step, step: schedule_shipment}"]
        run = ss.simulate(orders, faults=retry, seed=5, sagas=1)
        viz.timeline(run.events, saga=1, title="schedule_shipment fails once: retried")
        """
    )
    b.md(
        """
        ## When a compensation fails

        A compensation is a local transaction too: it can fail. The coordinator retries it with
        backoff, up to `policy.compensation_retries` times.
        """
    )
    b.predict(
        "book_flight fails and cancelling the hotel (`cancel_room`) fails twice before it "
        "succeeds. How many `cancel_room` commands does the coordinator send?",
        "Three: the first, and one retry after each of the two failures.",
    )
    b.exercise(
        "02.cancel_room_sends",
        """
        run = ss.simulate(trip, faults=["{kind: fail_step, step: book_flight}",
                                        "{kind: fail_compensation, step: reserve_hotel, times: 2}"],
                          seed=3, sagas=1)
        sends = ...   # count the send events of message cancel_room
        cw.check("02.cancel_room_sends", sends)
        """,
        """
        run = ss.simulate(trip, faults=["{kind: fail_step, step: book_flight}",
                                        "{kind: fail_compensation, step: reserve_hotel, times: 2}"],
                          seed=3, sagas=1)
        ev = run.events
        sends = int(((ev["kind"] == "send") & (ev["message"] == "cancel_room")).sum())
        cw.check("02.cancel_room_sends", sends)
        """,
    )
    b.md(
        """
        And if cancelling the car never succeeds? The coordinator gives up and marks the saga
        `needs_intervention` (a human must fix it). But what is left in the stores?
        """
    )
    b.exercise(
        "02.stuck_outcome",
        """
        stuck = ss.simulate(trip, faults=["{kind: fail_step, step: book_flight}",
                                          "{kind: fail_compensation, step: reserve_car}"],
                            seed=3, sagas=1)
        outcome = ...
        cw.check("02.stuck_outcome", outcome)
        """,
        """
        stuck = ss.simulate(trip, faults=["{kind: fail_step, step: book_flight}",
                                          "{kind: fail_compensation, step: reserve_car}"],
                            seed=3, sagas=1)
        outcome = stuck.outcome
        cw.check("02.stuck_outcome", outcome)
        """,
    )
    b.md("The invariants checked on every run, and what each means:")
    b.code('pd.Series(ss.INVARIANTS, name="meaning").to_frame()')
    b.exercise(
        "02.stuck_invariant",
        """
        broken = ...   # the name of the violated invariant (stuck.violations_frame() helps)
        cw.check("02.stuck_invariant", broken)
        """,
        """
        print(stuck.violations_frame()[["invariant", "message"]])
        broken = stuck.violations[0].invariant
        cw.check("02.stuck_invariant", broken)
        """,
    )
    b.md(
        """
        ## Summary

        Compensations run in reverse order, only for committed steps that have something to
        undo; a failure after the pivot is retried instead; and a compensation that never
        succeeds leaves the saga inconsistent: the simulator reports it rather than hiding it.
        """
    )
    return b


# =============================================================================================
# 03


def nb03() -> Book:
    b = Book(
        "03_orchestration_vs_choreography",
        "03 · Orchestration vs choreography",
        "35",
        [
            "describe how the same saga runs as an orchestration and as a choreography",
            "compare the two on messages, latency and who knows the outcome",
            "say who sends a lost message again in each style: the coordinator's retry, the "
            "broker's redelivery, the service's outbox relay",
        ],
        """
        In a **choreography** there is no coordinator: each service subscribes (through a
        broker) to the event that the previous step succeeded, does its part and publishes its
        own event. The simulator derives the choreography from the same step list, so both
        styles run the *same* saga under the *same* faults and the *same* random draws.
        """,
    )
    b.code(
        """
        trip = cw.bundled("trip_booking")
        flow = ss.choreography_flow(trip)
        flow
        """
    )
    b.md(
        """
        Each row says: when `topic` is published (by `publisher`), `subscriber` reacts. The
        failure and compensation paths are derived too. `ss.compare` runs both styles:
        """
    )
    b.code(
        """
        cmp = ss.compare(trip, seed=11)
        cmp.metrics
        """
    )
    b.code('viz.comparison_chart(cmp.metrics, title="Trip booking, 3 sagas, no faults")')
    b.code('viz.event_flow(flow, cmp.choreography.events, title="Trip booking as a choreography")')
    b.md(
        """
        Same number of messages? Every event goes to the broker and from the broker to its
        subscriber: two hops, like a command and its reply. Choreography does not save
        messages here; it removes the central decision maker.
        """
    )
    b.predict(
        "In the order fulfilment, `schedule_shipment` (retriable, after the pivot) fails once. "
        "Which style sends fewer messages?",
        "Choreography: the shipping service retries locally. The orchestrator must send the "
        "command again and get another reply.",
    )
    b.exercise(
        "03.fewer_messages_retriable",
        """
        orders = cw.bundled("order_fulfillment")
        retry = ["{kind: fail_step, step: schedule_shipment}"]
        c = ss.compare(orders, faults=retry, seed=11, sagas=1)
        fewer = ...   # "orchestration" or "choreography"
        cw.check("03.fewer_messages_retriable", fewer)
        """,
        """
        orders = cw.bundled("order_fulfillment")
        retry = ["{kind: fail_step, step: schedule_shipment}"]
        c = ss.compare(orders, faults=retry, seed=11, sagas=1)
        print(c.metrics.loc["messages"])
        fewer = c.metrics.loc["messages"].idxmin()
        cw.check("03.fewer_messages_retriable", fewer)
        """,
    )
    b.md(
        """
        ## Lost messages

        A fault can pick a step's messages by `leg`: the `request` makes the step's service act
        (the coordinator's command; in choreography the broker's delivery of the triggering
        event), the `reply` is its outcome (the reply to the coordinator; in choreography the
        event the service publishes).
        """
    )
    b.predict(
        "In the sign-up, the `reply` of create_user is lost. What is the outcome in each style, "
        "and who sends the lost message again?",
        "Both complete. Orchestration: the coordinator times out (`policy.timeout`, 0.5 s) and "
        "re-sends the command; the identity service answers from its idempotency record. "
        "Choreography: the broker never acknowledged create_user.succeeded, so the identity "
        "service's outbox relay publishes it again after `policy.relay_timeout` (0.2 s), and "
        "this saga even finishes sooner than the orchestrated one.",
    )
    b.exercise(
        "03.lost_reply",
        """
        signup = cw.bundled("user_registration")
        lost = ss.compare(signup, faults=["{kind: drop, step: create_user, leg: reply}"], seed=7)
        outcomes = {"orchestration": ..., "choreography": ...}
        cw.check("03.lost_reply", outcomes)
        """,
        """
        signup = cw.bundled("user_registration")
        lost = ss.compare(signup, faults=["{kind: drop, step: create_user, leg: reply}"], seed=7)
        outcomes = {"orchestration": lost.orchestration.outcome,
                    "choreography": lost.choreography.outcome}
        cw.check("03.lost_reply", outcomes)
        """,
    )
    b.code(
        """
        viz.timeline(lost.choreography.events, saga=1,
                     title="Choreography: the event is lost, the outbox relay publishes it again")
        """
    )
    b.md(
        """
        The `retry` row by `identity` is the relay: the broker acknowledges every event it
        receives, and a service publishes again what was not acknowledged in time. The broker
        cannot redeliver an event it never received, so this relay is the only copy: switch it
        off (`policy.outbox: false`) and the same lost event stalls the choreography, with
        nobody waiting for it. Notebook 04 is about that safeguard.
        """
    )
    b.code(
        """
        ev = lost.choreography.events
        ev[ev["kind"] == "retry"][["time", "source", "message", "detail"]]
        """
    )
    b.md(
        """
        ## Where the styles part ways

        With the lost reply both styles produced the same effects in the same order
        (`lost.sentence()` says so). They part ways when a service stays unreachable for
        longer than the orchestrator waits: here the identity service is down from 0.01 s for
        2 s. `sentence()` and `divergence` say where the effects first differ.
        """
    )
    b.code(
        """
        print(lost.sentence())
        down = ss.compare(signup, faults=["{kind: crash, service: identity, at: 0.01, for: 2.0}"],
                          seed=7)
        print(down.orchestration.outcome, down.choreography.outcome)
        down.sentence()
        """
    )
    b.exercise(
        "03.divergence_step",
        """
        step = ...
        cw.check("03.divergence_step", step)
        """,
        """
        print(down.divergence)
        step = down.divergence.choreography.split()[1]   # "commits create_user at ..."
        cw.check("03.divergence_step", step)
        """,
        note="""
        The orchestrator gives up after its retries, asks the identity service whether
        create_user ran (it never did) and ends the saga compensated (validate_input has
        nothing to undo); the broker keeps the event until the service is back.
        """,
    )
    b.predict(
        "Now the *request* to create the user is lost once. Which style finishes sooner?",
        "Orchestration: it re-sends after its timeout (0.5 s) plus a short backoff. The broker "
        "redelivers only after `policy.redelivery` (1 s) without an acknowledgement.",
    )
    b.exercise(
        "03.faster_on_lost_request",
        """
        req = ss.compare(signup, faults=["{kind: drop, step: create_user, leg: request}"], seed=7)
        faster = ...
        cw.check("03.faster_on_lost_request", faster)
        """,
        """
        req = ss.compare(signup, faults=["{kind: drop, step: create_user, leg: request}"], seed=7)
        print(req.metrics.loc["latency_mean"])
        faster = req.metrics.loc["latency_mean"].idxmin()
        cw.check("03.faster_on_lost_request", faster)
        """,
    )
    b.md("Try it: lower the broker's redelivery delay and run the comparison again.")
    b.code(
        """
        quick = cw.variant(signup, policy={"redelivery": 0.3})
        lost_request = ["{kind: drop, step: create_user, leg: request}"]
        ss.compare(quick, faults=lost_request, seed=7).metrics.loc["latency_mean"]
        """
    )
    b.md(
        """
        ## Who knows the outcome?

        In orchestration the coordinator declares the end of every saga. In choreography the
        service that does the last piece of work finds out (the `declared_by` column); in a
        saga with parallel branches (`after:` in the scenario file), the service that has
        heard every branch end.
        """
    )
    b.exercise(
        "03.who_declares",
        """
        run = ss.simulate(trip, "choreography", faults=["{kind: fail_step, step: book_flight}"],
                          seed=11)
        who = ...
        cw.check("03.who_declares", who)
        """,
        """
        run = ss.simulate(trip, "choreography", faults=["{kind: fail_step, step: book_flight}"],
                          seed=11)
        print(run.sagas[["saga", "outcome", "declared_by"]])
        who = run.sagas.loc[0, "declared_by"]
        cw.check("03.who_declares", who)
        """,
    )
    b.md(
        """
        **Coupling.** Who talks to whom? In orchestration every service talks only to the
        coordinator (which knows everyone); in choreography every service talks only to the
        broker, but knows the *events* of its neighbours.
        """
    )
    b.code(
        """
        for style, r in ss.compare(trip, seed=11).runs.items():
            sends = r.events[r.events["kind"] == "send"]
            print(style, dict(sends.groupby("source")["target"].unique().map(sorted)))
        """
    )
    b.exercise(
        "03.where_is_the_state",
        """
        where = ...   # "a", "b" or "c"
        cw.check("03.where_is_the_state", where)
        """,
        """
        where = "c"
        cw.check("03.where_is_the_state", where)
        """,
    )
    b.md(
        """
        ## Summary

        Orchestration puts the saga's logic and state in one place, which notices lost replies
        and knows every saga's outcome, at the cost of a central component. Choreography spreads
        the logic over the services; it is loosely coupled, and no one waits for a saga as a
        whole: a lost event is recovered only by the broker's redelivery and each service's
        outbox relay (switch the relay off and a lost event stalls the saga with nobody
        noticing), and nobody holds the whole picture.
        """
    )
    return b


# =============================================================================================
# 04


SAFE_SOLUTION = """\
class SafeIdentity(cw.Participant):
    def action(self, request, db):
        key = (request.saga, request.step)
        if ("undone",) + key in db:        # barrier: its compensation already ran
            return cw.REFUSE
        if ("done",) + key in db:          # idempotent: the user exists already
            return cw.SKIP
        db[("done",) + key] = True
        return cw.APPLY

    def compensation(self, request, db):
        key = (request.saga, request.step)
        if ("undone",) + key in db:        # idempotent compensation
            return cw.SKIP
        db[("undone",) + key] = True
        return cw.UNDO if ("done",) + key in db else cw.NULL   # null compensation
"""


def nb04() -> Book:
    b = Book(
        "04_unreliable_networks",
        "04 · Unreliable networks: duplicates, lost and late messages",
        "40",
        [
            "explain why at-least-once delivery makes duplicates unavoidable",
            "write an idempotent consumer, and say which key it must remember",
            "explain the late request after its compensation, and the barrier that stops it",
            "plug your own participant code into a step and have it graded on many seeds",
        ],
        """
        Networks lose, duplicate, delay and reorder messages. Senders re-send what they think is
        lost, brokers redeliver what is not acknowledged: messages arrive **at least once**. The
        services must cope. The simulator has a safeguard for each problem, switched by the
        scenario's `policy`: `idempotent` (deduplicate), `barrier` (refuse an action after its
        compensation), `query_status` (ask before giving up on a step) and `outbox` (commit a
        message with the state change it announces, and publish it until the broker has it).
        We switch them off to see why they exist, and then you write the first two yourself.
        """,
    )
    b.code(
        """
        signup = cw.bundled("user_registration")
        signup.policy
        """
    )
    b.md("## Duplicates")
    b.predict(
        "With `policy.idempotent: false`, the create_user request is delivered twice. What goes "
        "wrong, and which invariant reports it?",
        "Two users are created for one sign-up: the effect is applied twice (duplicate_effect).",
    )
    b.code(
        """
        careless = cw.variant(signup, policy={"idempotent": False})
        dup = ["{kind: duplicate, step: create_user, leg: request}"]
        for sc in (signup, careless):
            r = ss.simulate(sc, "orchestration", faults=dup, seed=7)
            print("idempotent" if sc.policy.idempotent else "careless  ", r.outcome,
                  [v.invariant for v in r.violations])
        """
    )
    b.exercise(
        "04.duplicate_without_dedup",
        """
        broken = ...
        cw.check("04.duplicate_without_dedup", broken)
        """,
        """
        r = ss.simulate(careless, "orchestration", faults=dup, seed=7)
        broken = r.violations[0].invariant
        cw.check("04.duplicate_without_dedup", broken)
        """,
    )
    b.md(
        """
        ## What identifies a duplicate?

        Every message has a `msg_id`. Is a re-sent message the *same* message?
        """
    )
    b.exercise(
        "04.retry_same_id",
        """
        lost_reply = ["{kind: drop, step: create_user, leg: reply}"]
        run = ss.simulate(signup, "orchestration", faults=lost_reply, seed=7)
        ev = run.events
        commands = ev[(ev["kind"] == "send") & (ev["message"] == "create_user")]
        same = ...   # True or False
        cw.check("04.retry_same_id", same)
        """,
        """
        lost_reply = ["{kind: drop, step: create_user, leg: reply}"]
        run = ss.simulate(signup, "orchestration", faults=lost_reply, seed=7)
        ev = run.events
        commands = ev[(ev["kind"] == "send") & (ev["message"] == "create_user")]
        print(commands[["time", "msg_id", "attempt"]])
        same = commands["msg_id"].nunique() == 1
        cw.check("04.retry_same_id", same)
        """,
    )
    b.exercise(
        "04.redelivery_same_id",
        """
        lost_request = ["{kind: drop, step: create_user, leg: request}"]
        run = ss.simulate(signup, "choreography", faults=lost_request, seed=7)
        ev = run.events
        deliveries = ev[(ev["kind"] == "send") & (ev["source"] == "broker")
                        & (ev["target"] == "identity")]
        same = ...
        cw.check("04.redelivery_same_id", same)
        """,
        """
        lost_request = ["{kind: drop, step: create_user, leg: request}"]
        run = ss.simulate(signup, "choreography", faults=lost_request, seed=7)
        ev = run.events
        deliveries = ev[(ev["kind"] == "send") & (ev["source"] == "broker")
                        & (ev["target"] == "identity")]
        print(deliveries[["time", "msg_id", "attempt", "detail"]])
        same = deliveries["msg_id"].nunique() == 1
        cw.check("04.redelivery_same_id", same)
        """,
    )
    b.exercise(
        "04.dedup_key",
        """
        key = ...   # "a", "b" or "c"
        cw.check("04.dedup_key", key)
        """,
        """
        key = "a"
        cw.check("04.dedup_key", key)
        """,
    )
    b.md(
        """
        ## Late requests: the barrier

        A request can arrive *after* the coordinator gave up on it and compensated. The
        compensation found nothing to undo (a **null compensation**); then the late request
        creates the user, and nobody will ever delete it. Two policy switches matter here:
        `barrier` (a service refuses an action whose compensation already ran) and
        `query_status` (before compensating a step that timed out for good, the coordinator
        asks its service whether it ran). We switch both off first.
        """
    )
    b.predict(
        "Every create_user request is delayed by 5 s; `barrier` and `query_status` are off. "
        "What happens?",
        "The coordinator times out four times (0.5 s each plus backoff), compensates create_user "
        "(a null compensation, nothing was created yet), declares the saga compensated; then the "
        "delayed requests arrive and create the user after its compensation: "
        "action_after_compensation.",
    )
    b.exercise(
        "04.late_request_without_barrier",
        """
        late = ["{kind: delay, step: create_user, leg: request, extra: 5}"]
        unguarded = cw.variant(signup, policy={"barrier": False, "query_status": False})
        run = ss.simulate(unguarded, "orchestration", faults=late, seed=7)
        broken = ...
        cw.check("04.late_request_without_barrier", broken)
        """,
        """
        late = ["{kind: delay, step: create_user, leg: request, extra: 5}"]
        unguarded = cw.variant(signup, policy={"barrier": False, "query_status": False})
        run = ss.simulate(unguarded, "orchestration", faults=late, seed=7)
        broken = run.violations[0].invariant
        cw.check("04.late_request_without_barrier", broken)
        """,
    )
    b.md(
        """
        Now each switch on its own. Asking the service helps only if its answer also *fences*
        the step (the barrier records "declared not run" and refuses the late request); asking
        without a barrier just moves the damage:
        """
    )
    b.code(
        """
        rows = []
        for barrier in (False, True):
            for query in (False, True):
                sc = cw.variant(signup, policy={"barrier": barrier, "query_status": query})
                r = ss.simulate(sc, "orchestration", faults=late, seed=7)
                broken = ", ".join(v.invariant for v in r.violations)
                rows.append((barrier, query, r.outcome, broken))
        pd.DataFrame(rows, columns=["barrier", "query_status", "outcome", "violations"])
        """
    )
    b.code(
        """
        run = ss.simulate(signup, "orchestration", faults=late, seed=7)   # the defaults: both on
        viz.timeline(run.events, saga=1, title="Late requests, refused by the barrier")
        """
    )
    b.md(
        """
        ## Your own participant

        Now you write the service's code. A `cw.Participant` subclass is plugged into a step:

        ```python
        run = ss.simulate(signup, faults=..., participants={"create_user": MyParticipant()})
        ```

        The identity service calls your methods **at the commit point** of its local
        transaction (after the work took its time; not if the transaction aborted or the service
        crashed first):

        - `action(request, db)` returns `cw.APPLY` (create the user), `cw.SKIP` (it exists
          already: create nothing, answer success) or `cw.REFUSE` (create nothing, answer
          failure);
        - `compensation(request, db)`, if you define it, returns `cw.UNDO` (delete the user),
          `cw.NULL` (nothing to undo) or `cw.SKIP` (already deleted).

        `request` has `saga`, `step`, `phase`, `msg_id`, `attempt`, `message`, `source`, `time`.
        `db` is a dict: the service's own table. What you write there commits with the
        transaction and survives crashes. For what you plug, the service's built-in safeguards
        are off: they are your job (the grader also switches `query_status` off, so late
        requests reach your code). The base class applies everything:
        """
    )
    b.code(
        """
        naive = ss.simulate(signup, faults=dup, seed=7,
                            participants={"create_user": cw.Participant()})
        naive.outcome, [v.message for v in naive.violations]
        """
    )
    b.md(
        """
        `cw.grade(exercise, YourClass)` runs your class under several families of faults, in
        both styles, on visible seeds and on **hidden** seeds, and compares each run with a
        correct service. A failure on a visible seed tells you the seed: replay it with
        `ss.simulate(...)` and look at the timeline.
        """
    )
    b.exercise(
        "04.idempotent_consumer",
        """
        class MyConsumer(cw.Participant):
            def action(self, request, db):
                # Was this user created already (look in db)? If you create it, remember it.
                return cw.APPLY

        cw.check("04.idempotent_consumer", MyConsumer)
        """,
        """
        class MyConsumer(cw.Participant):
            def action(self, request, db):
                key = ("done", request.saga, request.step)   # the business key, not msg_id
                if key in db:
                    return cw.SKIP
                db[key] = True
                return cw.APPLY

        cw.check("04.idempotent_consumer", MyConsumer)
        """,
        note="""
        Try a first version that remembers `request.msg_id`, and read what the grader says.
        """,
    )
    b.code(
        """
        grade = cw.grade("04.idempotent_consumer", MyConsumer)
        grade.invariants()
        """
    )
    b.code("grade.failures().head(10)")
    b.exercise(
        "04.safe_participant",
        """
        class SafeIdentity(cw.Participant):
            def action(self, request, db):
                return cw.APPLY

            def compensation(self, request, db):
                return cw.UNDO

        cw.check("04.safe_participant", SafeIdentity)
        """,
        SAFE_SOLUTION + '\ncw.check("04.safe_participant", SafeIdentity)',
        note="""
        Start from your consumer. Which of the families (`cw.grade(...).failures()`) does each
        rule fix?
        """,
    )
    b.md(
        """
        ## Lost on its way to the broker: the transactional outbox

        One loss the safeguards above cannot fix: an event lost between a service and the
        broker. The broker redelivers what it delivered and was not acknowledged, but it
        cannot redeliver what it never received, and in a choreography nobody else is waiting
        for the event. With `policy.outbox` (the default) the service writes the event to an
        outbox table *in the same local transaction* as its change, and a relay publishes it
        until the broker acknowledges it: after `policy.relay_timeout` (0.2 s) without an
        acknowledgement it publishes it again, waiting `policy.backoff` times longer each time.
        (The same outbox covers a crash between the commit and the send: the relay sends the
        message when the service restarts.)
        """
    )
    b.predict(
        "Without the outbox (`policy.outbox: false`), the event that identity publishes after "
        "creating the user is lost on its way (`{kind: drop, step: create_user, leg: reply}`). "
        "What happens in each style?",
        "Orchestration completes: the lost message is the reply; the coordinator times out, "
        "re-sends, and the idempotent service answers from its record. Choreography stalls: "
        "the broker never had create_user.succeeded, identity had already acknowledged the "
        "trigger (its commit was durable), so nothing is redelivered and nobody is waiting.",
    )
    b.exercise(
        "04.no_outbox",
        """
        lost_event = ["{kind: drop, step: create_user, leg: reply}"]
        no_outbox = cw.variant(signup, policy={"outbox": False})
        cmp = ss.compare(no_outbox, faults=lost_event, seed=7)
        outcomes = {"orchestration": ..., "choreography": ...}
        cw.check("04.no_outbox", outcomes)
        """,
        """
        lost_event = ["{kind: drop, step: create_user, leg: reply}"]
        no_outbox = cw.variant(signup, policy={"outbox": False})
        cmp = ss.compare(no_outbox, faults=lost_event, seed=7)
        outcomes = {style: r.outcome for style, r in cmp.runs.items()}
        cw.check("04.no_outbox", outcomes)
        """,
    )
    b.code(
        """
        viz.timeline(cmp.choreography.events, saga=1,
                     title="No outbox: the lost event is never published again")
        """
    )
    b.md(
        """
        With the outbox on (the default), the same fault, and the same fault three times in a
        row: the relay's `retry` rows come 0.2 s, then 0.4 s, then 0.8 s after each publish.
        """
    )
    b.code(
        """
        with_outbox = ss.compare(signup, faults=lost_event, seed=7)   # the default: outbox on
        print(with_outbox.metrics.loc[["completed", "stalled"]])
        three = ["{kind: drop, step: create_user, leg: reply, count: 3}"]
        run = ss.simulate(signup, "choreography", faults=three, seed=7)
        ev = run.events
        print(run.outcome)
        ev[ev["kind"].isin(["drop", "retry"])][["time", "kind", "source", "message", "detail"]]
        """
    )
    b.md(
        """
        ### And a crash right after the commit?

        A crash fault can fire between a service's commit and its send:
        `{kind: crash, service: identity, when: after_commit, step: create_user, for: 1.0}`.
        """
    )
    b.predict(
        "Without the outbox, identity crashes right after creating the user, before its "
        "message goes out, and restarts 1 s later. Does the saga stall?",
        "No, in neither style: the message is lost, but the other side still holds a copy of "
        "what triggered it. Orchestration: the coordinator times out and re-sends; the "
        "restarted service answers from its idempotency record. Choreography: identity "
        "crashed before it acknowledged the trigger, so the broker redelivers it after the "
        "restart, and the idempotent consumer publishes the recorded outcome again. The "
        "outbox only makes it sooner: its "
        "relay sends the message the moment identity restarts.",
    )
    b.code(
        """
        crash = ["{kind: crash, service: identity, when: after_commit, step: create_user, "
                 "for: 1.0}"]
        rows = []
        for outbox in (False, True):
            sc = cw.variant(signup, policy={"outbox": outbox})
            for style, r in ss.compare(sc, faults=crash, seed=7).runs.items():
                rows.append((outbox, style, r.outcome, round(r.sagas.loc[0, "latency"], 3),
                             int(r.sagas.loc[0, "timeouts"])))
        pd.DataFrame(rows, columns=["outbox", "style", "outcome", "latency (s)", "timeouts"])
        """
    )
    b.md(
        """
        ## Summary

        At-least-once delivery gives duplicates; an idempotent consumer remembers the business
        key of what it applied, in the same transaction as the effect. A late request after its
        compensation needs a barrier, and a compensation for something that never happened
        must be recorded as a null compensation. An event that follows a commit must be
        committed with it and published until the broker acknowledges it (the outbox): the
        broker can redeliver only what it received, and in a choreography nobody else waits
        for the event.
        """
    )
    return b


# =============================================================================================
# 05


def nb05() -> Book:
    b = Book(
        "05_concurrent_sagas",
        "05 · Concurrent sagas and isolation",
        "30",
        [
            "explain why sagas lack isolation (the I of ACID)",
            "measure how many sagas overlap, and how long a doomed saga's effects stand",
            "name the isolation anomalies, see them in a race for stock, and remove them",
        ],
        """
        Each local transaction commits at once, so its effect is visible to everyone *before*
        the saga as a whole has succeeded. When sagas run concurrently, one saga can read
        what another saga will later compensate.
        """,
    )
    b.code(
        """
        orders = cw.bundled("order_fulfillment")
        busy = cw.variant(orders, workload={"sagas": 12,
                                            "interarrival": {"dist": "exponential", "mean": 0.03}})
        run = ss.simulate(busy, "orchestration",
                          faults=["{kind: fail_step, step: reserve_stock, saga: 4}"], seed=2)
        run.sagas[["saga", "start", "end", "latency", "outcome"]]
        """
    )
    b.code('viz.timeline(run.events, saga=[3, 4, 5], title="Three of the twelve sagas")')
    b.predict(
        "Sagas start about 30 ms apart and take about 200 ms. How many are in flight at the "
        "busiest moment?",
        "About 200 / 30, six or seven; arrivals are random, so bursts push it higher. This run: 7.",
    )
    b.exercise(
        "05.max_in_flight",
        """
        points = [(t, +1) for t in run.sagas["start"]] + [(t, -1) for t in run.sagas["end"]]
        in_flight = ...   # sweep through the points in time order, keep the maximum
        cw.check("05.max_in_flight", in_flight)
        """,
        """
        points = [(t, +1) for t in run.sagas["start"]] + [(t, -1) for t in run.sagas["end"]]
        current = in_flight = 0
        for _t, d in sorted(points):
            current += d
            in_flight = max(in_flight, current)
        cw.check("05.max_in_flight", in_flight)
        """,
    )
    b.md(
        """
        ## A doomed saga's effects are visible

        Saga 4 charges the card, then fails at the pivot and is refunded. Between the charge and
        the refund, anyone reading the payment service's store sees a charge that will vanish:
        a **dirty read** waiting to happen. `viz.store_at` shows what each store holds at a
        moment:
        """
    )
    b.code(
        """
        charge4 = [e for e in run.effects if e[2] == 4 and e[3] == "charge_card"]
        charge4
        """
    )
    b.code(
        """
        t = (charge4[0][0] + charge4[1][0]) / 2   # a moment while saga 4's charge stands
        viz.store_at(run.events, t, saga=[3, 4, 5])
        """
    )
    b.exercise(
        "05.dirty_window",
        """
        window = ...   # seconds between saga 4's charge_card commit and its compensation
        cw.check("05.dirty_window", window)
        """,
        """
        window = charge4[1][0] - charge4[0][0]
        cw.check("05.dirty_window", window)
        """,
    )
    b.exercise(
        "05.exposed_sagas",
        """
        start, end = charge4[0][0], charge4[1][0]
        exposed = ...   # the other sagas with a commit strictly inside (start, end)
        cw.check("05.exposed_sagas", exposed)
        """,
        """
        start, end = charge4[0][0], charge4[1][0]
        exposed = sorted({saga for (time, _seq, saga, _step, op, _svc) in run.effects
                          if saga != 4 and op == "commit" and start < time < end})
        print(exposed)
        cw.check("05.exposed_sagas", exposed)
        """,
    )
    b.md(
        """
        ## Shared data: orders racing for stock

        In the order saga above, every saga touched its own records. Now six orders race for
        the same stock of four items. The inventory service reads the stock at the start of
        its local transaction and writes the new value when it commits, with four transactions
        in flight at once; saga 2's card is declined, so its reservation is compensated.
        """
    )
    b.code(
        """
        race_sc = cw.bundled("inventory_concurrency")
        print(race_sc.description)
        race = ss.simulate(race_sc, "orchestration", seed=0)
        ev = race.events
        stock = ev[ev["kind"].isin(["read", "tx_commit", "comp_commit"])
                   & ev["step"].isin(["check_stock", "reserve_stock"])]
        stock[["time", "saga", "kind", "step", "detail"]]
        """
    )
    b.predict(
        "Four items, six orders, one of them refunded. How many items should be left at the "
        "end if the sagas ran one after another (an order finding no stock is refused)? And in "
        "this run?",
        "One after another: four orders get an item, stock 0 (or 1 if the refunded order was "
        "among them). In this run every reservation read the stock before the others wrote it: "
        "the final value is 3, nowhere near what went out.",
    )
    b.exercise(
        "05.final_stock",
        """
        final = ...   # hint: the last row whose detail reads "stock: a -> b"
        cw.check("05.final_stock", final)
        """,
        """
        writes = stock[stock["kind"].isin(["tx_commit", "comp_commit"])
                       & stock["detail"].str.startswith("stock:")]
        final = int(writes["detail"].iloc[-1].split("->")[1])
        cw.check("05.final_stock", final)
        """,
    )
    b.md(
        """
        ## Anomalies

        With shared data, the missing isolation shows up as:

        - **lost update**: a saga overwrites a value computed from a stale read; another
          saga's update in between is lost;
        - **dirty read**: a saga acts on a value another saga wrote and later compensated;
        - **non-repeatable read**: a saga reads the same item twice and gets different values,
          because another saga changed it in between.

        The checker names them, with the rows that show them:
        """
    )
    b.code('race.violations_frame()[["invariant", "saga", "message"]]')
    b.exercise(
        "05.anomalies",
        """
        anomalies = ...   # a list of invariant names
        cw.check("05.anomalies", anomalies)
        """,
        """
        anomalies = sorted(set(race.violations_frame()["invariant"]))
        cw.check("05.anomalies", anomalies)
        """,
    )
    b.md(
        """
        ## Countermeasures

        - a **semantic lock**: a flag such as `status: pending` says the record is in the
          middle of a saga, so others wait, abort, or treat it with care;
        - **commutative updates**: apply increments to the current value (debit and credit in
          any order give the same result) instead of writing a value computed earlier;
        - **reread value**: before writing, check the data is unchanged since it was read;
        - **version file**: record versions or operations, so a stale write is redone on the
          current value;
        - (also: **pessimistic view**, reordering the steps so the risky ones come last, and
          **by value**, choosing the mechanism per request by its risk.)

        The simulator implements four of them as `policy.isolation` switches:
        """
    )
    b.code(
        """
        switches = type(race_sc.policy.isolation).model_fields
        pd.Series({name: field.description for name, field in switches.items()})
        """
    )
    b.predict(
        "Each countermeasure alone: do the anomalies disappear? What does each cost?",
        "All four remove the anomalies in this run. The semantic lock makes every other order "
        "abort on the pending item, so here no order at all gets through; reread aborts on "
        "change; commutative updates and versioning let three orders through with a correct "
        "stock.",
    )
    b.exercise(
        "05.costly_countermeasure",
        """
        rows = {}
        for name in ["semantic_lock", "commutative", "reread", "version"]:
            sc = cw.variant(race_sc, policy={"isolation": {name: True}})
            r = ...   # simulate it (orchestration, seed 0)
            # rows[name] = {**r.metrics["outcomes"], "violations": len(r.violations)}
        costly = ...
        cw.check("05.costly_countermeasure", costly)
        """,
        """
        rows = {}
        for name in ["semantic_lock", "commutative", "reread", "version"]:
            sc = cw.variant(race_sc, policy={"isolation": {name: True}})
            r = ss.simulate(sc, "orchestration", seed=0)
            rows[name] = {**r.metrics["outcomes"], "violations": len(r.violations)}
        table = pd.DataFrame(rows).T
        print(table)
        costly = table["completed"].idxmin()
        cw.check("05.costly_countermeasure", costly)
        """,
    )
    b.exercise(
        "05.stock_with_commutative",
        """
        commutative = cw.variant(race_sc, policy={"isolation": {"commutative": True}})
        left = ...
        cw.check("05.stock_with_commutative", left)
        """,
        """
        commutative = cw.variant(race_sc, policy={"isolation": {"commutative": True}})
        r = ss.simulate(commutative, "orchestration", seed=0)
        ev = r.events
        writes = ev[ev["kind"].isin(["tx_commit", "comp_commit"])
                    & ev["detail"].str.startswith("stock:")]
        left = int(writes["detail"].iloc[-1].split("->")[1])
        print(left, "items left;", r.metrics["outcomes"])
        cw.check("05.stock_with_commutative", left)
        """,
    )
    b.md(
        """
        Back to the order saga of the first part: look at what its steps write.
        """
    )
    b.code(
        """
        pd.DataFrame([(s.name, s.writes) for s in orders.steps], columns=["step", "writes"])
        """
    )
    b.exercise(
        "05.countermeasure",
        """
        which = ...   # "a", "b", "c" or "d"
        cw.check("05.countermeasure", which)
        """,
        """
        which = "c"
        cw.check("05.countermeasure", which)
        """,
    )
    b.md(
        """
        ## Capacity

        Concurrent sagas also compete for the services' workers. Each service has 4 by
        default; give the payment service only one:
        """
    )
    b.predict(
        "With a single payment worker, what happens to the saga latency at the 95th percentile?",
        "It grows: charges queue behind each other (each takes about 60 ms).",
    )
    b.code(
        """
        narrow = cw.variant(busy, services={"payment": {"workers": 1}})
        table = pd.DataFrame({"4 workers": ss.simulate(busy, seed=2).metrics,
                              "1 worker": ss.simulate(narrow, seed=2).metrics})
        table.loc[["latency_p50", "latency_p95"]]
        """
    )
    b.md(
        """
        ## Summary

        Sagas overlap, and each commits its steps for all to see before it knows it will
        succeed. The saga pattern gives up isolation: lost updates, dirty reads and
        non-repeatable reads follow. Countermeasures (semantic locks, commutative updates,
        rereads, versions) remove them, each at its own cost in aborted or delayed sagas.
        """
    )
    return b


# =============================================================================================
# 06


def nb06() -> Book:
    b = Book(
        "06_experiments",
        "06 · Experiments: fault matrix, Monte Carlo, sweeps",
        "35",
        [
            "run every single fault at every point of a saga (the fault matrix) and read it",
            "estimate outcome shares under random faults, with confidence intervals",
            "sweep a parameter and read a trend with its uncertainty",
            "find a minimal fault plan that breaks an invariant",
        ],
        """
        One run shows one story. An experiment runs many, and tells you how often each story
        happens, and which faults a design cannot survive.
        """,
    )
    b.md(
        """
        ## The fault matrix

        Every single fault at every point of the saga, in both styles, one saga each:
        """
    )
    b.code(
        """
        signup = cw.bundled("user_registration")
        matrix = ss.fault_matrix(signup, seed=7)
        matrix[["point", "style", "outcome", "violations", "fault"]].head(12)
        """
    )
    b.code(
        """
        from saga_sim.viz.experiments import matrix_figure
        matrix_figure(matrix, title="Sign-up: one fault at a time")
        """
    )
    b.md(
        """
        With every safeguard on (the scenario's policy), no single fault leaves either style
        stalled: a lost message is sent again by the coordinator's retry, the broker's
        redelivery or the service's outbox relay. Count the outcomes:
        """
    )
    b.code('matrix.groupby(["style", "outcome"]).size().unstack(fill_value=0)')
    b.md(
        """
        Now switch one safeguard off, the outbox relay (`policy.outbox: false`), and run the
        matrix again:
        """
    )
    b.code(
        """
        bare = cw.variant(signup, policy={"outbox": False})
        bare_matrix = ss.fault_matrix(bare, seed=7)
        bare_matrix.groupby(["style", "outcome"]).size().unstack(fill_value=0)
        """
    )
    b.exercise(
        "06.stalled_points",
        """
        stalled = ...   # a list of `point` values of bare_matrix
        cw.check("06.stalled_points", stalled)
        """,
        """
        sel = (bare_matrix["style"] == "choreography") & (bare_matrix["outcome"] == "stalled")
        stalled = bare_matrix[sel]["point"].tolist()
        print(stalled)
        cw.check("06.stalled_points", stalled)
        """,
        note="""
        Why not `send_welcome_email/drop_reply`? The notifier, whose step is the last, declares
        the saga completed when it commits: nobody needs its event.
        """,
    )
    b.exercise(
        "06.unsurvivable",
        """
        kind = ...
        cw.check("06.unsurvivable", kind)
        """,
        """
        bad = matrix[matrix["outcome"] == "inconsistent"]
        per_type = bad.groupby("fault_type")["style"].nunique()
        print(per_type)
        kind = per_type.idxmax()   # inconsistent in both styles
        cw.check("06.unsurvivable", kind)
        """,
    )
    b.md(
        """
        ## Monte Carlo

        Many sagas under random faults (`ss.Rates`: a step failure rate, crash rates, message
        loss and duplication). Shares come with 95 % Wilson intervals:
        """
    )
    b.code("ss.Rates()")
    b.code(
        """
        mc = ss.monte_carlo(signup, 2000, seed=1, executor="serial")
        mc.outcomes
        """
    )
    b.code(
        """
        from saga_sim.viz.experiments import latency_ecdf_figure, outcome_shares_figure
        outcome_shares_figure(mc.outcomes)
        """
    )
    b.code("latency_ecdf_figure(mc.ecdf)")
    b.md(
        """
        With the default policy both styles end the same shares of sagas completed and
        compensated, and none stalled: the random losses cost time, not sagas. The same
        Monte Carlo without the outbox relay:
        """
    )
    b.code(
        """
        mc_off = ss.monte_carlo(bare, 2000, seed=1, executor="serial")
        mc_off.outcomes
        """
    )
    b.exercise(
        "06.more_stalls",
        """
        more = ...
        cw.check("06.more_stalls", more)
        """,
        """
        stalled = mc_off.outcomes[mc_off.outcomes["outcome"] == "stalled"].set_index("style")
        print(stalled[["share", "ci_low", "ci_high"]])
        more = stalled["share"].idxmax()
        cw.check("06.more_stalls", more)
        """,
    )
    b.exercise(
        "06.intervals_overlap",
        """
        overlap = ...   # True or False
        cw.check("06.intervals_overlap", overlap)
        """,
        """
        o, c = stalled.loc["orchestration"], stalled.loc["choreography"]
        overlap = bool(o["ci_low"] <= c["ci_high"] and c["ci_low"] <= o["ci_high"])
        cw.check("06.intervals_overlap", overlap)
        """,
        note="""
        If they do not overlap, the difference is very unlikely to be chance at this sample
        size. If they did, you would need more sagas before concluding anything.
        """,
    )
    b.md(
        """
        ## A sweep

        One parameter over a grid, replicated with different seeds (the same seeds at every
        value and in both styles):
        """
    )
    b.predict(
        "How will the share of completed sagas change as `network.loss` grows from 0 to 0.2, "
        "in each style: first with the default policy, then with the outbox off?",
        "With the default policy it stays at 1.00 in both styles: the orchestrator re-sends "
        "after a timeout, the broker redelivers what was not acknowledged, and the outbox "
        "relay publishes again what the broker did not acknowledge; the losses cost time, "
        "not sagas. With the outbox off, orchestration still stays at 1.00, but choreography "
        "falls (0.94, 0.84 and 0.72 at a loss of 0.05, 0.1 and 0.2): every event lost on its "
        "way to the broker stalls a saga.",
    )
    b.code(
        """
        grid = [0.0, 0.05, 0.1, 0.2]
        sweep = ss.sweep(signup, "network.loss", grid, replications=5, seed=1, sagas=20,
                         executor="serial")
        ss.summarize_sweep(sweep, "completed")
        """
    )
    b.code(
        """
        sweep_off = ss.sweep(bare, "network.loss", grid, replications=5, seed=1, sagas=20,
                             executor="serial")
        summary = ss.summarize_sweep(sweep_off, "completed")
        summary
        """
    )
    b.code(
        """
        from saga_sim.viz.experiments import sweep_figure
        sweep_figure(sweep_off, "completed", title="Completed share vs network loss, no outbox")
        """
    )
    b.exercise(
        "06.completed_at_10pct_loss",
        """
        share = ...
        cw.check("06.completed_at_10pct_loss", share)
        """,
        """
        row = summary[(summary["value"] == 0.1) & (summary["style"] == "choreography")]
        share = float(row["mean"].iloc[0])
        cw.check("06.completed_at_10pct_loss", share)
        """,
    )
    b.md(
        """
        ## Find and shrink

        `ss.find_and_shrink` tries random fault plans until one breaks an invariant, then removes
        faults one by one while it still breaks: what is left is a minimal, replayable plan.
        """
    )
    b.code(
        """
        careless = cw.variant(signup, policy={"idempotent": False})
        found = ss.find_and_shrink(careless, "orchestration", seed=3)
        print(found)
        """
    )
    b.exercise(
        "06.shrunk_kind",
        """
        kind = ...
        cw.check("06.shrunk_kind", kind)
        """,
        """
        kind = found.faults[0]["kind"]
        cw.check("06.shrunk_kind", kind)
        """,
    )
    b.md(
        """
        ## Summary

        The fault matrix shows which single faults a design cannot survive (some no style can,
        others only once a safeguard is off); Monte Carlo says how often things go wrong, with
        intervals that tell you whether a difference is real; sweeps show trends; shrinking
        turns a random failure into a minimal test case.
        """
    )
    return b


# =============================================================================================
# 07


MY_SAGA_STUDENT = '''\
my_saga = """
name: my-saga
title: ...
services:
  first: {}
  second: {}
steps:
  - name: step_one
    service: first
    action: do_one
    compensation: undo_one
  - name: step_two
    service: second
    action: do_two
    kind: pivot
"""
cw.check("07.my_saga", my_saga)
'''

MY_SAGA_SOLUTION = '''\
my_saga = """
name: concert-ticket
title: Buy a concert ticket
description: >-
  Hold a seat, charge the card, issue the ticket (the pivot: it is sent to the buyer's wallet),
  then email it and add loyalty points, both retried until they succeed.
services:
  seats: {description: seat map of the venue}
  payments: {description: card payments}
  tickets: {description: issues and emails tickets}
  loyalty: {description: loyalty points}
steps:
  - name: hold_seat
    service: seats
    action: hold_seat
    compensation: release_seat
    duration: {dist: exponential, mean: 0.02}
  - name: charge_card
    service: payments
    action: charge_card
    compensation: refund_card
    duration: {dist: lognormal, mean: 0.06, sd: 0.02}
  - name: issue_ticket
    service: tickets
    action: issue_ticket
    kind: pivot
    duration: {dist: exponential, mean: 0.03}
  - name: email_ticket
    service: tickets
    action: email_ticket
    kind: retriable
  - name: add_points
    service: loyalty
    action: add_points
    kind: retriable
policy: {timeout: 0.5, retries: 3, backoff: 2.0}
"""
cw.check("07.my_saga", my_saga)
'''


def nb07() -> Book:
    b = Book(
        "07_design_your_own_saga",
        "07 · Design your own saga",
        "40",
        [
            "write a scenario file, validate it and read its errors",
            "choose step kinds (compensatable, pivot, retriable) for a real process",
            "make a design survive a set of faults, by choosing its policy",
        ],
        """
        You write a saga of your own, for a process you know: buying a ticket, opening a bank
        account, publishing an article. The scenario format is in the project's README.
        """,
    )
    b.md(
        """
        ## Reading validation errors

        A scenario is validated at once, and every problem comes with its field path:
        """
    )
    b.code("print(cw.BROKEN_SCENARIO)")
    b.code(
        """
        try:
            ss.parse_scenario(cw.BROKEN_SCENARIO, source="broken.yaml")
        except ss.ScenarioError as err:
            for p in err.problems:
                print(p.path, "->", p.message)
        """
    )
    b.exercise(
        "07.find_problems",
        """
        paths = ...   # a list of every problem's path (fix the first, validate again)
        cw.check("07.find_problems", paths)
        """,
        """
        fixed = cw.BROKEN_SCENARIO.replace("backof:", "backoff:")
        try:
            ss.parse_scenario(fixed, source="broken.yaml")
        except ss.ScenarioError as err:
            for p in err.problems:
                print(p.path, "->", p.message)
        paths = ["policy.backof", "steps[1].service", "steps[2].compensation"]
        cw.check("07.find_problems", paths)
        """,
    )
    b.md(
        """
        ## Your saga

        Pick a process. For each step decide: can it be undone (then give it a
        `compensation`)? Is it the point of no return (the `pivot`)? Must it happen once the
        pivot has (`retriable`)? The brief for the check: at least 4 steps, at least 3
        services, a pivot, at least one retriable step, and at least two steps with a
        compensation.
        """
    )
    b.exercise("07.my_saga", MY_SAGA_STUDENT, MY_SAGA_SOLUTION)
    b.code(
        """
        mine = ss.parse_scenario(my_saga)
        cmp = ss.compare(mine, seed=1)
        cmp.metrics
        """
    )
    b.code("viz.event_flow(ss.choreography_flow(mine), cmp.choreography.events, title=mine.title)")
    b.md("## The fault matrix of your saga")
    b.code(
        """
        from saga_sim.viz.experiments import matrix_figure
        matrix = ss.fault_matrix(mine, seed=1)
        matrix_figure(matrix, title=mine.title)
        """
    )
    b.md(
        """
        One kind of cell is expected whatever you do: a compensation that fails forever leaves
        the saga inconsistent (nothing can undo that step: a human must). A lost result event
        (`drop_reply`) costs only time with the default policy: the orchestrator asks again,
        and in choreography the service's outbox relay publishes the event again. Switch the
        outbox off (`policy.outbox: false`, notebook 04) and, in a line of steps, every
        `drop_reply` cell but the last step's stalls the choreography: the broker never had
        the event and nobody is waiting for it. The rest is up to your design.

        ## Make it survive

        `cw.survival_faults(sc)` lists harder fault plans: every step failing, requests lost
        and duplicated, every service down for 3 s, compensations failing 7 times before they
        work, and the pivot's requests delayed by 3 s. Every run must end `completed` or
        `compensated`, in both styles.
        """
    )
    b.code("[label for label, _faults in cw.survival_faults(mine)]")
    b.predict(
        "Which of these plans will your saga, with the default policy, not survive, and why?",
        "With the default policy (compensation_retries 5): a compensation failing 7 times "
        "exhausts the retries (inconsistent: the effect stands, a human must step in). The "
        "pivot delayed by 3 s survives: the coordinator gives up after about 2.4 s, asks the "
        "ticket service whether it ran (`query_status`), and the barrier refuses the late "
        "request.",
    )
    b.exercise(
        "07.survives",
        """
        survivor = my_saga   # change the policy in a copy of your text until the check passes
        cw.check("07.survives", survivor)
        """,
        """
        survivor = my_saga.replace(
            "policy: {timeout: 0.5, retries: 3, backoff: 2.0}",
            "policy: {timeout: 0.5, retries: 3, backoff: 2.0, compensation_retries: 8}",
        )
        cw.check("07.survives", survivor)
        """,
        note="""
        Which policy settings decide how long the coordinator keeps trying a step, and a
        compensation? Then try `query_status: false` in your policy: what does giving up on
        a pivot too early cost?
        """,
    )
    b.md(
        """
        ## Summary

        Designing a saga is choosing, for every step, how it can be undone (or not), where the
        point of no return is, and how long to keep trying before giving up. The simulator
        shows which faults each choice survives.
        """
    )
    return b


BOOKS = [nb01, nb02, nb03, nb04, nb05, nb06, nb07]


def main(out: Path = HERE) -> None:
    """Write every notebook, both versions, under ``out`` (default: this folder)."""
    for make in BOOKS:
        make().write(out)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE)
