"""The repository keeps its promises: README commands, CI, layers, docs and exports agree."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import saga_sim as ss
from saga_sim import scenario as scenario_module

ROOT = Path(__file__).resolve().parent.parent


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    setup = text.split("## Set up", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", setup, flags=re.S)


def test_readme_has_exactly_two_setup_commands_and_ci_runs_the_test_one():
    app_cmd, test_cmd = _readme_commands()
    assert "streamlit run app.py" in app_cmd and "requirements.txt" in app_cmd
    assert "pytest" in test_cmd and "requirements-dev.txt" in test_cmd
    ci = (ROOT / ".ci" / "run").read_text()
    assert test_cmd in ci.splitlines()


def _py_files(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_layers_import_in_one_direction():
    for path in _py_files("saga_sim"):
        imported = _imports(path)
        rel = path.relative_to(ROOT).as_posix()
        assert "streamlit" not in imported, rel
        if not rel.startswith("saga_sim/viz/"):
            assert "plotly" not in imported, rel
        else:
            assert "simpy" not in imported, rel


def test_no_module_level_random_state():
    for path in _py_files("saga_sim"):
        text = path.read_text()
        assert not re.search(
            r"(^|[^.\w])random\.(random|uniform|expovariate|choice|seed|gauss|"
            r"randint|shuffle)\(",
            text,
        ), path
        assert "numpy.random.seed" not in text and "np.random.seed" not in text, path


def test_every_module_has_a_docstring():
    for path in _py_files("saga_sim"):
        assert ast.get_docstring(ast.parse(path.read_text())), path


def test_public_api_is_exactly_all():
    exported = {n for n in dir(ss) if not n.startswith("_")}
    modules = {n for n in exported if type(getattr(ss, n)).__name__ == "module"}
    assert set(ss.__all__) == exported - modules
    for name in ss.__all__:
        assert getattr(ss, name) is not None


def test_readme_documents_every_scenario_key():
    readme = (ROOT / "README.md").read_text()
    reference = readme.split("## Scenario files", 1)[1].split("\n## ", 1)[0]
    spans = re.findall(r"`([^`]+)`", reference)
    tokens = {t for span in spans for t in re.split(r"[^\w]+", span) if t}
    models = [
        scenario_module.Scenario,
        scenario_module.Step,
        scenario_module.Service,
        scenario_module.Network,
        scenario_module.Policy,
        scenario_module.Workload,
    ]
    for model in models:
        for name, field in model.model_fields.items():
            key = field.alias or name
            assert key in tokens, f"{model.__name__}.{key} is not in the README's reference"
    for kind in ss.FAULT_KINDS:
        assert kind in tokens
    for inv in ss.INVARIANTS:
        assert f"`{inv}`" in readme


def test_readme_python_examples_run(monkeypatch):
    monkeypatch.chdir(ROOT)
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.+?)\n```", text, flags=re.S)
    assert len(blocks) >= 2
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, "README.md", "exec"), namespace)
    assert namespace["run"].outcome == "compensated"
    assert namespace["cmp"].orchestration.outcome == "completed"
    assert namespace["cmp"].choreography.outcome == "stalled"
