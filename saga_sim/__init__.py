"""saga-sim: simulate the saga pattern, orchestrated and choreographed, under the same faults.

The public API::

    import saga_sim as ss
    sc = ss.load_scenario("scenarios/user_registration.yaml")   # raises ss.ScenarioError
    run = ss.simulate(sc, style="orchestration", faults=[...], seed=7)
    cmp = ss.compare(sc, faults=[...], seed=7)
"""

from .bundled import bundled_scenarios
from .checks import INVARIANTS, OUTCOMES, Violation
from .coursework import Participant
from .experiments import (
    MonteCarlo,
    Rates,
    Shrunk,
    count_fault_points,
    fault_matrix,
    fault_points,
    find_and_shrink,
    monte_carlo,
    set_param,
    summarize_sweep,
    sweep,
)
from .faults import FAULT_KINDS, describe_fault
from .presets import Lesson, Preset, lessons, presets
from .replay import store_at
from .run import Comparison, Divergence, Run, compare, simulate
from .scenario import (
    Problem,
    Scenario,
    ScenarioError,
    load_scenario,
    parse_faults,
    parse_scenario,
)
from .styles import STYLES, choreography_flow, orchestration_states
from .trace import EVENT_COLUMNS, EVENT_KINDS

__version__ = "0.1.0"

# The app's URL machinery lived here before saga_sim.share was its home; old spellings keep
# working for a while, with a warning that names the new place.
_MOVED_TO_SHARE = frozenset(
    {
        "KNOBS",
        "SAFEGUARDS",
        "RunConfig",
        "apply_knobs",
        "config_from_query_string",
        "config_to_query_string",
        "decode_config",
        "encode_config",
        "fault_text",
    }
)


def __getattr__(name: str) -> object:
    if name in _MOVED_TO_SHARE:
        import warnings

        from . import share

        warnings.warn(
            f"saga_sim.{name} moved to saga_sim.share.{name}", DeprecationWarning, stacklevel=2
        )
        return getattr(share, name)
    raise AttributeError(f"module 'saga_sim' has no attribute {name!r}")


__all__ = [
    "EVENT_COLUMNS",
    "EVENT_KINDS",
    "FAULT_KINDS",
    "INVARIANTS",
    "OUTCOMES",
    "STYLES",
    "Comparison",
    "Divergence",
    "Lesson",
    "MonteCarlo",
    "Participant",
    "Preset",
    "Problem",
    "Rates",
    "Run",
    "Scenario",
    "ScenarioError",
    "Shrunk",
    "Violation",
    "bundled_scenarios",
    "choreography_flow",
    "compare",
    "count_fault_points",
    "describe_fault",
    "fault_matrix",
    "fault_points",
    "find_and_shrink",
    "lessons",
    "load_scenario",
    "monte_carlo",
    "orchestration_states",
    "parse_faults",
    "parse_scenario",
    "presets",
    "set_param",
    "simulate",
    "store_at",
    "summarize_sweep",
    "sweep",
]
