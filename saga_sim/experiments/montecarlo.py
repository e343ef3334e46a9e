"""Monte Carlo: many sagas per style under random faults drawn from rates, aggregated as it goes.

Sagas are simulated in batches of ``chunk`` (one run of the scenario's workload with that many
sagas). Batch ``b`` has its own seed, ``derive_seed(seed, b)``, and its own random fault plan,
drawn from ``rates`` with a generator seeded by ``derive_seed(seed, b, 1)``. Both styles run
every batch with the same seed and the same fault plan: common random numbers, so saga ``k`` of
batch ``b`` meets the same service times, network delays, losses, duplicates, business failures
and crashes in both styles, and the paired outcome table compares like with like.

A batch returns only counts, sums and a latency histogram (log-spaced bins, 100 per decade, so
quantiles and the ECDF are exact to about 2.3 % of the latency); batches are merged in batch
order, so the result is the same whatever executor ran them, and memory does not grow with the
number of sagas unless ``keep_traces`` is set.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..checks import INVARIANTS, OUTCOMES
from ..faults import Crash, CrashCoordinator, FailCompensation, FailStep
from ..run import resolve_scenario, simulate
from ..scenario import Problem, Scenario, ScenarioError
from ..styles import STYLES
from ._common import (
    ExecutorLike,
    Progress,
    check_int,
    check_styles,
    derive_seed,
    executor_for,
    ordered_map,
    wilson,
)
from .params import set_param

__all__ = ["MonteCarlo", "Rates", "draw_faults", "monte_carlo"]

_DECADES = (-6, 7)
_PER_DECADE = 100
_EDGES = 10.0 ** (np.arange(_DECADES[0] * _PER_DECADE, _DECADES[1] * _PER_DECADE + 1) / 100)
_CODES = {o: i for i, o in enumerate(OUTCOMES)}
_INV = list(INVARIANTS)


class Rates(BaseModel):
    """How often each kind of fault happens in a Monte Carlo run.

    Probabilities are per saga and step (or per message); crash rates are per simulated second.
    ``loss`` and ``duplication`` set the scenario's ``network.loss``/``network.duplicate``
    (``None`` keeps the scenario's own values).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    step_failure: float = Field(
        default=0.02, ge=0, le=1, description="P(a step's first attempt aborts), per saga & step"
    )
    compensation_failure: float = Field(
        default=0.0, ge=0, le=1, description="P(a compensation fails once), per saga & step"
    )
    crash: float = Field(default=0.002, ge=0, le=100, description="crashes per service per s")
    coordinator_crash: float = Field(
        default=0.002, ge=0, le=100, description="orchestrator crashes per s (orchestration only)"
    )
    crash_duration: float = Field(default=1.0, gt=0, le=1e6, description="mean seconds down")
    loss: float | None = Field(default=0.01, ge=0, lt=1, description="P(a message is lost)")
    duplication: float | None = Field(
        default=0.01, ge=0, lt=1, description="P(a message is delivered twice)"
    )


def _rates(rates: Rates | dict[str, Any] | None) -> Rates:
    if rates is None:
        return Rates()
    if isinstance(rates, Rates):
        return rates
    try:
        return Rates.model_validate(dict(rates))
    except (ValidationError, TypeError, ValueError) as err:
        if not isinstance(err, ValidationError):
            raise ScenarioError([Problem("rates", "", "must be a mapping")]) from None
        problems = []
        for e in err.errors(include_url=False):
            key = ".".join(str(p) for p in e["loc"])
            msg = e["msg"]
            if e["type"] == "extra_forbidden":
                msg = f"unknown rate; known: {', '.join(Rates.model_fields)}"
            elif "input" in e:
                msg += f" (got {e['input']!r})"
            problems.append(Problem("rates", key, msg))
        raise ScenarioError(problems) from None


