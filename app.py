"""saga-sim's Streamlit app: one saga, orchestrated and choreographed, side by side, under the
same injected failures.

The page is built by functions (``main`` calls them in order) so tests can drive it with
``streamlit.testing.v1.AppTest``. It uses only saga_sim's public API and ``saga_sim.viz``; every
simulation goes through ``simulate_pair``, cached by its hashable inputs (the scenario's YAML
text, the faults as YAML text, the seed and the saga count). The whole configuration lives in
the URL query string, so a link reproduces a run.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pandas as pd
import streamlit as st
import yaml

import saga_sim as ss
from saga_sim import share, viz
from saga_sim.bundled import scenario_text
from saga_sim.experiments import SWEEP_METRICS, get_param, param_paths
from saga_sim.run import Budget
from saga_sim.share import BOUNDS
from saga_sim.viz import experiments as vx

MAX_SAGAS = 2000
RUN_BUDGET = Budget(events=1_000_000, rows=500_000, seconds=10)
"""The most work one style's run may do for a visitor (~200 MB of trace at most)."""
DEFAULT_SCENARIO = "user_registration"
CUSTOM = "custom"
BADGE = {"completed": "green", "compensated": "orange", "inconsistent": "red", "stalled": "gray"}
ICON = {
    "completed": ":material/check_circle:",
    "compensated": ":material/undo:",
    "inconsistent": ":material/warning:",
    "stalled": ":material/pause_circle:",
}
PRESET_ICON = {
    "happy": ":material/check:",
    "late_step_fails": ":material/cancel:",
    "first_step_fails": ":material/block:",
    "service_down": ":material/power_off:",
    "reply_lost": ":material/mail_off:",
    "compensation_fails": ":material/sync_problem:",
    "partition": ":material/lan:",
    "duplicate": ":material/content_copy:",
    "coordinator_crash": ":material/dangerous:",
}
VIEWS = (
    "Timeline",
    "State graphs",
    "Compensation",
    "Comparison",
    "Time scrubber",
    "Invariants",
    "Experiments",
    "Share & export",
)
KNOBS = share.KNOBS
SWITCH_LABELS = {
    "idempotent": "Idempotent consumers",
    "outbox": "Transactional outbox",
    "barrier": "Barrier against late actions",
    "query_status": "Ask before compensating (status query)",
    "compensation_order": "Compensation order",
    "redelivery": "Broker redelivery after (s), 0 = off",
    "max_redeliveries": "Redeliveries before the dead-letter queue",
    "compensation_retries": "Compensation retries",
    "semantic_lock": "Semantic lock",
    "commutative": "Commutative updates",
    "reread": "Reread value before writing",
    "version": "Version file (optimistic)",
}
ISOLATION = ("semantic_lock", "commutative", "reread", "version")


def bundled_names() -> tuple[str, ...]:
    """The bundled scenarios' names (file stems), the running example first."""
    names = list(ss.bundled_scenarios())
    if DEFAULT_SCENARIO in names:
        names.remove(DEFAULT_SCENARIO)
        names.insert(0, DEFAULT_SCENARIO)
    return tuple(names)


# --------------------------------------------------------------------------------------------
# Cached library calls (keyed on hashable inputs only)


@st.cache_data(show_spinner=False)
def bundled_yaml(name: str) -> str:
    """A bundled scenario's YAML text."""
    return scenario_text(name)


@st.cache_resource(show_spinner=False, max_entries=64)
def parsed(yaml_text: str) -> ss.Scenario:
    """A validated scenario (frozen, so one shared object per text is safe)."""
    return ss.parse_scenario(yaml_text, source="scenario")


@st.cache_data(show_spinner=False, max_entries=64)
def effective_yaml(base_yaml: str, knobs: tuple) -> str:
    """The YAML text of the scenario with the knobs applied: the simulation's cache key."""
    sc = parsed(base_yaml)
    cfg = share.RunConfig(**dict(zip(KNOBS, knobs)))
    eff = share.apply_knobs(sc, cfg)
    return base_yaml if eff is sc else eff.to_yaml()


@st.cache_data(show_spinner="Simulating both styles…", max_entries=24)
def simulate_pair(yaml_text: str, faults: tuple[str, ...], seed: int, sagas: int | None) -> dict:
    """Run both styles (``ss.compare``) and keep only plain frames and values."""
    sc = parsed(yaml_text)
    cmp = ss.compare(sc, faults=list(faults), seed=seed, sagas=sagas, budget=RUN_BUDGET)
    div = cmp.divergence
    return {
        "events": {s: r.events for s, r in cmp.runs.items()},
        "sagas": {s: r.sagas for s, r in cmp.runs.items()},
        "metrics": {s: r.metrics for s, r in cmp.runs.items()},
        "violations": {s: r.violations_frame() for s, r in cmp.runs.items()},
        "notes": {s: [n for n in r.notes if n != r.stopped] for s, r in cmp.runs.items()},
        "stopped": {s: r.stopped for s, r in cmp.runs.items()},
        "table": cmp.metrics,
        "sentence": cmp.sentence(),
        "divergence": None if div is None else (div.time, div.saga),
        "n_sagas": cmp.orchestration.n_sagas,
    }


# --------------------------------------------------------------------------------------------
# State: the configuration lives in st.session_state (widgets) and in the URL


@dataclass(frozen=True)
class Context:
    """What every view needs: the configuration, the scenario and the simulated result."""

    cfg: share.RunConfig
    scenario: ss.Scenario
    yaml_text: str
    result: dict
    saga: int

    @property
    def step_kinds(self) -> dict[str, str]:
        return {s.name: s.kind for s in self.scenario.steps}

    def lanes(self, style: str) -> list[str]:
        """Every lane of a style's timeline, even a service that got no message."""
        hub = "coordinator" if style == "orchestration" else "broker"
        return ["client", hub, *self.scenario.services]


def widget_range(name: str) -> dict[str, Any]:
    """A knob widget's min and max, from the one table the link codec uses too."""
    b = BOUNDS[name]
    return {"min_value": b.kind(b.low), "max_value": b.kind(b.high)}


def scenario_defaults(sc: ss.Scenario) -> dict[str, Any]:
    """The knob values a scenario itself sets (every name of ``share.KNOBS``)."""
    p = sc.policy
    iso = p.isolation
    knobs = {
        "latency_ms": round(sc.network.latency.mean_value * 1000, 3),
        "loss": float(sc.network.loss),
        "duplicate": float(sc.network.duplicate),
        "timeout": float(p.timeout),
        "retries": int(p.retries),
        "idempotent": bool(p.idempotent),
        "outbox": bool(p.outbox),
        "barrier": bool(p.barrier),
        "query_status": bool(p.query_status),
        "compensation_order": str(p.compensation_order),
        "redelivery": 0.0 if p.redelivery is None else float(p.redelivery),
        "max_redeliveries": int(p.max_redeliveries),
        "compensation_retries": int(p.compensation_retries),
        "semantic_lock": bool(iso.semantic_lock),
        "commutative": bool(iso.commutative),
        "reread": bool(iso.reread),
        "version": bool(iso.version),
    }
    # a widget cannot show a value outside its range (a scenario may set timeout: 1e-9): show
    # the nearest; the run still uses the scenario's own value while the knob is untouched
    for k, v in knobs.items():
        if k in BOUNDS and not isinstance(v, bool):
            knobs[k] = BOUNDS[k].clamp(k, v)[0]
    return knobs


def base_yaml() -> str:
    """The YAML text of the scenario chosen in the sidebar (before knobs)."""
    choice = st.session_state.get("scenario_choice", DEFAULT_SCENARIO)
    if choice == CUSTOM and st.session_state.get("custom_yaml"):
        return st.session_state["custom_yaml"]
    if choice not in bundled_names():
        choice = DEFAULT_SCENARIO
    return bundled_yaml(choice)


def reset_knobs() -> None:
    """Set the knob widgets to the chosen scenario's own values."""
    try:
        sc = parsed(base_yaml())
    except ss.ScenarioError:
        return
    for k, v in scenario_defaults(sc).items():
        st.session_state[k] = v
    st.session_state["yaml_edit"] = base_yaml()


