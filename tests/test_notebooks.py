"""The coursework notebooks: each executes with a real kernel in under a minute, the students'
versions leave every exercise unanswered without an error, the instructors' versions answer
every exercise right, and no notebook is committed with outputs or out of date with its
generator (notebooks/_build.py).

The kernel is this interpreter (``sys.executable -m ipykernel_launcher``), whatever kernelspecs
the machine has installed, with this checkout first on ``PYTHONPATH``: the notebooks import
``saga_sim`` as an installed package (no ``sys.path`` patch), and here they import this
checkout's, installed or not. Each runs in its own folder, as in JupyterLab.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import nbclient
import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
from jupyter_client.manager import KernelManager

from saga_sim import coursework as cw

pytestmark = pytest.mark.notebooks

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
STUDENT = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
SOLUTIONS = sorted((NOTEBOOKS / "solutions").glob("[0-9][0-9]_*.ipynb"))
ALL = STUDENT + SOLUTIONS
BUDGET = 60.0  # seconds per notebook, kernel start included


class _ThisInterpreter(KernelSpecManager):
    """Every kernel name resolves to an IPython kernel run by the interpreter running pytest."""

    def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
        return KernelSpec(
            argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            display_name="Python 3 (tests)",
            language="python",
            resource_dir=tempfile.gettempdir(),
            env={
                "PYTHONPATH": os.pathsep.join(
                    p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p
                )
            },
        )


def _execute(path: Path) -> tuple[object, float]:
    nb = nbformat.read(path, as_version=4)
    km = KernelManager(kernel_name="python3", kernel_spec_manager=_ThisInterpreter())
    client = nbclient.NotebookClient(
        nb, km=km, timeout=BUDGET, resources={"metadata": {"path": str(path.parent)}}
    )
    start = time.perf_counter()
    try:
        client.execute()
    finally:
        if km.has_kernel and km.is_alive():
            km.shutdown_kernel(now=True)
    return nb, time.perf_counter() - start


def _check_lines(nb) -> dict[str, str]:
    """exercise id -> the mark its check printed (✔, ✘ or …), from the executed outputs."""
    found: dict[str, str] = {}
    known = set(cw.all_exercise_ids())
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            text = out.get("data", {}).get("text/plain", "") if "data" in out else ""
            for line in text.splitlines():
                head = line.split(":", 1)[0].split(" ")
                if len(head) == 2 and head[0] in ("✔", "✘", "…") and head[1] in known:
                    found[head[1]] = head[0]
    return found


def _ids_of(path: Path) -> set[str]:
    return {e for e in cw.all_exercise_ids() if e.startswith(f"{path.name[:2]}.")}


def test_seven_notebooks_each_with_a_solution():
    assert [p.name[:2] for p in STUDENT] == ["01", "02", "03", "04", "05", "06", "07"]
    assert [p.name for p in SOLUTIONS] == [p.name for p in STUDENT]


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.relative_to(NOTEBOOKS).as_posix())
def test_committed_without_outputs(path: Path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [], f"{path.name}: a code cell has outputs"
            assert cell["execution_count"] is None, f"{path.name}: a cell has an execution count"


def test_notebooks_are_what_the_generator_writes(tmp_path: Path):
    spec = importlib.util.spec_from_file_location("_nb_build", NOTEBOOKS / "_build.py")
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    build.main(tmp_path)
    for path in ALL:
        fresh = tmp_path / path.relative_to(NOTEBOOKS)
        assert fresh.read_text(encoding="utf-8") == path.read_text(encoding="utf-8"), (
            f"{path.relative_to(ROOT)} is out of date: run python notebooks/_build.py"
        )


@pytest.mark.parametrize("path", STUDENT, ids=lambda p: p.name)
def test_student_notebook_runs_and_leaves_exercises_open(path: Path):
    nb, seconds = _execute(path)
    assert seconds < BUDGET, f"{path.name} took {seconds:.1f} s"
    marks = _check_lines(nb)
    assert set(marks) == _ids_of(path), "every exercise of this notebook is checked in it"
    assert "✔" not in marks.values(), f"a student notebook answers an exercise: {marks}"


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.name)
def test_solution_notebook_runs_and_every_check_passes(path: Path):
    nb, seconds = _execute(path)
    assert seconds < BUDGET, f"{path.name} took {seconds:.1f} s"
    marks = _check_lines(nb)
    assert set(marks) == _ids_of(path), "every exercise of this notebook is checked in it"
    wrong = {e: m for e, m in marks.items() if m != "✔"}
    assert not wrong, f"checks that do not pass in the solution: {wrong}"