def draw_faults(sc: Scenario, rates: Rates, sagas: int, rng: random.Random) -> list[Any]:
    """A random fault plan for one batch of ``sagas`` sagas (fault models, in a fixed order).

    Business failures and compensation failures are drawn per saga and step; crashes of each
    service and of the coordinator as Poisson processes over the batch's expected span
    (arrivals plus one saga's expected duration), each lasting an exponential time.
    """
    faults: list[Any] = []
    steps = sc.steps
    if rates.step_failure > 0 or rates.compensation_failure > 0:
        for saga in range(1, sagas + 1):
            for s in steps:
                if rng.random() < rates.step_failure:
                    faults.append(FailStep(step=s.name, saga=saga))
                if s.undoable and rng.random() < rates.compensation_failure:
                    faults.append(FailCompensation(step=s.name, saga=saga, times=1))
    saga_time = sum(s.duration.mean_value for s in steps) + 2 * len(steps) * (
        sc.network.latency.mean_value
    )
    span = (sagas - 1) * sc.workload.interarrival.mean_value + saga_time
    targets: list[tuple[str | None, float]] = [(name, rates.crash) for name in sc.services]
    targets.append((None, rates.coordinator_crash))
    for service, rate in targets:
        if rate <= 0:
            continue
        t = rng.expovariate(rate)
        while t < span:
            down = rng.expovariate(1.0 / rates.crash_duration)
            if service is None:
                faults.append(CrashCoordinator(at=t, duration=down))
            else:
                faults.append(Crash(service=service, at=t, duration=down))
            t += down + rng.expovariate(rate)
    return faults


@dataclass
class _Acc:
    """Aggregates of one style (a batch's, or merged over batches)."""

    n: int = 0
    outcomes: np.ndarray = field(default_factory=lambda: np.zeros(len(OUTCOMES), np.int64))
    hist: np.ndarray = field(default_factory=lambda: np.zeros(len(_EDGES) + 1, np.int64))
    lat_sum: float = 0.0
    lat_min: float = math.inf
    lat_max: float = -math.inf
    sums: np.ndarray = field(default_factory=lambda: np.zeros(8, np.float64))
    violations: np.ndarray = field(default_factory=lambda: np.zeros(len(_INV), np.int64))

    # sums: messages, messages², compensations, compensations², retries, timeouts,
    #       sagas with violations, sagas finished

    def merge(self, o: _Acc) -> None:
        self.n += o.n
        self.outcomes += o.outcomes
        self.hist += o.hist
        self.lat_sum += o.lat_sum
        self.lat_min = min(self.lat_min, o.lat_min)
        self.lat_max = max(self.lat_max, o.lat_max)
        self.sums += o.sums
        self.violations += o.violations


def _aggregate(run: Any) -> tuple[_Acc, np.ndarray]:
    s = run.sagas
    a = _Acc(n=len(s))
    codes = s["outcome"].cat.codes.to_numpy().astype(np.int64)
    a.outcomes = np.bincount(codes, minlength=len(OUTCOMES)).astype(np.int64)
    lat = s["latency"].to_numpy(dtype=np.float64)
    lat = lat[~np.isnan(lat)]
    if lat.size:
        a.hist = np.bincount(
            np.searchsorted(_EDGES, lat, side="right"), minlength=len(_EDGES) + 1
        ).astype(np.int64)
        a.lat_sum = float(lat.sum())
        a.lat_min = float(lat.min())
        a.lat_max = float(lat.max())
    m = s["messages"].to_numpy(dtype=np.float64)
    c = s["compensations"].to_numpy(dtype=np.float64)
    a.sums = np.array(
        [
            m.sum(),
            (m * m).sum(),
            c.sum(),
            (c * c).sum(),
            float(s["retries"].sum()),
            float(s["timeouts"].sum()),
            float((s["violations"] > 0).sum()),
            float(lat.size),
        ]
    )
    for v in run.violations:
        a.violations[_INV.index(v.invariant)] += 1
    return a, codes


@dataclass(frozen=True)
class _Spec:
    scenario: Scenario
    rates: Rates
    styles: tuple[str, ...]
    n: int
    chunk: int
    seed: int
    horizon: float | None
    keep_traces: bool


