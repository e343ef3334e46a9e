"""Packaging: bundled scenarios load by name from anywhere, nothing patches ``sys.path``, the wheel
alone carries the code and the scenarios, and the API reference builds from the docstrings."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import saga_sim as ss
from saga_sim import bundled
from saga_sim import coursework as cw

ROOT = Path(__file__).resolve().parent.parent
FILES = sorted(p.stem for p in (ROOT / "scenarios").glob("*.yaml"))


# --- bundled scenarios -------------------------------------------------------------------------


def test_bundled_scenarios_are_the_top_level_folder_in_a_checkout():
    assert ss.bundled_scenarios() == tuple(FILES)
    assert Path(str(bundled.scenario_dir())).resolve() == (ROOT / "scenarios").resolve()


@pytest.mark.parametrize("name", FILES)
def test_a_bundled_scenario_loads_by_name_from_any_directory(name, tmp_path, monkeypatch):
    by_path = ss.load_scenario(ROOT / "scenarios" / f"{name}.yaml")
    monkeypatch.chdir(tmp_path)
    assert ss.load_scenario(name) == by_path
    assert ss.load_scenario(f"{name}.yaml") == by_path
    assert ss.load_scenario(by_path.name) == by_path  # the scenario's own name, with hyphens
    assert cw.bundled(name) == by_path
    assert bundled.scenario_text(name) == (ROOT / "scenarios" / f"{name}.yaml").read_text()


def test_a_file_of_the_same_name_wins_over_the_bundled_scenario(tmp_path, monkeypatch, signup):
    other = signup.to_yaml().replace("name: user-registration", "name: my-copy")
    (tmp_path / "user_registration").write_text(other)
    monkeypatch.chdir(tmp_path)
    assert ss.load_scenario("user_registration").name == "my-copy"


def test_an_unknown_name_says_which_scenarios_are_bundled(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ss.ScenarioError) as err:
        ss.load_scenario("user_registrasion")
    (problem,) = err.value.problems
    assert problem.file == "user_registrasion"
    assert "no bundled scenario" in problem.message
    assert all(name in problem.message for name in FILES)
    with pytest.raises(ss.ScenarioError, match="cannot read the file"):
        ss.load_scenario("no/such/dir/user_registration.yaml")  # a path is never a name
    with pytest.raises(ValueError, match="user_registration"):
        bundled.scenario_text("nope")


def test_the_cli_takes_a_bundled_name(tmp_path, monkeypatch, capsys):
    from saga_sim.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["validate", "trip_booking"]) == 0
    assert "valid scenario 'trip-booking'" in capsys.readouterr().out
    assert main(["validate", "nope"]) == 2
    assert "no bundled scenario" in capsys.readouterr().err


# --- no sys.path patches ------------------------------------------------------------------------

_SYS_PATH_EDIT = re.compile(r"sys\.path\s*(\.\s*(insert|append|extend|remove|pop)\b|\[|[+]?=)")


def _tracked_sources() -> list[Path]:
    skip = {".venv", ".git", "node_modules", "__pycache__", ".pytest_cache", ".ruff_cache"}
    return sorted(
        p
        for p in ROOT.rglob("*")
        if p.suffix in (".py", ".ipynb") and not skip & set(p.relative_to(ROOT).parts)
    )


def test_the_sys_path_check_sees_an_edit():
    for line in (
        "sys.path.insert(0, str(root))",
        "sys.path.append('x')",
        "sys.path[:0] = ['x']",
        "sys.path += ['x']",
        "sys.path = ['x']",
    ):
        assert _SYS_PATH_EDIT.search(line), line
    assert not _SYS_PATH_EDIT.search("print(sys.path)")


def test_nothing_patches_sys_path():
    """Notebooks, their generator and the benchmarks import the installed package (or this
    checkout, as pytest's ``pythonpath`` does): none of them edits ``sys.path``."""
    this = Path(__file__).resolve()
    offenders = [
        f"{p.relative_to(ROOT)}: {m.group(0)}"
        for p in _tracked_sources()
        if p != this
        for m in _SYS_PATH_EDIT.finditer(p.read_text(encoding="utf-8"))
    ]
    assert _tracked_sources(), "no source found"
    assert not offenders


# --- the wheel ----------------------------------------------------------------------------------


def _pip(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    out = subprocess.run(
        [sys.executable, "-m", "pip", *args],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=cwd,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    return out


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built from this checkout (with the hatchling installed here when there is one,
    else in pip's isolated build environment)."""
    out = tmp_path_factory.mktemp("wheel")
    isolation = [] if importlib.util.find_spec("hatchling") is None else ["--no-build-isolation"]
    _pip("wheel", "-q", "--no-deps", *isolation, "-w", str(out), str(ROOT))
    (built,) = out.glob("saga_sim-*.whl")
    return built


@pytest.mark.slow
def test_the_wheel_carries_the_package_and_the_scenarios_and_nothing_else(wheel: Path):
    names = zipfile.ZipFile(wheel).namelist()
    modules = {n for n in names if n.endswith(".py")}
    assert modules == {p.relative_to(ROOT).as_posix() for p in (ROOT / "saga_sim").rglob("*.py")}
    assert {n for n in names if n.startswith("saga_sim/_scenarios/")} == {
        f"saga_sim/_scenarios/{name}.yaml" for name in FILES
    }
    assert not [n for n in names if n.split("/")[0] in ("tests", "notebooks", "benchmarks")]
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "saga-sim = saga_sim.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


@pytest.mark.slow
def test_the_installed_wheel_alone_runs_outside_the_repository(wheel: Path, tmp_path: Path):
    """Install the wheel alone (its dependencies come from this environment) into a folder of
    its own, then, from a directory outside the checkout, import it, load bundled scenarios by
    name and run the console script: the code and the scenarios all come from the wheel."""
    site = tmp_path / "site"
    _pip("install", "-q", "--no-deps", "--no-compile", "--target", str(site), str(wheel))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONSAFEPATH")}
    env["PYTHONPATH"] = str(site)

    def run(*cmd: str) -> str:
        out = subprocess.run(
            cmd, capture_output=True, text=True, timeout=120, cwd=elsewhere, env=env
        )
        assert out.returncode == 0, out.stdout + out.stderr
        return out.stdout

    probe = run(
        sys.executable,
        "-c",
        "import json, saga_sim as ss; from saga_sim import bundled; "
        "sc = ss.load_scenario('user_registration'); "
        "print(json.dumps({'file': ss.__file__, 'dir': str(bundled.scenario_dir()), "
        "'names': ss.bundled_scenarios(), 'scenario': sc.name, 'version': ss.__version__}))",
    )
    found = json.loads(probe)
    assert Path(found["file"]).is_relative_to(site), found["file"]
    assert Path(found["dir"]) == site / "saga_sim" / "_scenarios"
    assert found["names"] == FILES and found["scenario"] == "user-registration"
    assert found["version"] == ss.__version__

    fault = "{kind: drop, step: create_user, leg: reply}"
    script = site / "bin" / "saga-sim"
    assert script.is_file()
    args = ("run", "user_registration", "--seed", "7", "--fault", fault, "--json")
    via_script = json.loads(run(str(script), *args))
    via_module = json.loads(run(sys.executable, "-m", "saga_sim", *args))
    assert via_script == via_module
    expected = ss.compare("user_registration", faults=[fault], seed=7)
    for style, summary in via_script["styles"].items():
        assert summary == json.loads(json.dumps(expected.runs[style].summary()))
    assert via_script["styles"]["choreography"]["outcomes"]["completed"] == 1
    assert "valid scenario 'trip-booking'" in run(str(script), "validate", "trip_booking")


# --- the API reference --------------------------------------------------------------------------


@pytest.mark.slow
def test_the_api_reference_builds_from_the_docstrings(tmp_path: Path):
    """``python docs/make_api.py DIR`` (pdoc) writes a page per public module; the top-level
    page documents every public name with its docstring."""
    if importlib.util.find_spec("pdoc") is None:
        message = "pdoc is not installed here: pip install -r requirements-dev.txt"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, str(ROOT / "docs" / "make_api.py"), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp_path,
        env=env,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    top = (tmp_path / "saga_sim.html").read_text(encoding="utf-8")
    for name in ss.__all__:
        assert f'id="{name}"' in top, f"{name} is not on the API reference's top page"
    assert "Run both styles on the same scenario, faults and seed" in top  # compare's docstring
    pages = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.html")}
    for module in ("run", "scenario", "bundled", "share", "coursework", "viz", "experiments"):
        assert f"saga_sim/{module}.html" in pages, sorted(pages)
    assert not [p for p in pages if "/_" in p], "a private module has a page"
    assert "resolve_scenario" in (tmp_path / "saga_sim" / "run.html").read_text(encoding="utf-8")
