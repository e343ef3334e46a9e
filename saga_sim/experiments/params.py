"""Scenario parameters by dotted path: ``network.loss``, ``policy.timeout``,
``steps[2].duration.mean``, ``services.identity.workers``.

Scenarios are frozen, validated models: ``set_param`` returns a *new* scenario with one value
changed and validated again as a whole, so a value out of range is reported like a bad scenario
file, with the field path; a path that names nothing is refused with the closest valid path.
"""

from __future__ import annotations

import difflib
import re
from typing import Any

from ..scenario import Problem, Scenario, ScenarioError, scenario_from_dict

__all__ = ["get_param", "param_paths", "set_param"]

_TOKEN = re.compile(r"([A-Za-z_][A-Za-z0-9_-]*)|\[(\d+)\]")


def _parse(path: str) -> list[str | int]:
    """``steps[2].duration.mean`` -> ['steps', 2, 'duration', 'mean'], or ValueError."""
    if not isinstance(path, str) or not path:
        raise ValueError("empty path")
    parts: list[str | int] = []
    pos = 0
    while pos < len(path):
        if path[pos] == "." and parts and pos + 1 < len(path) and path[pos + 1] != "[":
            pos += 1
        m = _TOKEN.match(path, pos)
        if m is None:
            raise ValueError(f"cannot read {path!r} at character {pos + 1}")
        parts.append(m.group(1) if m.group(1) is not None else int(m.group(2)))
        pos = m.end()
    return parts


def _fmt(parts: list[str | int]) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else ("." if out else "") + p
    return out


def param_paths(scenario: Scenario) -> list[str]:
    """Every settable leaf path of a scenario (numbers, strings, booleans), in file order."""
    out: list[str] = []

    def walk(node: Any, parts: list[str | int]) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, [*parts, k])
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, [*parts, i])
        else:
            out.append(_fmt(parts))

    walk(_dump(scenario), [])
    return out


def _dump(scenario: Scenario) -> dict[str, Any]:
    # Defaults included, so every field is addressable; aliases (``for``) as in the file.
    return scenario.model_dump(mode="json", by_alias=True)


def _bad_path(scenario: Scenario, path: str, why: str) -> ScenarioError:
    known = param_paths(scenario)
    close = difflib.get_close_matches(str(path), known, n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return ScenarioError([Problem("parameter", str(path), f"{why}{hint}")])


def _walk(data: Any, parts: list[str | int], scenario: Scenario, path: str) -> tuple[Any, Any]:
    """The container holding the last part, and the last part (checked to exist)."""
    node = data
    for depth, p in enumerate(parts):
        where = _fmt(parts[: depth + 1])
        if isinstance(p, int):
            if not isinstance(node, list):
                head = _fmt(parts[:depth]) or "the scenario"
                raise _bad_path(scenario, path, f"{head} is not a list")
            if p >= len(node):
                raise _bad_path(
                    scenario, path, f"{where} does not exist (the list has {len(node)} items)"
                )
        else:
            if isinstance(node, list):
                head = _fmt(parts[:depth])
                raise _bad_path(scenario, path, f"{head} is a list: index it, as in {head}[0]")
            if not isinstance(node, dict):
                raise _bad_path(
                    scenario, path, f"{_fmt(parts[:depth]) or 'the scenario'} has no fields"
                )
            if p not in node:
                raise _bad_path(scenario, path, f"unknown parameter {where!r}")
        if depth == len(parts) - 1:
            return node, p
        node = node[p]
    raise AssertionError("unreachable")  # pragma: no cover


def get_param(scenario: Scenario, path: str) -> Any:
    """The value at a dotted path (mappings for composite fields such as a distribution)."""
    try:
        parts = _parse(path)
    except ValueError as exc:
        raise _bad_path(scenario, path, f"not a parameter path: {exc}") from None
    node, last = _walk(_dump(scenario), parts, scenario, path)
    return node[last]


def set_param(scenario: Scenario, path: str, value: Any) -> Scenario:
    """A copy of ``scenario`` with the parameter at ``path`` set to ``value``, validated.

    Args:
        scenario: the scenario to start from (it is not changed).
        path: a dotted path with list indexes: ``network.loss``, ``policy.timeout``,
            ``steps[2].duration.mean``, ``workload.interarrival`` (a whole distribution:
            a number means a constant, or a mapping).
        value: the new value.

    Raises:
        ScenarioError: the path names no parameter (with the closest valid path), or the value
            is invalid there (with the field path and the rule it breaks).
    """
    try:
        parts = _parse(path)
    except ValueError as exc:
        raise _bad_path(scenario, path, f"not a parameter path: {exc}") from None
    data = _dump(scenario)
    node, last = _walk(data, parts, scenario, path)
    node[last] = value
    return scenario_from_dict(data, source=f"{path}={value!r}")