def _batch(spec: _Spec, b: int) -> dict[str, Any]:
    k = min(spec.chunk, spec.n - b * spec.chunk)
    seed = derive_seed(spec.seed, b)
    faults = draw_faults(spec.scenario, spec.rates, k, random.Random(derive_seed(spec.seed, b, 1)))
    out: dict[str, Any] = {"acc": {}, "runs": []}
    codes = {}
    for st in spec.styles:
        run = simulate(spec.scenario, st, faults, seed, k, spec.horizon)
        out["acc"][st], codes[st] = _aggregate(run)
        if spec.keep_traces:
            out["runs"].append(run)
        else:
            run.release_trace()
    if len(spec.styles) == 2:
        a, b2 = (codes[s] for s in spec.styles)
        out["paired"] = np.bincount(a * len(OUTCOMES) + b2, minlength=len(OUTCOMES) ** 2)
    return out


def _mean_ci(s: float, s2: float, n: int, z: float = 1.959963984540054) -> tuple[float, ...]:
    """Mean and normal 95 % interval from a sum and a sum of squares of ``n`` values."""
    mu = s / n
    var = max(s2 / n - mu * mu, 0.0) * n / (n - 1) if n > 1 else 0.0
    half = z * math.sqrt(var / n)
    return mu, mu - half, mu + half


