"""The repository keeps its promises: README commands, CI, layers, docs and exports agree."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

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
    for cmd in (app_cmd, test_cmd):  # the package itself: notebooks and benchmarks import it
        assert "-e ." in cmd.split("&&")[1], cmd
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


def _readme_public_names() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("### Every public name", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| `(\w+)` \|", section, flags=re.M)


def test_the_readme_documents_exactly_the_public_names():
    documented = _readme_public_names()
    assert len(documented) == len(set(documented)), "a name is documented twice"
    assert set(documented) == set(ss.__all__)
    assert not {"RunConfig", "KNOBS", "encode_config"} & set(ss.__all__)  # the app's, in share


def test_names_moved_to_share_still_resolve_with_a_warning():
    from saga_sim import share

    with pytest.warns(DeprecationWarning, match=r"saga_sim\.share\.RunConfig"):
        assert ss.RunConfig is share.RunConfig
    with pytest.raises(AttributeError, match="no_such_name"):
        ss.no_such_name  # noqa: B018


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
    # the lost reply is recovered in both: the coordinator retries, the outbox relay re-publishes
    assert namespace["cmp"].choreography.outcome == "completed"
    assert namespace["cmp"].choreography.metrics["retries"] == 1


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _runtime_imports(path: Path, package: str, known: set[str]) -> set[str]:
    """The saga_sim modules ``path`` imports when it runs (anywhere in the file, function-level
    imports too), leaving out ``if TYPE_CHECKING:`` blocks."""
    tree = ast.parse(path.read_text())
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            candidates = [target, *(f"{target}.{a.name}" for a in node.names)]
        elif isinstance(node, ast.Import):
            candidates = [a.name for a in node.names]
        else:
            continue
        found |= {c for c in candidates if c in known}
    return found


def test_no_import_cycles_between_modules():
    """cli.py registers the experiment verbs of cli_experiments.py, so cli_experiments.py must
    not import cli.py back; more generally no module of saga_sim imports itself round a cycle."""
    paths = {_module_name(p): p for p in _py_files("saga_sim")}
    graph = {}
    for name, path in paths.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        graph[name] = _runtime_imports(path, package, set(paths)) - {name}
    assert "saga_sim.cli_experiments" in graph["saga_sim.cli"]  # the check sees lazy imports
    cycles: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(u: str) -> None:
        state[u] = 1
        stack.append(u)
        for v in sorted(graph[u]):
            if state.get(v) == 1:
                cycles.append([*stack[stack.index(v) :], v])
            elif v not in state:
                visit(v)
        stack.pop()
        state[u] = 2

    for u in sorted(graph):
        if u not in state:
            visit(u)
    assert not cycles, [" -> ".join(c) for c in cycles]


def test_no_private_name_is_imported_from_another_module():
    """A helper shared between modules is public (no leading underscore) in the module that
    defines it; a private module (``_common``) may hold shared helpers for its own package."""
    offenders = []
    for path in [*_py_files("saga_sim"), ROOT / "app.py"]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (
                node.level or (node.module or "").startswith("saga_sim")
            ):
                offenders += [
                    f"{path.relative_to(ROOT)}: {a.name}"
                    for a in node.names
                    if a.name.startswith("_") and not a.name.startswith("__")
                ]
    assert not offenders
