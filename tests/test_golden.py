"""Golden traces: seeded runs compared, to the row, with traces checked in under tests/golden/.

A change that alters any event of these runs shows up here. When the change is intended,
regenerate them with ``SAGA_SIM_UPDATE_GOLDEN=1 python -m pytest tests/test_golden.py`` and read
the diff before committing it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import saga_sim as ss

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).resolve().parent / "golden"

CASES = {
    "signup-email-fails": (
        "user_registration",
        ["{kind: fail_step, step: send_welcome_email}"],
        7,
        None,
    ),
    "signup-reply-lost": (
        "user_registration",
        ["{kind: drop, step: create_user, leg: reply}"],
        7,
        None,
    ),
    "orders-crash-and-duplicates": (
        "order_fulfillment",
        [
            "{kind: crash, service: inventory, at: 0.3, for: 0.6}",
            "{kind: duplicate, step: schedule_shipment, count: 2}",
            "{kind: fail_step, step: approve_order, saga: 2}",
        ],
        3,
        4,
    ),
    "inventory-race": ("inventory_concurrency", [], 0, None),
}


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("style", ss.STYLES)
def test_golden_trace(name, style):
    scenario, faults, seed, sagas = CASES[name]
    run = ss.simulate(
        ROOT / "scenarios" / f"{scenario}.yaml", style, faults=faults, seed=seed, sagas=sagas
    )
    text = run.events.to_csv(lineterminator="\n")
    path = GOLDEN / f"{name}.{style}.csv"
    if os.environ.get("SAGA_SIM_UPDATE_GOLDEN") == "1":
        path.write_text(text)
    assert path.exists(), f"no golden trace {path.name}: run with SAGA_SIM_UPDATE_GOLDEN=1"
    expected = path.read_text()
    if text != expected:
        got, want = text.splitlines(), expected.splitlines()
        first = next(
            (k for k, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want))
        )
        pytest.fail(
            f"{path.name} differs from row {first - 1}:\n  got:  "
            f"{got[first] if first < len(got) else '<end>'}\n  want: "
            f"{want[first] if first < len(want) else '<end>'}"
        )