class MonteCarlo:
    """The result of ``monte_carlo``: aggregates per style, as DataFrames.

    Attributes:
        scenario: the scenario's name.
        n: sagas per style. seed, chunk, rates: as given.
        styles: the styles run.
        runs: every batch's ``Run`` per style (only with ``keep_traces=True``, else empty).
    """

    def __init__(self, spec: _Spec, accs: dict[str, _Acc], paired: np.ndarray | None, runs):
        self.scenario = spec.scenario.name
        self.n = spec.n
        self.seed = spec.seed
        self.chunk = spec.chunk
        self.rates = spec.rates
        self.styles = spec.styles
        self._accs = accs
        self._paired = paired
        self.runs: list[Any] = runs

    @property
    def outcomes(self) -> pd.DataFrame:
        """One row per (style, outcome): ``count``, ``share`` and its 95 % Wilson interval
        (``ci_low``, ``ci_high``)."""
        rows = []
        for st, a in self._accs.items():
            for o, k in zip(OUTCOMES, a.outcomes):
                lo, hi = wilson(int(k), a.n)
                rows.append((st, o, int(k), k / a.n if a.n else math.nan, lo, hi))
        return pd.DataFrame(
            rows, columns=["style", "outcome", "count", "share", "ci_low", "ci_high"]
        )

    def _quantile(self, a: _Acc, q: float) -> float:
        total = int(a.hist.sum())
        if total == 0:
            return math.nan
        j = int(np.searchsorted(np.cumsum(a.hist), q * total, side="left"))
        upper = _EDGES[j] if j < len(_EDGES) else a.lat_max
        return float(min(max(upper, a.lat_min), a.lat_max))

    @property
    def latency(self) -> pd.DataFrame:
        """One row per style: ``finished`` sagas, latency ``mean`` (exact), ``p50``, ``p95``,
        ``p99`` (from the histogram: within 2.3 %), ``min``, ``max``."""
        rows = []
        for st, a in self._accs.items():
            fin = int(a.sums[7])
            rows.append(
                (
                    st,
                    fin,
                    a.lat_sum / fin if fin else math.nan,
                    self._quantile(a, 0.5),
                    self._quantile(a, 0.95),
                    self._quantile(a, 0.99),
                    a.lat_min if fin else math.nan,
                    a.lat_max if fin else math.nan,
                )
            )
        return pd.DataFrame(
            rows, columns=["style", "finished", "mean", "p50", "p95", "p99", "min", "max"]
        )

    @property
    def ecdf(self) -> pd.DataFrame:
        """Latency ECDF points per style: ``style``, ``latency`` (a bin's upper edge, clipped to
        the largest latency), ``ecdf`` (share of *finished* sagas at or below it)."""
        frames = []
        for st, a in self._accs.items():
            total = int(a.hist.sum())
            if total == 0:
                continue
            idx = np.nonzero(a.hist)[0]
            cum = np.cumsum(a.hist)[idx] / total
            upper = np.where(idx < len(_EDGES), _EDGES[np.minimum(idx, len(_EDGES) - 1)], a.lat_max)
            upper = np.clip(upper, a.lat_min, a.lat_max)
            frames.append(pd.DataFrame({"style": st, "latency": upper, "ecdf": cum}))
        if not frames:
            return pd.DataFrame({"style": [], "latency": [], "ecdf": []})
        return pd.concat(frames, ignore_index=True)

    @property
    def per_saga(self) -> pd.DataFrame:
        """One row per style: mean ``messages`` (with a 95 % normal interval), mean
        ``compensations`` (with interval), ``retries`` and ``timeouts`` per saga, and the share
        of sagas with a violation."""
        rows = []
        for st, a in self._accs.items():
            n = a.n
            m, m2, c, c2, r, t, viol, _fin = a.sums

            mm = _mean_ci(m, m2, n)
            cc = _mean_ci(c, c2, n)
            rows.append((st, n, *mm, *cc, r / n, t / n, viol / n))
        return pd.DataFrame(
            rows,
            columns=[
                "style",
                "sagas",
                "messages",
                "messages_ci_low",
                "messages_ci_high",
                "compensations",
                "compensations_ci_low",
                "compensations_ci_high",
                "retries",
                "timeouts",
                "violation_share",
            ],
        )

    @property
    def violations(self) -> pd.DataFrame:
        """One row per (style, invariant): how many violations were found."""
        rows = [
            (st, inv, int(a.violations[i]))
            for st, a in self._accs.items()
            for i, inv in enumerate(_INV)
        ]
        return pd.DataFrame(rows, columns=["style", "invariant", "count"])

    @property
    def paired(self) -> pd.DataFrame | None:
        """Both styles ran: a table of saga counts, rows the first style's outcome, columns the
        second's (the same saga under the same draws: common random numbers); else None."""
        if self._paired is None:
            return None
        k = len(OUTCOMES)
        df = pd.DataFrame(self._paired.reshape(k, k), index=list(OUTCOMES), columns=list(OUTCOMES))
        df.index.name, df.columns.name = self.styles
        return df

    @property
    def sagas(self) -> pd.DataFrame:
        """Per-saga rows of every batch (only with ``keep_traces=True``), with a ``batch``
        column and a ``saga_global`` number."""
        if not self.runs:
            raise ValueError("per-saga rows are kept only with keep_traces=True")
        frames = []
        per_style = len(self.styles)
        for j, run in enumerate(self.runs):
            b = j // per_style
            f = run.sagas.copy()
            f.insert(0, "batch", b)
            f.insert(1, "saga_global", f["saga"] + b * self.chunk)
            frames.append(f)
        return pd.concat(frames, ignore_index=True)

    def summary(self) -> dict[str, Any]:
        """A JSON-ready summary (the CLI's ``--json``)."""

        def num(x: float) -> float | None:
            return None if x is None or math.isnan(x) else round(float(x), 6)

        out: dict[str, Any] = {
            "scenario": self.scenario,
            "seed": self.seed,
            "sagas": self.n,
            "chunk": self.chunk,
            "rates": self.rates.model_dump(),
            "styles": {},
        }
        oc, lat, ps = self.outcomes, self.latency, self.per_saga
        for st in self.styles:
            o = oc[oc["style"] == st]
            lrow = lat[lat["style"] == st].iloc[0]
            prow = ps[ps["style"] == st].iloc[0]
            out["styles"][st] = {
                "outcomes": {
                    r.outcome: {
                        "count": int(r.count),
                        "share": num(r.share),
                        "ci": [num(r.ci_low), num(r.ci_high)],
                    }
                    for r in o.itertuples()
                },
                "latency": {k: num(lrow[k]) for k in ("mean", "p50", "p95", "p99")},
                "messages_per_saga": num(prow["messages"]),
                "compensations_per_saga": num(prow["compensations"]),
                "retries_per_saga": num(prow["retries"]),
                "violation_share": num(prow["violation_share"]),
            }
        if self._paired is not None:
            out["paired"] = {
                f"{a}|{b}": int(self._paired[i * len(OUTCOMES) + j])
                for i, a in enumerate(OUTCOMES)
                for j, b in enumerate(OUTCOMES)
                if self._paired[i * len(OUTCOMES) + j]
            }
        return out

    def __repr__(self) -> str:
        parts = []
        oc = self.outcomes
        for st in self.styles:
            o = oc[(oc["style"] == st) & (oc["count"] > 0)]
            parts.append(
                f"{st}: " + ", ".join(f"{r.outcome} {r.share:.1%}" for r in o.itertuples())
            )
        return f"<MonteCarlo {self.scenario} n={self.n} seed={self.seed}; {'; '.join(parts)}>"


