"""Shared fixtures: the bundled scenarios and a runner that checks the trace's basic shape."""

from __future__ import annotations

from pathlib import Path

import pytest

import saga_sim as ss

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = sorted((ROOT / "scenarios").glob("*.yaml"))


@pytest.fixture(scope="session")
def signup() -> ss.Scenario:
    return ss.load_scenario(ROOT / "scenarios" / "user_registration.yaml")


@pytest.fixture(scope="session", params=[p.stem for p in SCENARIOS])
def bundled(request: pytest.FixtureRequest) -> ss.Scenario:
    return ss.load_scenario(ROOT / "scenarios" / f"{request.param}.yaml")
