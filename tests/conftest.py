"""Shared fixtures: the bundled scenarios and a runner that checks the trace's basic shape."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

import saga_sim as ss

# Hypothesis profiles. "ci" (the default) gives a property without its own max_examples a fixed,
# derandomized budget: the safety suite (tests/test_safety.py) runs 300 examples in CI.
# "deep" is for local searches of thousands: pytest tests/test_safety.py --hypothesis-profile=deep
settings.register_profile(
    "ci",
    max_examples=300,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "deep",
    max_examples=5000,
    derandomize=False,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile("ci")

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = sorted((ROOT / "scenarios").glob("*.yaml"))


@pytest.fixture(scope="session")
def signup() -> ss.Scenario:
    return ss.load_scenario(ROOT / "scenarios" / "user_registration.yaml")


@pytest.fixture(scope="session", params=[p.stem for p in SCENARIOS])
def bundled(request: pytest.FixtureRequest) -> ss.Scenario:
    return ss.load_scenario(ROOT / "scenarios" / f"{request.param}.yaml")