def problem_lines(err: ss.ScenarioError) -> list[str]:
    return [str(p) for p in err.problems]


def prune_faults(sc: ss.Scenario) -> None:
    """Drop active faults that do not fit the scenario (say which)."""
    kept, dropped = [], []
    for text in st.session_state.get("faults", []):
        try:
            ss.parse_faults([text], sc)
            kept.append(text)
        except ss.ScenarioError:
            dropped.append(text)
    st.session_state["faults"] = kept
    if dropped:
        st.session_state["notices"] = [
            f"Removed {len(dropped)} fault(s) that do not fit this scenario: " + "; ".join(dropped)
        ]


def init_state() -> None:
    """First run of a session: read the link (query string), else the defaults."""
    if st.session_state.get("_ready"):
        return
    st.session_state["_ready"] = True
    st.session_state.setdefault("faults", [])
    names = bundled_names()
    params = {k: st.query_params.get_all(k) for k in st.query_params}
    cfg = share.RunConfig()
    problems: list[str] = []
    if params:
        try:
            cfg = share.decode_config(params, names)
        except ss.ScenarioError as err:
            problems += problem_lines(err)
        st.session_state["notices"] = list(cfg.notices)
    if cfg.scenario_yaml is not None:
        try:
            parsed(cfg.scenario_yaml)
            st.session_state["custom_yaml"] = cfg.scenario_yaml
            st.session_state["scenario_choice"] = CUSTOM
        except ss.ScenarioError as err:
            problems += problem_lines(err)
            st.session_state["scenario_choice"] = DEFAULT_SCENARIO
    else:
        st.session_state["scenario_choice"] = cfg.scenario if cfg.scenario in names else names[0]
    sc = parsed(base_yaml())
    try:
        faults = ss.parse_faults(list(cfg.faults), sc, source="fault")
        st.session_state["faults"] = [share.fault_text(f) for f in faults]
    except ss.ScenarioError as err:
        problems += problem_lines(err)
    defaults = scenario_defaults(sc)
    for k in KNOBS:
        v = getattr(cfg, k)
        st.session_state[k] = defaults[k] if v is None else v
    st.session_state["seed"] = cfg.seed
    sagas = cfg.sagas if cfg.sagas is not None else sc.workload.sagas
    if sagas > MAX_SAGAS:
        st.session_state["notices"] = [
            *st.session_state.get("notices", []),
            f"The link asks for {sagas:,} sagas; the app runs at most {MAX_SAGAS:,} "
            "(use the library or the CLI for more).",
        ]
        sagas = MAX_SAGAS
    st.session_state["sagas"] = int(sagas)
    st.session_state["saga"] = int(min(cfg.saga, sagas))
    st.session_state["yaml_edit"] = base_yaml()
    if problems:
        st.session_state["link_problems"] = problems


def current_config(sc: ss.Scenario) -> share.RunConfig:
    """The configuration the widgets describe (knobs equal to the scenario's are left out)."""
    defaults = scenario_defaults(sc)
    knobs = {}
    for k in KNOBS:
        v = st.session_state.get(k, defaults[k])
        knobs[k] = None if v == defaults[k] else v
    choice = st.session_state.get("scenario_choice", DEFAULT_SCENARIO)
    custom = choice == CUSTOM
    sagas = int(st.session_state.get("sagas", sc.workload.sagas))
    return share.RunConfig(
        scenario=CUSTOM if custom else choice,
        scenario_yaml=st.session_state.get("custom_yaml") if custom else None,
        faults=tuple(st.session_state.get("faults", [])),
        seed=int(st.session_state.get("seed", 7)),
        sagas=None if sagas == sc.workload.sagas else sagas,
        saga=int(st.session_state.get("saga", 1)),
        **knobs,
    )


def sync_url(cfg: share.RunConfig) -> None:
    """Write the configuration into the query string (only when it changed)."""
    want = share.encode_config(cfg)
    have = {k: st.query_params.get_all(k) for k in st.query_params}
    norm = {k: v if isinstance(v, list) else [v] for k, v in want.items()}
    if norm != have:
        st.query_params.from_dict(want)


# --------------------------------------------------------------------------------------------
# Callbacks


def load_custom(text: str, source: str) -> None:
    """Validate a scenario text; on success make it the current scenario, else keep the last
    valid one and list every problem."""
    try:
        sc = parsed(text)
    except ss.ScenarioError as err:
        st.session_state["upload_problems"] = (source, problem_lines(err))
        return
    st.session_state.pop("upload_problems", None)
    st.session_state["custom_yaml"] = text
    st.session_state["scenario_choice"] = CUSTOM
    for k, v in scenario_defaults(sc).items():
        st.session_state[k] = v
    st.session_state["sagas"] = min(sc.workload.sagas, MAX_SAGAS)
    st.session_state["saga"] = 1
    st.session_state["yaml_edit"] = text
    prune_faults(sc)


def on_upload() -> None:
    f = st.session_state.get("upload")
    if f is None:
        return
    data = f.getvalue()
    if len(data) > 1024 * 1024:
        st.session_state["upload_problems"] = (
            f.name,
            [f"{f.name}: the file is {len(data):,} bytes; scenario files are limited to 1 MiB"],
        )
        return
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        st.session_state["upload_problems"] = (f.name, [f"{f.name}: the file is not UTF-8 text"])
        return
    load_custom(text, f.name)


def on_apply_yaml() -> None:
    load_custom(st.session_state.get("yaml_edit", ""), "the edited YAML")


def on_scenario_change() -> None:
    st.session_state.pop("upload_problems", None)
    for key in ("lesson", "matrix_pick", "sweep_param", "sweep_values"):
        st.session_state.pop(key, None)
    reset_knobs()
    sc = parsed(base_yaml())
    st.session_state["sagas"] = min(sc.workload.sagas, MAX_SAGAS)
    st.session_state["saga"] = 1
    prune_faults(sc)


def apply_preset(faults: tuple[str, ...]) -> None:
    sc = parsed(base_yaml())
    st.session_state["faults"] = [share.fault_text(f) for f in ss.parse_faults(list(faults), sc)]


def remove_fault(i: int) -> None:
    faults = list(st.session_state.get("faults", []))
    if 0 <= i < len(faults):
        faults.pop(i)
    st.session_state["faults"] = faults


def clear_faults() -> None:
    st.session_state["faults"] = []


def add_fault(data: dict) -> None:
    sc = parsed(base_yaml())
    try:
        (f,) = ss.parse_faults([data], sc, source="new fault")
    except ss.ScenarioError as err:
        st.session_state["builder_problems"] = problem_lines(err)
        return
    st.session_state.pop("builder_problems", None)
    st.session_state["faults"] = [*st.session_state.get("faults", []), share.fault_text(f)]


def reset_safeguards() -> None:
    sc = parsed(base_yaml())
    defaults = scenario_defaults(sc)
    for k in share.SAFEGUARDS:
        st.session_state[k] = defaults[k]


def lesson_by_key(sc: ss.Scenario, key: str | None) -> ss.Lesson | None:
    return next((x for x in ss.lessons(sc) if x.key == key), None)


def apply_lesson(key: str, fixed: bool) -> None:
    """Load a lesson: the scenario's own knobs, then the lesson's switches, faults, seed and
    saga count."""
    sc = parsed(base_yaml())
    lesson = lesson_by_key(sc, key)
    if lesson is None or not lesson.applies:
        return
    for k, v in scenario_defaults(sc).items():
        st.session_state[k] = v
    for k, v in (lesson.fix if fixed else lesson.without) or ():
        st.session_state[k] = v
    st.session_state["faults"] = [share.fault_text(f) for f in ss.parse_faults(lesson.faults, sc)]
    st.session_state["seed"] = lesson.seed
    sagas = lesson.sagas if lesson.sagas is not None else sc.workload.sagas
    st.session_state["sagas"] = min(sagas, MAX_SAGAS)
    st.session_state["saga"] = 1


# --------------------------------------------------------------------------------------------
# Sidebar


