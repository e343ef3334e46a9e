"""The fuzz corpus of issue 11 through every door: ``parse_scenario``, the CLI (in process for
every input, as ``python -m saga_sim`` for a sample), ``decode_config`` and the app (AppTest).

Each input must end in a value or a ``ScenarioError`` whose problems name the file (and the
field, where there is one) — never another exception — within a time and memory bound.
"""

from __future__ import annotations

import resource
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

import saga_sim as ss
from saga_sim import share
from saga_sim.cli import main
from saga_sim.scenario import MAX_PROBLEMS
from saga_sim.share import check_faults
from tests.fuzz.corpus import SPIN, link_inputs, scenario_inputs

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = scenario_inputs()
LINKS = link_inputs()
SECONDS = 5.0  # per input (a 1 MiB input under tracemalloc takes ~1 s on a shared CI core)
MIB = 120  # peak traced allocation per input
# Inputs that may be valid: mutants can land on a valid scenario; these two are fine as is.
MAY_BE_VALID = ("mutant-", "crlf", "bom")


def bounded(fn: Any, size: int = 0) -> Any:
    """Run ``fn`` within the time bound, and the memory bound: traced allocations for inputs
    under 1 KiB (tracemalloc slows PyYAML tenfold on bigger ones), peak RSS growth for all."""
    trace = size < 1024
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if trace:
        tracemalloc.start()
    t0 = time.perf_counter()
    try:
        return fn()
    finally:
        took = time.perf_counter() - t0
        if trace:
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            assert peak < MIB * 2**20, f"peaked at {peak / 2**20:.0f} MiB"
        grew = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0  # KiB on Linux
        assert grew < MIB * 1024, f"peak RSS grew {grew / 1024:.0f} MiB"
        assert took < SECONDS * (1 if trace else 2), f"took {took:.1f} s"


def as_text(data: bytes) -> str | None:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def check_error(err: ss.ScenarioError, source: str) -> None:
    assert err.problems, "an error without a problem"
    assert len(err.problems) <= MAX_PROBLEMS + 1
    for p in err.problems:
        assert p.file.startswith(source) and p.message, p
        assert len(str(p)) < 4000, f"a {len(str(p))}-character message"


@pytest.mark.parametrize("name, data", SCENARIOS, ids=[n for n, _ in SCENARIOS])
def test_parse_scenario_gives_a_scenario_or_problems(name, data):
    text = as_text(data)
    if text is None:
        return  # the loaders refuse non-UTF-8 bytes before parsing (tested through the CLI)
    try:
        bounded(lambda: ss.parse_scenario(text, source="fuzz.yaml"), len(data))
    except ss.ScenarioError as err:
        check_error(err, "fuzz.yaml")
    else:
        assert name.startswith(MAY_BE_VALID), f"{name} was accepted"


@pytest.mark.parametrize("name, data", SCENARIOS, ids=[n for n, _ in SCENARIOS])
def test_cli_validate_exits_2_with_the_problems(name, data, tmp_path, capsys):
    path = tmp_path / f"{name}.yaml"
    path.write_bytes(data)
    rc = bounded(lambda: main(["validate", str(path)]), len(data))
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    if rc == 0:
        assert name.startswith(MAY_BE_VALID), f"{name} was accepted"
        assert "valid scenario" in out
    else:
        assert rc == 2
        assert err.startswith("error: ") and str(path) in err


SUBPROCESS = [
    "unhashable-key-0",
    "big-int-horizon-5000",
    "deep-flow-list-5000",
    "template-8",
    "surrogate-title-0",
    "dev-zero-like",
]


@pytest.mark.parametrize("name", SUBPROCESS)
def test_python_m_saga_sim_validate_has_no_traceback(name, tmp_path):
    path = tmp_path / f"{name}.yaml"
    path.write_bytes(dict(SCENARIOS)[name])
    cmd = [sys.executable, "-m", "saga_sim", "validate", str(path)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert p.returncode == 2, p.stderr
    assert "Traceback" not in p.stderr and p.stderr.startswith("error: ")


def test_python_m_saga_sim_run_stops_a_zero_time_loop(tmp_path):
    path = tmp_path / "spin.yaml"
    path.write_text(SPIN)
    cmd = [sys.executable, "-m", "saga_sim", "run", str(path), "--style", "choreography"]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert time.perf_counter() - t0 < 60
    assert p.returncode == 0 and "Traceback" not in p.stderr
    assert "zero-time loop" in p.stdout


@pytest.mark.parametrize("name, params", LINKS, ids=[n for n, _ in LINKS])
def test_decode_config_gives_a_config_or_problems(name, params):
    try:
        size = sum(len(x) for v in params.values() for x in v)
        cfg = bounded(lambda: share.decode_config(params, ["user_registration"]), size)
    except ss.ScenarioError as err:
        check_error(err, "link")
        return
    assert name.startswith(("range-", "unknown-params", "empty-values", "fault-", "yaml-")), name
    if name.startswith("range-"):  # in the range and used, or clamped and said so
        assert all("is out of range" in n for n in cfg.notices)
    if cfg.faults:
        sc = ss.load_scenario(ROOT / "scenarios/user_registration.yaml")
        try:
            bounded(lambda: check_faults(cfg, sc))
        except ss.ScenarioError as err:
            check_error(err, "fault")
    if cfg.scenario_yaml is not None:
        try:
            bounded(lambda: ss.parse_scenario(cfg.scenario_yaml, source="scenario"))
        except ss.ScenarioError as err:
            check_error(err, "scenario")


# --- the app --------------------------------------------------------------------------------

APP_UPLOADS = [
    "unhashable-key-0",
    "big-int-horizon-5000",
    "deep-flow-map-1000",
    "template-8",
    "lognormal-0",
    "surrogate-title-0",
    "lax-type-0",
    "unknown-keys-10000",
    "worker-bomb-400",
    "binary",
]
APP_LINKS = ["fault-deep-list", "seed-5000-digits", "yaml-zlib-bomb", "range-seed-3000000000"]


def _app() -> Any:
    from streamlit.testing.v1 import AppTest

    return AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)


def _errors(at: Any) -> str:
    return " ".join(e.value for e in at.error)


def test_app_uploads_show_an_error_box_and_the_app_keeps_working():
    at = _app().run()
    data = dict(SCENARIOS)
    for name in APP_UPLOADS:
        t0 = time.perf_counter()
        at.sidebar.file_uploader[0].set_value((f"{name}.yaml", data[name], "text/yaml")).run()
        assert time.perf_counter() - t0 < 30, name
        assert not at.exception, (name, [e.value for e in at.exception])
        assert f"{name}.yaml" in _errors(at), name
        assert len(_errors(at)) < 20_000, name
        assert at.session_state["scenario_choice"] == "user_registration"
    at.button(key="preset_late_step_fails").click().run()  # a follow-up interaction works
    assert not at.exception
    assert "compensated" in " ".join(md.value for md in at.markdown)


@pytest.mark.parametrize("name", APP_LINKS)
def test_app_links_load_and_say_what_was_wrong(name):
    at = _app()
    params = dict(LINKS)[name]
    at.query_params.update({k: v if len(v) > 1 else v[0] for k, v in params.items()})
    t0 = time.perf_counter()
    at.run()
    assert time.perf_counter() - t0 < 30
    assert not at.exception, [e.value for e in at.exception]
    said = _errors(at) + " ".join(w.value for w in at.warning)
    key = next(iter(params))
    assert key in said
    at.button(key="preset_late_step_fails").click().run()
    assert not at.exception
