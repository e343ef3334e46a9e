"""Keyed, counter-based random streams: every draw of a run comes from here.

A draw is addressed by its purpose and a key of small integers (``SERVICE, saga, step, attempt``)
and computed as a hash of (seed, purpose, key) passed through the splitmix64 finaliser, then
mapped to [0, 1). There is no stream position: a draw does not depend on which draws came before,
so both styles get the same number for the same work (common random numbers), a draw skipped in
one run does not shift the others, and no set or dict order can leak in. Hashes of tuples of ints
are not salted by PYTHONHASHSEED, so traces are identical whatever it is.
"""

from __future__ import annotations

__all__ = [
    "ARRIVAL",
    "COMP_SERVICE",
    "DUPLICATE",
    "LATENCY",
    "LOSS",
    "SERVICE",
    "Streams",
]

ARRIVAL = 1
SERVICE = 2
COMP_SERVICE = 3
LATENCY = 4
LOSS = 5
DUPLICATE = 6

_MASK = (1 << 64) - 1
_MODULUS = (1 << 61) - 1  # sys.hash_info.modulus on 64-bit builds
_TO_UNIT = 2.0**-53


class Streams:
    """The random streams of one run, derived from its seed."""

    __slots__ = ("_head", "seed", "u")

    def __init__(self, seed: int):
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        self.seed = seed
        # Python hashes an int modulo 2**61 - 1, so seeds s and s + 2**61 - 1 would hash alike.
        # A seed below the modulus keys the hash as itself (the draws of every earlier run stay
        # the same); a larger one is split into limbs below the modulus, behind a marker.
        self._head: tuple[int, ...] = (seed,)
        if seed < _MODULUS:
            self.u = self._u
        else:
            limbs = []
            while seed:
                seed, limb = divmod(seed, _MODULUS)
                limbs.append(limb)
            self._head = (-1, *limbs, -len(limbs))
            self.u = self._u_long

    def _u(self, purpose: int, *key: int) -> float:
        """A uniform number in [0, 1) for this purpose and key."""
        x = hash((self.seed, purpose, *key)) & _MASK  # _unit, inlined: the hot path
        x = (x + 0x9E3779B97F4A7C15) & _MASK
        x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
        x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
        return ((x ^ (x >> 31)) >> 11) * _TO_UNIT

    def _u_long(self, purpose: int, *key: int) -> float:
        return _unit(hash((*self._head, purpose, *key)))


def _unit(h: int) -> float:
    """The splitmix64 finaliser of a hash, mapped to [0, 1)."""
    x = h & _MASK
    x = (x + 0x9E3779B97F4A7C15) & _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return ((x ^ (x >> 31)) >> 11) * _TO_UNIT