def sidebar_scenario() -> None:
    names = bundled_names()
    options = list(names) + ([CUSTOM] if st.session_state.get("custom_yaml") else [])

    # Labels are worked out now: the format function must not read the session state, which
    # is not there when Streamlit (or AppTest) formats the options outside a script run.
    labels = {name: parsed(bundled_yaml(name)).title or name for name in names}
    if CUSTOM in options:
        try:
            labels[CUSTOM] = f"{parsed(st.session_state['custom_yaml']).title or 'custom'} (yours)"
        except ss.ScenarioError:
            labels[CUSTOM] = "custom"

    def label(name: str) -> str:
        return labels.get(name, name)

    st.sidebar.selectbox(
        "Scenario",
        options,
        key="scenario_choice",
        format_func=label,
        on_change=on_scenario_change,
    )
    st.sidebar.file_uploader(
        "…or upload a scenario (YAML)",
        type=["yaml", "yml"],
        key="upload",
        on_change=on_upload,
        help="Every problem is listed with its field path; the last valid scenario stays loaded.",
    )
    with st.sidebar.expander("Edit the scenario YAML"):
        st.text_area("Scenario YAML", key="yaml_edit", height=300, label_visibility="collapsed")
        st.button("Apply YAML", key="apply_yaml", on_click=on_apply_yaml)


def sidebar_run(sc: ss.Scenario) -> None:
    st.sidebar.subheader("Run")
    c1, c2 = st.sidebar.columns(2)
    c1.number_input("Seed", **widget_range("seed"), step=1, key="seed")
    c2.number_input(
        "Sagas",
        min_value=1,
        max_value=MAX_SAGAS,
        step=1,
        key="sagas",
        help=f"The app runs at most {MAX_SAGAS:,} sagas; the library and CLI have no such cap.",
    )
    st.sidebar.caption(
        f"At most {MAX_SAGAS:,} sagas here (the library and the CLI take more). "
        f"The scenario's workload: {sc.workload.sagas}."
    )
    with st.sidebar.expander("Network and policy"):
        st.number_input("Mean network latency (ms)", **widget_range("latency_ms"), key="latency_ms")
        st.slider("Message loss probability", **widget_range("loss"), key="loss", step=0.01)
        st.slider(
            "Duplication probability", **widget_range("duplicate"), key="duplicate", step=0.01
        )
        st.number_input("Reply timeout (s)", **widget_range("timeout"), format="%g", key="timeout")
        st.number_input("Retries after a timeout", **widget_range("retries"), key="retries")


def sidebar_safeguards(sc: ss.Scenario) -> None:
    """Every safeguard switch, each with its one-line explanation."""
    defaults = scenario_defaults(sc)
    changed = [k for k in share.SAFEGUARDS if st.session_state.get(k, defaults[k]) != defaults[k]]
    title = "Safeguards" + (f" ({len(changed)} changed)" if changed else "")
    with st.sidebar.expander(title, icon=":material/shield:"):
        st.caption(
            "Switch one off to see the failure it prevents, in both styles (or load a lesson "
            "below). Each is a scenario `policy` key and travels in the link."
        )

        def why(name: str) -> None:
            st.caption(share.SAFEGUARDS[name][1])

        def key_of(name: str) -> str:
            return f"Scenario key: `{share.SAFEGUARDS[name][0]}` (scenario: {defaults[name]})"

        for name in ("idempotent", "outbox", "barrier", "query_status"):
            st.toggle(SWITCH_LABELS[name], key=name, help=key_of(name))
            why(name)
        st.segmented_control(
            SWITCH_LABELS["compensation_order"],
            ["reverse", "parallel"],
            key="compensation_order",
            required=True,
            help=key_of("compensation_order"),
        )
        why("compensation_order")
        for name, step in (
            ("redelivery", 0.5),
            ("max_redeliveries", 1),
            ("compensation_retries", 1),
        ):
            st.number_input(
                SWITCH_LABELS[name],
                **widget_range(name),
                step=step,
                key=name,
                help=key_of(name),
            )
            why(name)
        st.markdown("**Isolation between concurrent sagas**")
        shared = any(s.data is not None for s in sc.steps)
        if not shared:
            st.caption(
                "This scenario has no shared data (no step with a `data` item), so these change "
                "nothing here. Try *Orders racing for limited stock*."
            )
        for name in ISOLATION:
            st.toggle(SWITCH_LABELS[name], key=name, help=key_of(name), disabled=not shared)
            why(name)
        st.button(
            "Reset safeguards to the scenario's",
            key="reset_safeguards",
            on_click=reset_safeguards,
            disabled=not changed,
        )


def sidebar_lessons(sc: ss.Scenario) -> None:
    """One lesson per safeguard: the failure with the switch off, the fix with it on."""
    st.sidebar.subheader("Lessons: one safeguard at a time")
    all_lessons = ss.lessons(sc)
    usable = [x for x in all_lessons if x.applies]
    keys = [x.key for x in usable]
    if st.session_state.get("lesson") not in keys:
        st.session_state.pop("lesson", None)
    labels = {x.key: x.label for x in usable}
    key = st.sidebar.selectbox("Lesson", keys, key="lesson", format_func=labels.__getitem__)
    lesson = lesson_by_key(sc, key)
    if lesson is not None:
        st.sidebar.caption(lesson.lesson)
        st.sidebar.button(
            "Show the failure (safeguard off)",
            key="lesson_without",
            on_click=apply_lesson,
            args=(lesson.key, False),
            icon=":material/error:",
            width="stretch",
            help="Loads the lesson's faults with the safeguard off (the other knobs as the "
            "scenario sets them).",
        )
        st.sidebar.button(
            "Switch the safeguard on",
            key="lesson_with",
            on_click=apply_lesson,
            args=(lesson.key, True),
            icon=":material/verified_user:",
            width="stretch",
            disabled=lesson.fix is None,
            help=lesson.fixed or "No single switch removes this one: see the next lessons.",
        )
    skipped = [x for x in all_lessons if not x.applies]
    if skipped:
        with st.sidebar.expander(f"Not for this scenario ({len(skipped)})"):
            for x in skipped:
                st.caption(f"**{x.label}**: {x.reason}")


def lesson_banner(sc: ss.Scenario, cfg: share.RunConfig) -> None:
    """While the configuration is a lesson's, say which lesson and what to look for."""
    defaults = scenario_defaults(sc)
    faults = tuple(cfg.faults)
    chosen = st.session_state.get("lesson")
    # Several lessons can share a configuration (the race without any countermeasure): the one
    # chosen in the sidebar speaks first.
    for lesson in sorted(ss.lessons(sc), key=lambda x: x.key != chosen):
        if not lesson.applies:
            continue
        try:
            want = tuple(share.fault_text(f) for f in ss.parse_faults(lesson.faults, sc))
        except ss.ScenarioError:
            continue
        if want != faults or cfg.seed != lesson.seed:
            continue
        for fixed, knobs in ((False, lesson.without), (True, lesson.fix)):
            if knobs is None:
                continue
            state = dict(defaults)
            state.update(dict(knobs))
            have = {k: st.session_state.get(k, defaults[k]) for k in share.KNOBS}
            if have == state:
                if fixed:
                    st.success(
                        f"**Lesson: {lesson.label}**, safeguard on. {lesson.fixed}",
                        icon=":material/verified_user:",
                    )
                else:
                    fix = ", ".join(
                        f"`{share.SAFEGUARDS[k][0]}: {str(v).lower()}`"
                        for k, v in lesson.fix or ()
                        if v != dict(lesson.without).get(k)
                    )
                    hint = (
                        f" Then click *Switch the safeguard on* in the sidebar ({fix})."
                        if fix
                        else ""
                    )
                    st.warning(
                        f"**Lesson: {lesson.label}**, safeguard off. {lesson.lesson}{hint}",
                        icon=":material/school:",
                    )
                return


