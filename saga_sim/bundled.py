"""The scenarios that ship with saga-sim, found by name wherever the package is installed.

The repository keeps them in its top-level ``scenarios/`` folder. A wheel carries the same files
as package data, ``saga_sim/_scenarios/`` (hatch's ``force-include`` in ``pyproject.toml``), read
with ``importlib.resources``; in a source checkout or an editable install, where that folder does
not exist, the top-level ``scenarios/`` beside the package is read instead. So
``load_scenario("user_registration")`` works from any directory, in a notebook copied anywhere
and from an installed wheel alike.

A name is a file stem (``user_registration``); the scenario's own name (``user-registration``)
and the file name (``user_registration.yaml``) are accepted too.
"""

from __future__ import annotations

from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

__all__ = ["bundled_scenarios", "find_bundled", "scenario_dir", "scenario_text"]

SUFFIX = ".yaml"


def scenario_dir() -> Traversable:
    """The folder the bundled scenarios are read from: the package data of an installed wheel,
    else the source checkout's top-level ``scenarios/``."""
    packaged = resources.files(__package__) / "_scenarios"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "scenarios"


def bundled_scenarios() -> tuple[str, ...]:
    """The bundled scenarios' names (file stems), sorted: what ``load_scenario`` takes by name."""
    folder = scenario_dir()
    if not folder.is_dir():
        return ()
    return tuple(
        sorted(
            f.name.removesuffix(SUFFIX)
            for f in folder.iterdir()
            if f.name.endswith(SUFFIX) and f.is_file()
        )
    )


def _stem(name: str) -> str:
    return name.removesuffix(SUFFIX).replace("-", "_")


def find_bundled(name: str) -> Traversable | None:
    """The bundled scenario file called ``name``, or None (a path is never a bundled name)."""
    if not name or "/" in name or "\\" in name or name.startswith("."):
        return None
    stem = _stem(name)
    if stem not in bundled_scenarios():
        return None
    return scenario_dir() / f"{stem}{SUFFIX}"


def scenario_text(name: str) -> str:
    """A bundled scenario's YAML text.

    Raises:
        ValueError: no bundled scenario has that name (the message lists the names).
    """
    found = find_bundled(name)
    if found is None:
        raise ValueError(
            f"no bundled scenario {name!r}; bundled: {', '.join(bundled_scenarios()) or 'none'}"
        )
    return found.read_text(encoding="utf-8")
