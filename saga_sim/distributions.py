"""Probability distributions for durations, latencies and interarrival times.

Each distribution is a frozen pydantic model with a ``dist`` tag and a ``sample(u)`` method
that maps one uniform number ``u`` in [0, 1) to a value by the inverse of its CDF. Sampling by
inversion lets the simulation feed every draw from its keyed, counter-based streams
(``saga_sim.world.streams``): the same key gives the same ``u``, so the same value, in both
styles (common random numbers).

In a scenario file a distribution is written as a mapping (``{dist: exponential, mean: 0.02}``)
or, for a constant, as a bare number (``0.02``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from statistics import NormalDist
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

__all__ = ["Constant", "Distribution", "Exponential", "Lognormal", "Uniform"]

try:  # the C-speed-ish core of NormalDist.inv_cdf, without its per-call checks
    from statistics import _normal_dist_inv_cdf as _inv_cdf  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - other Python versions

    def _inv_cdf(p: float, mu: float, sigma: float) -> float:
        return NormalDist(mu, sigma).inv_cdf(p)


class _Dist(BaseModel):
    # strict: '0.02' and true are not numbers (an int still passes where a float goes)
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    def sampler(self) -> Callable[[float], float]:  # pragma: no cover - overridden
        """A fast function u -> value, with the parameters folded in (for hot loops)."""
        raise NotImplementedError

    def sample(self, u: float) -> float:
        """The value at quantile ``u`` (inverse CDF)."""
        return self.sampler()(u)

    @property
    def mean_value(self) -> float:  # pragma: no cover - overridden
        raise NotImplementedError


class Exponential(_Dist):
    """Exponential distribution with the given mean (seconds)."""

    dist: Literal["exponential"] = "exponential"
    mean: float = Field(gt=0, le=1e6, description="mean, > 0")

    def sampler(self) -> Callable[[float], float]:
        neg_mean = -self.mean
        log1p = math.log1p
        return lambda u: neg_mean * log1p(-u)

    @property
    def mean_value(self) -> float:
        return self.mean


class Lognormal(_Dist):
    """Lognormal distribution given by its own mean and standard deviation (not log-space)."""

    dist: Literal["lognormal"] = "lognormal"
    mean: float = Field(gt=0, le=1e6, description="mean, > 0")
    sd: float = Field(ge=0, le=1e6, description="standard deviation, >= 0")

    @model_validator(mode="after")
    def _drawable(self) -> Lognormal:
        """The sampler needs a log-space sigma > 0 (when sd > 0) and finite draws."""
        if self.sd == 0:
            return self
        try:
            s2 = math.log1p((self.sd / self.mean) ** 2)
        except OverflowError:
            raise ValueError(
                f"sd ({self.sd:g}) is too large beside the mean ({self.mean:g}) to draw from"
            ) from None
        if not s2 > 0:
            raise ValueError(
                f"sd ({self.sd:g}) is too small beside the mean ({self.mean:g}) to draw from; "
                "use sd: 0 for a constant"
            )
        draw = self.sampler()
        try:
            ok = all(math.isfinite(draw(u)) for u in (0.0, 0.5, 1 - 1e-12))
        except (OverflowError, ValueError):
            ok = False
        if not ok:
            raise ValueError(
                f"sd ({self.sd:g}) is too large beside the mean ({self.mean:g}) to draw from"
            )
        return self

    def sampler(self) -> Callable[[float], float]:
        if self.sd == 0:
            mean = self.mean
            return lambda u: mean
        s2 = math.log1p((self.sd / self.mean) ** 2)
        mu = math.log(self.mean) - s2 / 2
        sigma = math.sqrt(s2)
        exp = math.exp

        def draw(u: float) -> float:
            u = 1e-12 if u < 1e-12 else (1 - 1e-12 if u > 1 - 1e-12 else u)
            return exp(_inv_cdf(u, mu, sigma))

        return draw

    @property
    def mean_value(self) -> float:
        return self.mean


class Uniform(_Dist):
    """Uniform distribution on [low, high]."""

    dist: Literal["uniform"] = "uniform"
    low: float = Field(ge=0, le=1e6, description="lower bound, >= 0")
    high: float = Field(ge=0, le=1e6, description="upper bound, >= low")

    @model_validator(mode="after")
    def _ordered(self) -> Uniform:
        if self.high < self.low:
            raise ValueError(f"high ({self.high}) must be >= low ({self.low})")
        return self

    def sampler(self) -> Callable[[float], float]:
        low, span = self.low, self.high - self.low
        return lambda u: low + span * u

    @property
    def mean_value(self) -> float:
        return (self.low + self.high) / 2


class Constant(_Dist):
    """Always the same value."""

    dist: Literal["constant"] = "constant"
    value: float = Field(ge=0, le=1e6, description="the value, >= 0")

    def sampler(self) -> Callable[[float], float]:
        value = self.value
        return lambda u: value

    @property
    def mean_value(self) -> float:
        return self.value


def _number_is_constant(value: Any) -> Any:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return {"dist": "constant", "value": value}
    return value


Distribution = Annotated[
    Exponential | Lognormal | Uniform | Constant,
    Field(discriminator="dist"),
    BeforeValidator(_number_is_constant),
]
"""Any distribution, chosen by its ``dist`` key; a bare number means a constant."""