def sidebar_faults(sc: ss.Scenario) -> None:
    st.sidebar.subheader("Failures")
    st.sidebar.caption("One click replaces the active faults with a preset:")
    for p in ss.presets(sc):
        st.sidebar.button(
            p.label,
            key=f"preset_{p.key}",
            help=p.lesson,
            icon=PRESET_ICON.get(p.key),
            on_click=apply_preset,
            args=(p.faults,),
            width="stretch",
        )
    faults = st.session_state.get("faults", [])
    st.sidebar.markdown(f"**Active faults ({len(faults)})**")
    if not faults:
        st.sidebar.caption("None: the happy path.")
    for i, text in enumerate(faults):
        try:
            (f,) = ss.parse_faults([text], sc)
            desc = ss.describe_fault(f)
        except ss.ScenarioError:
            desc = text
        c1, c2 = st.sidebar.columns([5, 1], vertical_alignment="center")
        c1.markdown(f"`{desc}`", help=text)
        c2.button(
            "",
            icon=":material/close:",
            key=f"remove_{i}_{text}",
            on_click=remove_fault,
            args=(i,),
            help="remove this fault",
        )
    if faults:
        st.sidebar.button("Clear all faults", key="clear_faults", on_click=clear_faults)
    fault_builder(sc)


def fault_builder(sc: ss.Scenario) -> None:
    steps = [s.name for s in sc.steps]
    undoable = [s.name for s in sc.steps if s.undoable]
    services = list(sc.services)
    nodes = [*services, "coordinator", "broker", "client"]
    with st.sidebar.expander("Add a fault"):
        kind = st.selectbox("Kind", ss.FAULT_KINDS, key="fb_kind")
        data: dict[str, Any] = {"kind": kind}
        if kind == "fail_step":
            data["step"] = st.selectbox("Step", steps, key="fb_step")
            data["attempt"] = st.number_input("On attempt", 1, 1000, 1, key="fb_attempt")
        elif kind == "fail_compensation":
            if not undoable:
                st.caption("No step of this scenario has a compensation.")
                return
            data["step"] = st.selectbox("Step (its compensation fails)", undoable, key="fb_cstep")
            forever = st.checkbox("Fails forever", value=True, key="fb_forever")
            if not forever:
                data["times"] = st.number_input("Fails this many times", 1, 1000, 2, key="fb_times")
        elif kind in ("crash", "crash_coordinator", "partition"):
            if kind == "crash":
                data["service"] = st.selectbox("Service", services, key="fb_service")
            if kind == "partition":
                a = st.selectbox("Between", nodes, key="fb_a")
                b = st.selectbox("and", ["*", *nodes], key="fb_b", help="* = every other node")
                data["between"] = [a, b]
            data["at"] = st.number_input("From (s)", 0.0, 1e6, 0.01, step=0.01, key="fb_at")
            data["for"] = st.number_input("For (s)", 0.001, 1e6, 1.0, step=0.1, key="fb_for")
        else:
            data["step"] = st.selectbox("Step", steps, key="fb_mstep")
            data["leg"] = st.selectbox("Which message", ["request", "reply", "any"], key="fb_leg")
            if data["step"] in undoable and st.checkbox(
                "the compensation's message", value=False, key="fb_comp"
            ):
                data["compensation"] = True
            if kind == "delay":
                data["extra"] = st.number_input(
                    "Extra delay (s)", 0.001, 1e6, 0.5, step=0.1, key="fb_extra"
                )
            else:
                data["count"] = st.number_input("How many", 1, 1_000_000, 1, key="fb_count")
        if st.checkbox("Only one saga", value=False, key="fb_one") and kind not in (
            "crash",
            "crash_coordinator",
            "partition",
        ):
            data["saga"] = st.number_input("Saga", 1, MAX_SAGAS, 1, key="fb_saga")
        st.button("Add fault", key="fb_add", on_click=add_fault, args=(data,), type="primary")
        for line in st.session_state.get("builder_problems", []):
            st.error(line)


# --------------------------------------------------------------------------------------------
# Main area


def intro() -> None:
    st.title("saga-sim · orchestration vs choreography")
    st.markdown(
        "A **saga** runs a business transaction across services as a sequence of local "
        "transactions; when a step fails for good, the steps already done are undone by "
        "*compensations*. Here the same saga runs **orchestrated** (a coordinator drives it) and "
        "**choreographed** (services react to each other's events), under the same failures: "
        "try a preset in the sidebar — *email step fails*, then *identity provider down* — and "
        "watch the two styles part ways."
    )


def show_problems() -> None:
    for line in st.session_state.pop("notices", []):
        st.warning(line)
    opened = st.session_state.pop("opened", None)
    if opened:
        st.info(opened, icon=":material/grid_on:")
    link = st.session_state.get("link_problems")
    if link:
        st.error(
            "The link could not be used as it is; these parts were ignored:\n\n"
            + "\n".join(f"- {p}" for p in link)
        )
        if st.button("Dismiss", key="dismiss_link"):
            st.session_state.pop("link_problems", None)
            st.rerun()
    up = st.session_state.get("upload_problems")
    if up:
        source, lines = up
        st.error(
            f"**{source}** is not a valid scenario; the last valid scenario stays loaded. "
            f"{len(lines)} problem(s):\n\n" + "\n".join(f"- `{p}`" for p in lines)
        )


def _fmt_ms(x: float) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    return f"{x * 1000:.1f} ms" if x < 1 else f"{x:.3f} s"


def summary(ctx: Context) -> None:
    res = ctx.result
    n = res["n_sagas"]
    cols = st.columns(2, gap="large")
    for col, style in zip(cols, ss.STYLES):
        m = res["metrics"][style]
        with col, st.container(border=True):
            st.subheader(style)
            counts = {o: c for o, c in m["outcomes"].items() if c}
            badges = st.container(horizontal=True)
            with badges:
                for o, c in counts.items():
                    label = o if n == 1 else f"{o}: {c:,}"
                    st.badge(label, icon=ICON[o], color=BADGE[o])
                if m["violations"]:
                    st.badge(
                        f"{m['violations']} invariant violation(s)",
                        icon=":material/gpp_bad:",
                        color="red",
                    )
                stuck = needs_intervention(res["sagas"][style])
                if len(stuck):
                    st.badge(
                        "needs manual intervention" + (f": {len(stuck):,}" if n > 1 else ""),
                        icon=":material/support_agent:",
                        color="violet",
                    )
                dead = dead_letters(res["events"][style])
                if len(dead):
                    st.badge(
                        f"{len(dead):,} dead letter(s)",
                        icon=":material/mark_email_unread:",
                        color="gray",
                    )
            c1, c2, c3 = st.columns(3)
            lat = m["latency_mean"] if n > 1 else m["latency_p50"]
            c1.metric("latency" + (" (mean)" if n > 1 else ""), _fmt_ms(lat))
            c2.metric("messages", f"{m['messages']:,}")
            c3.metric("compensations", f"{m['compensations']:,}")
            if res["stopped"][style]:
                st.warning(f"Stopped early: {res['stopped'][style]}", icon=":material/timer_off:")
            for note in res["notes"][style]:
                st.caption(f"Note: {note}")
    st.info(
        res["sentence"],
        icon=":material/call_split:" if res["divergence"] else ":material/drag_handle:",
    )


def needs_intervention(sagas: pd.DataFrame) -> pd.DataFrame:
    """The sagas whose coordinator (or a choreography participant) declared that they need a
    person: a compensation failed for good."""
    return sagas[sagas["believed"].astype(str) == "needs_intervention"]


def dead_letters(events: pd.DataFrame) -> pd.DataFrame:
    """The messages that went to the dead-letter queue (retries or redeliveries exhausted)."""
    return events[events["kind"].astype(str) == "dead_letter"]


def saga_picker(ctx: Context, key: str) -> int:
    """A saga chooser for runs with several sagas, with shortcuts to interesting ones."""
    n = ctx.result["n_sagas"]
    if n == 1:
        return 1
    interesting = []
    for style in ss.STYLES:
        s = ctx.result["sagas"][style]
        for o in ("inconsistent", "stalled", "compensated"):
            hit = s.loc[s["outcome"].astype(str) == o, "saga"]
            if len(hit):
                interesting.append(f"saga {int(hit.iloc[0])}: first {o} ({style})")
    c1, c2 = st.columns([1, 3])
    c1.number_input(f"Saga to show (1–{n:,})", 1, n, key="saga")
    if interesting:
        c2.caption("Worth a look: " + " · ".join(interesting))
    st.caption(f"The timelines show one saga of {n:,}; the other views count all of them.")
    return int(st.session_state["saga"])


