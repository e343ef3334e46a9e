"""Packaging: bundled scenarios load by name from anywhere, nothing patches ``sys.path``, the wheel
alone carries the code and the scenarios, and the API reference builds from the docstrings."""

from __future__ import annotations

import re
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

