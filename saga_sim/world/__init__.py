"""The SimPy world both styles run in: seeded streams, network, broker, services and crashes."""

from .world import World

__all__ = ["World"]