def timeline_view(ctx: Context) -> None:
    saga = saga_picker(ctx, "saga")
    cols = st.columns(2)
    for col, style in zip(cols, ss.STYLES):
        ev = ctx.result["events"][style]
        with col:
            fig = viz.timeline(
                ev,
                saga=saga,
                title=f"{style} · saga {saga}",
                step_kinds=ctx.step_kinds,
                lanes_order=ctx.lanes(style),
            )
            st.plotly_chart(fig, key=f"timeline_{style}", config={"displaylogo": False})
    st.caption(
        "Time runs down. Arrows go from send to delivery; ✕ marks a lost message; shaded boxes "
        "are crash (red) and partition (violet) windows; ● a local commit, ◆ a compensation, "
        "★ the pivot. Hover anything for details; drag to zoom, double-click to reset."
    )


def graphs_view(ctx: Context) -> None:
    st.markdown("**Orchestration: the coordinator's state machine**")
    fig = viz.state_machine(
        ss.orchestration_states(ctx.scenario), ctx.result["events"]["orchestration"]
    )
    st.plotly_chart(fig, key="state_machine", config={"displaylogo": False})
    st.markdown("**Choreography: who reacts to which event**")
    fig = viz.event_flow(ss.choreography_flow(ctx.scenario), ctx.result["events"]["choreography"])
    st.plotly_chart(fig, key="event_flow", config={"displaylogo": False})
    st.caption(
        "Coloured edges were taken (×n: how many times, over every saga); grey dotted ones "
        "were not. Blue: forward path; red: failure; orange: compensation."
    )


def compensation_view(ctx: Context) -> None:
    n = ctx.result["n_sagas"]
    every = False
    if n > 1:
        every = st.toggle("All sagas (not just the chosen one)", key="comp_all")
    saga = None if every else int(st.session_state.get("saga", 1))
    for style in ss.STYLES:
        ev = ctx.result["events"][style]
        st.markdown(f"#### {style}")
        fig = viz.compensation_gantt(ev, saga=saga)
        st.plotly_chart(fig, key=f"gantt_{style}", config={"displaylogo": False})
        table = viz.compensation_table(ev, saga=saga)
        if table.empty:
            st.caption("Nothing was compensated.")
        else:
            st.dataframe(
                table.drop(columns=["seq"]),
                key=f"comp_table_{style}",
                hide_index=True,
                column_config={
                    "time": st.column_config.NumberColumn("time (s)", format="%.4f"),
                    "trigger_time": st.column_config.NumberColumn("trigger at (s)", format="%.4f"),
                },
            )


def metrics_display(table: pd.DataFrame) -> pd.DataFrame:
    """The metrics table for people: counts as integers, latencies in milliseconds."""
    out = {}
    for metric, row in table.iterrows():
        if str(metric).startswith("latency_"):
            name = f"latency {str(metric)[8:]} (ms)"
            out[name] = [f"{v * 1000:.1f}" if v == v else "—" for v in row]
        elif metric == "messages_per_saga":
            out["messages per saga"] = [f"{v:.2f}" for v in row]
        else:
            out[str(metric)] = [f"{int(v):,}" for v in row]
    return pd.DataFrame(out, index=table.columns).T


def comparison_view(ctx: Context) -> None:
    res = ctx.result
    st.info(res["sentence"])
    c1, c2 = st.columns([1, 2])
    c1.dataframe(metrics_display(res["table"]), key="metrics_table")
    with c2:
        st.plotly_chart(
            viz.comparison_chart(res["table"]),
            key="comparison_chart",
            config={"displaylogo": False},
        )
    if res["n_sagas"] > 1:
        sagas = pd.concat(list(res["sagas"].values()), ignore_index=True)
        st.plotly_chart(
            viz.latency_chart(sagas, title="End-to-end latency per saga"),
            key="latency_chart",
            config={"displaylogo": False},
        )


@st.fragment
def scrubber_view(ctx: Context) -> None:
    """A slider over simulated time: a cursor on both timelines and the stores at that instant.
    A fragment: moving the slider reruns only this view."""
    saga = int(st.session_state.get("saga", 1))
    frames = {s: ctx.result["events"][s] for s in ss.STYLES}
    times = pd.concat([f.loc[f["saga"] == saga, "time"] for f in frames.values()])
    lo, hi = (float(times.min()), float(times.max())) if len(times) else (0.0, 1.0)
    hi = max(hi, lo + 1e-3)
    key = f"scrub_{saga}_{lo:.6f}_{hi:.6f}"
    t = st.slider(
        f"Simulated time (saga {saga})",
        min_value=lo,
        max_value=hi,
        value=lo + (hi - lo) / 2,
        step=(hi - lo) / 400,
        format="%.4f s",
        key=key,
    )
    cols = st.columns(2)
    for col, (style, ev) in zip(cols, frames.items()):
        with col:
            fig = viz.timeline(
                ev,
                saga=saga,
                cursor=t,
                title=style,
                step_kinds=ctx.step_kinds,
                height=520,
                lanes_order=ctx.lanes(style),
            )
            st.plotly_chart(fig, key=f"scrub_timeline_{style}", config={"displaylogo": False})
            st.markdown(f"**Local records at {t:.4f} s**")
            store = viz.store_at(ev, t, saga=saga)
            if store.empty:
                st.caption("No service holds a record of this saga yet (or any more).")
            else:
                st.dataframe(
                    store[["service", "step", "record", "since"]],
                    key=f"store_{style}",
                    hide_index=True,
                )


def invariants_view(ctx: Context) -> None:
    with st.expander("The invariants checked on every run"):
        for name, text in ss.INVARIANTS.items():
            st.markdown(f"- **{name}**: {text}")
    violations_section(ctx)
    st.markdown("### Dead letters and manual intervention")
    st.caption(
        "A message that exhausts its retries (orchestration) or redeliveries (choreography: "
        "`policy.max_redeliveries`) goes to the dead-letter queue; a compensation that keeps "
        "failing leaves its saga in **needs_intervention**: someone has to fix it by hand."
    )
    cols = st.columns(2)
    for col, style in zip(cols, ss.STYLES):
        with col:
            st.markdown(f"#### {style}")
            stuck = needs_intervention(ctx.result["sagas"][style])
            if len(stuck):
                who = ", ".join(
                    f"saga {int(r.saga)} (declared by {r.declared_by or '?'})"
                    for r in stuck.head(20).itertuples()
                )
                more = f" and {len(stuck) - 20:,} more" if len(stuck) > 20 else ""
                st.error(
                    f"**needs_intervention**: {who}{more}. The saga stopped with effects a "
                    "person must undo.",
                    icon=":material/support_agent:",
                )
            dead = dead_letters(ctx.result["events"][style])
            if dead.empty:
                st.caption("The dead-letter queue is empty.")
            else:
                st.markdown(f"**Dead-letter queue ({len(dead):,})**")
                st.dataframe(
                    dead[["time", "saga", "source", "target", "step", "message", "detail"]],
                    key=f"dead_{style}",
                    hide_index=True,
                    column_config={
                        "time": st.column_config.NumberColumn("time (s)", format="%.4f")
                    },
                )


def violations_section(ctx: Context) -> None:
    cols = st.columns(2)
    for col, style in zip(cols, ss.STYLES):
        with col:
            st.markdown(f"#### {style}")
            v = ctx.result["violations"][style]
            if v.empty:
                st.success("Every invariant holds.")
                continue
            st.error(f"{len(v)} violation(s)")
            ev = ctx.result["events"][style]
            for i, row in enumerate(v.itertuples(index=False)):
                with st.container(border=True):
                    st.markdown(f"**{row.invariant}** · saga {row.saga} · step `{row.step}`")
                    st.markdown(row.message)
                    st.caption(row.explanation)
                    rows = [r for r in row.rows if r in ev.index]
                    if rows:
                        st.dataframe(
                            ev.loc[
                                rows,
                                ["time", "kind", "source", "target", "step", "message", "detail"],
                            ],
                            key=f"viol_{style}_{i}",
                        )