def monte_carlo(
    scenario: Scenario | str,
    n: int,
    rates: Rates | dict[str, Any] | None = None,
    seed: int = 0,
    executor: ExecutorLike = None,
    keep_traces: bool = False,
    progress: Progress | None = None,
    styles: Any = STYLES,
    chunk: int = 1000,
    horizon: float | None = None,
    workers: int | None = None,
) -> MonteCarlo:
    """Simulate ``n`` sagas per style under random faults drawn from ``rates``.

    Args:
        scenario: a ``Scenario`` or the path of a scenario file (its own faults stay).
        n: sagas per style (1 to 100,000,000).
        rates: a ``Rates`` or a mapping of its fields (defaults: ``Rates()``).
        seed: decides everything: batch seeds and fault plans derive from it.
        executor: ``None``/``"auto"`` (a process pool when ``n`` is 20,000 or more, else
            serial), ``"serial"``, ``"process"``, or any ``concurrent.futures.Executor`` (a Dask
            ``client.get_executor()``). The result does not depend on it.
        keep_traces: keep every batch's ``Run`` (memory grows with ``n``).
        progress: ``progress(done, n)`` after each batch, in the caller's process.
        styles: the styles to run (default both).
        chunk: sagas per batch (part of the experiment's definition: it changes the draws).
        horizon: simulated seconds per batch (default: the scenario's, else 60 s after the
            batch's last arrival).
        workers: processes of the pool made for ``"auto"``/``"process"`` (default: CPUs).

    Returns:
        A ``MonteCarlo`` with ``outcomes`` (shares with Wilson intervals), ``latency``,
        ``ecdf``, ``per_saga``, ``violations`` and ``paired`` tables.

    Raises:
        ScenarioError: an invalid scenario, rate or argument.
    """
    sc = resolve_scenario(scenario)
    styles = check_styles(styles)
    n = check_int("n", n, 1, 100_000_000)
    chunk = check_int("chunk", chunk, 1, 1_000_000)
    seed = check_int("seed", seed, 0, 2**63 - 1)
    r = _rates(rates)
    if r.loss is not None:
        sc = set_param(sc, "network.loss", r.loss)
    if r.duplication is not None:
        sc = set_param(sc, "network.duplicate", r.duplication)
    spec = _Spec(sc, r, styles, n, min(chunk, n), seed, horizon, keep_traces)
    batches = math.ceil(n / spec.chunk)
    accs = {st: _Acc() for st in styles}
    paired = np.zeros(len(OUTCOMES) ** 2, np.int64) if len(styles) == 2 else None
    runs: list[Any] = []
    done = 0
    big = n * len(styles) >= 20_000
    with executor_for(executor, big, workers) as ex:
        for b, part in ordered_map(_batch, [(spec, b) for b in range(batches)], ex):
            for st in styles:
                accs[st].merge(part["acc"][st])
            if paired is not None:
                paired += part["paired"]
            runs += part["runs"]
            done += min(spec.chunk, n - b * spec.chunk)
            if progress is not None:
                progress(done, n)
    return MonteCarlo(spec, accs, paired, runs)
