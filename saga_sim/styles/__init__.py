"""The two coordination styles, both over the same world: orchestration and choreography."""

from .choreography import Choreography, choreography_flow
from .orchestration import Orchestration, orchestration_states

STYLES = ("orchestration", "choreography")
BUILDERS = {"orchestration": Orchestration, "choreography": Choreography}

__all__ = [
    "BUILDERS",
    "STYLES",
    "Choreography",
    "Orchestration",
    "choreography_flow",
    "orchestration_states",
]