# --------------------------------------------------------------------------------------------
# Experiments: fault matrix, Monte Carlo, sweep (each cached by its inputs)

MC_MAX = 20_000
SWEEP_MAX_SAGAS = 50_000


@contextmanager
def progress_bar(start: str, label: str, unit: str = "runs") -> Iterator[Any]:
    """A progress bar for a long computation: yields the ``progress(done, total)`` callback the
    experiments take, and empties the bar when the block ends (even on an error)."""
    bar = st.progress(0.0, text=start)
    try:
        yield lambda done, total: bar.progress(
            done / total, text=f"{label}: {done:,}/{total:,} {unit}"
        )
    finally:
        bar.empty()


@st.cache_data(show_spinner=False, max_entries=16)
def matrix_frame(yaml_text: str, seed: int) -> tuple[pd.DataFrame, float]:
    """The fault matrix of a scenario text (both styles, one saga per cell) and the seconds it
    took, with a progress bar while it runs (made here, so a cache hit replays it, finished
    and emptied)."""
    t0 = time.perf_counter()
    with progress_bar("Simulating every fault point…", "Fault matrix") as progress:
        df = ss.fault_matrix(parsed(yaml_text), seed=seed, progress=progress)
    return df, time.perf_counter() - t0


@st.cache_data(show_spinner=False, max_entries=8)
def monte_carlo_result(yaml_text: str, n: int, rates: tuple, seed: int) -> dict:
    """A Monte Carlo run as plain frames (serial: a process pool is slower under Streamlit,
    where its workers start from a fork server, than the capped runs the app allows)."""
    t0 = time.perf_counter()
    with progress_bar("Monte Carlo…", "Monte Carlo", "sagas per style") as progress:
        mc = ss.monte_carlo(
            parsed(yaml_text),
            n,
            rates=dict(rates),
            seed=seed,
            executor="serial",
            progress=progress,
        )
    return {
        "outcomes": mc.outcomes,
        "ecdf": mc.ecdf,
        "latency": mc.latency,
        "per_saga": mc.per_saga,
        "violations": mc.violations,
        "paired": mc.paired,
        "n": mc.n,
        "seconds": time.perf_counter() - t0,
    }


@st.cache_data(show_spinner=False, max_entries=8)
def sweep_frame(
    yaml_text: str,
    param: str,
    values: tuple,
    replications: int,
    seed: int,
    faults: tuple[str, ...],
    sagas: int,
) -> tuple[pd.DataFrame, float]:
    """A sweep's tidy frame (serial) and the seconds it took, with a progress bar while it
    runs."""
    t0 = time.perf_counter()
    with progress_bar("Sweep…", "Sweep") as progress:
        df = ss.sweep(
            parsed(yaml_text),
            param,
            list(values),
            replications=replications,
            seed=seed,
            executor="serial",
            faults=list(faults) or None,
            sagas=sagas,
            progress=progress,
        )
    return df, time.perf_counter() - t0


@st.cache_data(show_spinner=False, max_entries=16)
def sweepable(yaml_text: str) -> dict[str, Any]:
    """The scenario's parameters a sweep can vary (numbers, switches, the compensation order),
    with their current values."""
    sc = parsed(yaml_text)
    out = {}
    for path in param_paths(sc):
        v = get_param(sc, path)
        if isinstance(v, (bool, int, float)) or path == "policy.compensation_order":
            out[path] = v
    return out


def suggest_values(path: str, v: Any) -> str:
    """A first guess of values to sweep a parameter over, around its current value."""
    if isinstance(v, bool):
        return "false, true"
    if path.endswith("compensation_order"):
        return "reverse, parallel"
    if path in ("network.loss", "network.duplicate"):
        return "0, 0.02, 0.05, 0.1, 0.2"
    if isinstance(v, int):
        vals = sorted({max(0, v // 2), max(0, v - 1), v, v + 1, v * 2 if v else 2})
        return ", ".join(str(x) for x in vals)
    if v == 0:
        return "0, 0.01, 0.05, 0.1"
    return ", ".join(f"{v * f:.4g}" for f in (0.25, 0.5, 1, 2, 4))


def parse_values(text: str) -> list[Any]:
    """Comma-separated values, each read as YAML (numbers, true/false, words)."""
    items = [t.strip() for t in text.split(",")]
    if not any(items):
        raise ValueError("give at least one value, separated by commas (for example 0, 0.1)")
    out = []
    for t in items:
        if not t:
            raise ValueError(f"an empty value in {text!r}: remove the extra comma")
        try:
            out.append(yaml.safe_load(t))
        except yaml.YAMLError:
            raise ValueError(f"cannot read the value {t!r}") from None
    return out


def problems_box(err: ss.ScenarioError, what: str) -> None:
    st.error(f"{what}:\n\n" + "\n".join(f"- `{p}`" for p in err.problems))


def open_point(point: str, style: str | None = None) -> None:
    """Make a matrix cell the run of the main views: its faults, one saga, the same seed."""
    cells = st.session_state.get("matrix_cells", {})
    if point not in cells:
        return
    sc = parsed(base_yaml())
    faults = ss.parse_faults(cells[point], sc) if cells[point] != "[]" else ()
    st.session_state["faults"] = [share.fault_text(f) for f in faults]
    st.session_state["sagas"] = 1
    st.session_state["saga"] = 1
    st.session_state["view"] = "Timeline"
    where = f" ({style})" if style else ""
    st.session_state["opened"] = (
        f"Opened the fault matrix's **{point}**{where}: the active faults are now the cell's "
        f"({len(faults)}), with 1 saga and the same seed, so every view shows that run. "
        "The matrix is still in the Experiments tab."
    )


def on_matrix_click() -> None:
    state = st.session_state.get("matrix_chart")
    try:
        points = state["selection"]["points"]
    except (KeyError, TypeError):
        return
    for p in points:
        data = p.get("customdata")
        if data and len(data) == 2:
            open_point(str(data[0]), str(data[1]))
            return


def on_matrix_pick() -> None:
    open_point(st.session_state.get("matrix_pick", ""))


def matrix_section(ctx: Context) -> None:
    st.subheader("Fault matrix")
    sc = ctx.scenario
    n = ss.count_fault_points(sc)
    st.caption(
        f"Every single fault at every point of the saga: {n} points × 2 styles, one saga each, "
        f"seed {ctx.cfg.seed}, on this scenario with the sidebar's knobs and safeguards (the "
        "active faults are not added). **Click a cell** (or pick a point below) to open that "
        "run in the Timeline, State graphs and the other views."
    )
    df, took = matrix_frame(ctx.yaml_text, ctx.cfg.seed)
    st.session_state["matrix_cells"] = dict(zip(df["point"], df["fault_yaml"]))
    counts = df.groupby("style", sort=False)["outcome"].value_counts().unstack(fill_value=0)
    line = " · ".join(
        f"**{style}**: " + ", ".join(f"{int(c)} {o}" for o, c in counts.loc[style].items() if c)
        for style in counts.index
    )
    st.markdown(line)
    fig = vx.matrix_figure(df, pickable=True)
    fig.update_layout(clickmode="event+select", dragmode=False)
    st.plotly_chart(
        fig,
        key="matrix_chart",
        on_select=on_matrix_click,
        selection_mode="points",
        config={"displaylogo": False},
    )
    c1, c2 = st.columns([3, 1], vertical_alignment="bottom")
    points = list(dict.fromkeys(df["point"]))
    desc = dict(zip(df["point"], df["fault"]))
    c1.selectbox(
        "Or pick a fault point",
        points,
        key="matrix_pick",
        format_func=lambda p: f"{p} — {desc[p]}",
    )
    c2.button(
        "Open in the main views",
        key="matrix_open",
        on_click=on_matrix_pick,
        icon=":material/open_in_new:",
    )
    with st.expander("The matrix as a table"):
        st.dataframe(
            df.drop(columns=["fault_yaml"]),
            key="matrix_table",
            hide_index=True,
            column_config={"latency": st.column_config.NumberColumn("latency (s)", format="%.4f")},
        )
        st.download_button(
            "Matrix CSV",
            lambda: df.to_csv(index=False).encode(),
            f"{sc.name}-matrix.csv",
            "text/csv",
            key="dl_matrix",
        )
    st.caption(f"{len(df)} runs simulated in {took:.2f} s (cached by scenario, knobs and seed).")


RATE_FIELDS = (
    ("step_failure", "Step failure rate", 0.0, 1.0, 0.01),
    ("compensation_failure", "Compensation failure rate", 0.0, 1.0, 0.01),
    ("crash", "Service crashes per s", 0.0, 100.0, 0.001),
    ("coordinator_crash", "Orchestrator crashes per s", 0.0, 100.0, 0.001),
    ("crash_duration", "Mean seconds down", 0.001, 1e6, 0.1),
    ("loss", "Message loss", 0.0, 0.99, 0.01),
    ("duplication", "Message duplication", 0.0, 0.99, 0.01),
)


def monte_carlo_section(ctx: Context) -> None:
    st.subheader("Monte Carlo")
    st.caption(
        "Many sagas per style under random faults drawn from these rates; both styles meet the "
        "same draws (common random numbers). The scenario with the sidebar's knobs, "
        "safeguards and seed; the active faults are not added (the rates draw their own)."
    )
    defaults = ss.Rates()
    with st.form("mc_form", border=False):
        cols = st.columns(4)
        cols[0].number_input(
            "Sagas per style",
            min_value=10,
            max_value=MC_MAX,
            value=2000,
            step=500,
            key="mc_n",
            help=f"At most {MC_MAX:,} here (a few seconds); the library and the CLI take "
            "millions, on a process pool or a Dask cluster.",
        )
        for i, (name, label, lo, hi, step) in enumerate(RATE_FIELDS, start=1):
            value = getattr(defaults, name)
            cols[i % 4].number_input(
                label,
                min_value=lo,
                max_value=hi,
                value=float(value if value is not None else 0.0),
                step=step,
                format="%.4g",
                key=f"mc_{name}",
                help=ss.Rates.model_fields[name].description,
            )
        run = st.form_submit_button("Run Monte Carlo", type="primary", icon=":material/casino:")
    if run:
        rates = tuple((name, float(st.session_state[f"mc_{name}"])) for name, *_ in RATE_FIELDS)
        st.session_state["mc_args"] = (
            ctx.yaml_text,
            int(st.session_state["mc_n"]),
            rates,
            ctx.cfg.seed,
        )
    args = st.session_state.get("mc_args")
    if args is None:
        st.caption("Set the rates and press *Run Monte Carlo*.")
        return
    try:
        res = monte_carlo_result(*args)
    except ss.ScenarioError as err:
        problems_box(err, "The Monte Carlo run cannot start")
        return
    if args[0] != ctx.yaml_text or args[3] != ctx.cfg.seed:
        st.warning(
            "These results are for an earlier scenario, knobs or seed: press *Run Monte Carlo* "
            "to run the current one.",
            icon=":material/history:",
        )
    st.markdown(f"**{res['n']:,} sagas per style** · simulated in {res['seconds']:.2f} s")
    oc = res["outcomes"]
    c1, c2 = st.columns(2)
    c1.plotly_chart(vx.outcome_shares_figure(oc), key="mc_shares", config={"displaylogo": False})
    ecdf = res["ecdf"]
    if ecdf.empty:
        c2.caption("No saga finished: no latency to show.")
    else:
        c2.plotly_chart(vx.latency_ecdf_figure(ecdf), key="mc_ecdf", config={"displaylogo": False})
    table = oc.pivot(index="outcome", columns="style", values="share")
    lo = oc.pivot(index="outcome", columns="style", values="ci_low")
    hi = oc.pivot(index="outcome", columns="style", values="ci_high")
    shown = pd.DataFrame(
        {
            style: [
                f"{table.loc[o, style]:.1%} [{lo.loc[o, style]:.1%}, {hi.loc[o, style]:.1%}]"
                for o in table.index
            ]
            for style in ss.STYLES
            if style in table.columns
        },
        index=table.index,
    ).reindex([o for o in ss.OUTCOMES if o in table.index])
    c1.markdown("**Outcome shares** (95 % Wilson interval)")
    c1.dataframe(shown, key="mc_table")
    ps = res["per_saga"].set_index("style")
    per = pd.DataFrame(
        {
            style: [
                f"{ps.loc[style, 'messages']:.2f} [{ps.loc[style, 'messages_ci_low']:.2f}, "
                f"{ps.loc[style, 'messages_ci_high']:.2f}]",
                f"{ps.loc[style, 'compensations']:.3f} [{ps.loc[style, 'compensations_ci_low']:.3f}"
                f", {ps.loc[style, 'compensations_ci_high']:.3f}]",
                f"{ps.loc[style, 'retries']:.3f}",
                f"{ps.loc[style, 'timeouts']:.3f}",
                f"{ps.loc[style, 'violation_share']:.1%}",
            ]
            for style in ps.index
        },
        index=[
            "messages per saga",
            "compensations per saga",
            "retries per saga",
            "timeouts per saga",
            "sagas with a violation",
        ],
    )
    c2.markdown("**Per saga** (mean [95 % interval])")
    c2.dataframe(per, key="mc_per_saga")
    viol = res["violations"]
    viol = viol[viol["count"] > 0]
    if len(viol):
        st.markdown("**Invariant violations**")
        st.dataframe(
            viol.pivot(index="invariant", columns="style", values="count").fillna(0).astype(int),
            key="mc_violations",
        )
    if res["paired"] is not None:
        with st.expander("Same saga, same draws: outcome in each style"):
            st.plotly_chart(
                vx.paired_outcomes_figure(res["paired"]),
                key="mc_paired",
                config={"displaylogo": False},
            )


def on_sweep_param() -> None:
    options = st.session_state.get("sweep_options", {})
    path = st.session_state.get("sweep_param")
    if path in options:
        st.session_state["sweep_values"] = suggest_values(path, options[path])


def sweep_section(ctx: Context) -> None:
    st.subheader("Sweep")
    st.caption(
        "One parameter over a list of values, each replicated with its own derived seed (the "
        "same seeds at every value and in both styles)."
    )
    options = sweepable(ctx.yaml_text)
    st.session_state["sweep_options"] = options
    paths = list(options)
    if st.session_state.get("sweep_param") is None:
        st.session_state["sweep_param"] = "network.loss" if "network.loss" in paths else paths[0]
    if "sweep_values" not in st.session_state:
        on_sweep_param()
    c1, c2 = st.columns([2, 3])
    c1.selectbox(
        "Parameter (dotted path)",
        paths,
        key="sweep_param",
        on_change=on_sweep_param,
        accept_new_options=True,
        help="Pick one, or type any path such as steps[1].duration.mean",
    )
    c2.text_input(
        "Values (comma-separated)",
        key="sweep_values",
        help="Numbers, true/false, or words (reverse, parallel)",
    )
    c3, c4, c5, c6 = st.columns(4)
    c3.number_input("Replications", 1, 200, 10, key="sweep_reps")
    c4.number_input(
        "Sagas per run",
        1,
        MAX_SAGAS,
        min(max(ctx.scenario.workload.sagas, 20), MAX_SAGAS),
        key="sweep_sagas",
    )
    metric = c5.selectbox(
        "Metric",
        list(SWEEP_METRICS),
        key="sweep_metric",
        help="Changing the metric redraws without running again.",
    )
    with_faults = c6.toggle(
        f"With the active faults ({len(ctx.cfg.faults)})",
        value=bool(ctx.cfg.faults),
        key="sweep_faults",
        disabled=not ctx.cfg.faults,
    )
    if st.button("Run sweep", key="sweep_run", type="primary", icon=":material/show_chart:"):
        st.session_state.pop("sweep_args", None)
        try:
            values = tuple(parse_values(st.session_state.get("sweep_values", "")))
        except ValueError as err:
            st.error(f"Values: {err}")
            return
        path = str(st.session_state.get("sweep_param") or "").strip()
        reps = int(st.session_state["sweep_reps"])
        sagas = int(st.session_state["sweep_sagas"])
        total = len(values) * reps * 2 * sagas
        if total > SWEEP_MAX_SAGAS:
            st.error(
                f"That is {total:,} simulated sagas ({len(values)} values × {reps} replications "
                f"× 2 styles × {sagas} sagas); the app runs at most {SWEEP_MAX_SAGAS:,} per "
                "sweep. Use fewer, or the CLI: `python -m saga_sim sweep`."
            )
            return
        try:
            ss.set_param(ctx.scenario, path, values[0])  # a bad path fails here, clearly
        except ss.ScenarioError as err:
            problems_box(err, "The sweep cannot run")
            return
        faults = tuple(ctx.cfg.faults) if with_faults else ()
        st.session_state["sweep_args"] = (
            ctx.yaml_text,
            path,
            values,
            reps,
            ctx.cfg.seed,
            faults,
            sagas,
        )
    args = st.session_state.get("sweep_args")
    if args is None:
        st.caption("Pick a parameter and values, then press *Run sweep*.")
        return
    try:
        df, took = sweep_frame(*args)
    except ss.ScenarioError as err:
        problems_box(err, "The sweep cannot run")
        return
    if args[0] != ctx.yaml_text or args[4] != ctx.cfg.seed:
        st.warning(
            "This sweep is for an earlier scenario, knobs or seed: press *Run sweep* to run the "
            "current one.",
            icon=":material/history:",
        )
    st.markdown(
        f"**{args[1]}** over {len(args[2])} values · {args[3]} replications · {args[6]} "
        f"saga(s) per run · {len(df):,} runs simulated in {took:.2f} s"
    )
    st.plotly_chart(
        vx.sweep_figure(df, metric, title=f"{SWEEP_METRICS[metric]} vs {args[1]}"),
        key="sweep_chart",
        config={"displaylogo": False},
    )
    with st.expander("The sweep as a table (one row per value, replication and style)"):
        st.dataframe(df, key="sweep_table", hide_index=True)


def experiments_view(ctx: Context) -> None:
    """The fault matrix (computed when the tab opens: it is small), Monte Carlo and a sweep
    (each on its button), all cached by their inputs."""
    matrix_section(ctx)
    st.divider()
    monte_carlo_section(ctx)
    st.divider()
    sweep_section(ctx)


def _scenario_with_faults(ctx: Context) -> str:
    data = yaml.safe_load(ctx.yaml_text)
    data["faults"] = list(data.get("faults") or []) + [yaml.safe_load(t) for t in ctx.cfg.faults]
    head = f"# saga-sim: seed {ctx.cfg.seed}, {ctx.result['n_sagas']} saga(s)\n"
    return head + yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)


def share_view(ctx: Context) -> None:
    qs = share.config_to_query_string(ctx.cfg)
    st.markdown(
        "**Share this run.** The address bar already holds it: copy the link, and whoever "
        "opens it gets the same scenario, faults, seed and knobs — the same trace, to the row."
    )
    st.code("?" + qs, language=None, wrap_lines=True)
    res = ctx.result
    saga = ctx.saga
    name = ctx.scenario.name
    c = st.columns(3)
    events = pd.concat(list(res["events"].values()))
    c[0].download_button(
        "Events CSV",
        lambda: events.to_csv().encode(),
        f"{name}-events.csv",
        "text/csv",
        key="dl_events",
    )
    sagas = pd.concat(list(res["sagas"].values()), ignore_index=True)
    c[1].download_button(
        "Sagas CSV",
        lambda: sagas.to_csv(index=False).encode(),
        f"{name}-sagas.csv",
        "text/csv",
        key="dl_sagas",
    )
    c[2].download_button(
        "Scenario + faults YAML",
        lambda: _scenario_with_faults(ctx).encode(),
        f"{name}.yaml",
        "application/yaml",
        key="dl_yaml",
    )
    c = st.columns(3)
    for i, style in enumerate(ss.STYLES):
        ev = res["events"][style]
        c[i].download_button(
            f"Mermaid ({style}, saga {saga})",
            lambda ev=ev, style=style: viz.to_mermaid(
                ev, saga=saga, title=f"{name} {style}"
            ).encode(),
            f"{name}-{style}-saga{saga}.mmd",
            "text/plain",
            key=f"dl_mermaid_{style}",
        )
    figures = {
        "orchestration timeline": lambda: viz.timeline(
            res["events"]["orchestration"],
            saga=saga,
            title="orchestration",
            lanes_order=ctx.lanes("orchestration"),
            step_kinds=ctx.step_kinds,
        ),
        "choreography timeline": lambda: viz.timeline(
            res["events"]["choreography"],
            saga=saga,
            title="choreography",
            lanes_order=ctx.lanes("choreography"),
            step_kinds=ctx.step_kinds,
        ),
        "state machine": lambda: viz.state_machine(
            ss.orchestration_states(ctx.scenario),
            res["events"]["orchestration"],
            title="state machine",
        ),
        "event flow": lambda: viz.event_flow(
            ss.choreography_flow(ctx.scenario), res["events"]["choreography"], title="event flow"
        ),
        "comparison": lambda: viz.comparison_chart(res["table"], title="comparison"),
    }
    pick = c[2].selectbox("Figure as standalone HTML", list(figures), key="dl_fig_pick")
    c[2].download_button(
        f"Download {pick} (HTML)",
        lambda: viz.to_html(figures[pick]()).encode(),
        f"{name}-{pick.replace(' ', '-')}.html",
        "text/html",
        key="dl_fig",
    )
    with st.expander("Mermaid text (orchestration)"):
        st.code(viz.to_mermaid(res["events"]["orchestration"], saga=saga), language=None)


VIEW_FUNCS = {
    "Timeline": timeline_view,
    "State graphs": graphs_view,
    "Compensation": compensation_view,
    "Comparison": comparison_view,
    "Time scrubber": scrubber_view,
    "Invariants": invariants_view,
    "Experiments": experiments_view,
    "Share & export": share_view,
}


def views(ctx: Context) -> None:
    tabs = st.tabs(list(VIEW_FUNCS), key="view", on_change="rerun")
    for tab, func in zip(tabs, VIEW_FUNCS.values()):
        if tab.open is False:
            continue
        with tab:
            func(ctx)


def main() -> None:
    st.set_page_config(page_title="saga-sim", page_icon="🔁", layout="wide")
    init_state()
    sidebar_scenario()
    try:
        sc0 = parsed(base_yaml())
    except ss.ScenarioError as err:  # the custom text went bad: fall back to the default
        st.session_state["scenario_choice"] = DEFAULT_SCENARIO
        st.session_state["upload_problems"] = ("scenario", problem_lines(err))
        sc0 = parsed(base_yaml())
    sidebar_run(sc0)
    sidebar_faults(sc0)
    sidebar_safeguards(sc0)
    sidebar_lessons(sc0)
    intro()
    show_problems()
    cfg = current_config(sc0)
    lesson_banner(sc0, cfg)
    try:
        text = effective_yaml(base_yaml(), cfg.knobs())
        sc = parsed(text)
        result = simulate_pair(text, cfg.faults, cfg.seed, int(st.session_state["sagas"]))
    except ss.ScenarioError as err:
        st.error("This configuration cannot run:\n\n" + "\n".join(f"- `{p}`" for p in err.problems))
        return
    saga = max(1, min(int(st.session_state.get("saga", 1)), result["n_sagas"]))
    st.session_state["saga"] = saga
    cfg = cfg.with_(saga=saga)
    ctx = Context(cfg=cfg, scenario=sc, yaml_text=text, result=result, saga=saga)
    summary(ctx)
    views(ctx)
    sync_url(cfg)


main()
