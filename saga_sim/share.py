"""A shareable run: scenario, faults, seed and knobs as URL query parameters, and back.

``encode_config`` turns a ``RunConfig`` into query parameters (a mapping of strings, with one
``fault`` entry per fault); ``decode_config`` reads them back and validates every field, raising
``ScenarioError`` whose problems name the parameter (``seed``, ``fault[1]``, ``loss``). A bundled
scenario travels by name; an edited or uploaded one as its YAML text, compressed (zlib) and
base64url-encoded. ``apply_knobs`` makes the scenario a run actually uses (latency, loss,
duplication, timeout, retries and the safeguard switches of ``SAFEGUARDS`` changed).

Opening the link reproduces the run to the row, because a run is decided by scenario, faults,
seed and saga count alone.
"""

from __future__ import annotations

import base64
import binascii
import math
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import parse_qs, urlencode

import yaml

from .scenario import (
    MAX_FILE_BYTES,
    Problem,
    Scenario,
    ScenarioError,
    load_yaml,
    parse_faults,
    parse_scenario,
)

__all__ = [
    "BOUNDS",
    "KNOBS",
    "MAX_LINK_FAULTS",
    "MAX_LINK_FAULT_CHARS",
    "MAX_SHARED_SAGAS",
    "SAFEGUARDS",
    "Bound",
    "RunConfig",
    "apply_knobs",
    "check_faults",
    "config_from_query_string",
    "config_to_query_string",
    "decode_config",
    "encode_config",
    "fault_text",
]

MAX_SHARED_SAGAS = 1_000_000
MAX_LINK_FAULTS = 100
"""A link carries at most this many ``fault=`` values."""
MAX_LINK_FAULT_CHARS = 1000
"""A ``fault=`` value is at most this many characters."""
_SOURCE = "link"
_MAX_YAML_PARAM = 200_000
_MAX_NUMBER_CHARS = 40

SAFEGUARDS: dict[str, tuple[str, str]] = {
    "idempotent": (
        "policy.idempotent",
        "Consumers drop duplicate messages; off, a duplicate applies its effect twice.",
    ),
    "outbox": (
        "policy.outbox",
        "A commit and its outgoing message are saved together; off, a crash in between "
        "loses the message.",
    ),
    "barrier": (
        "policy.barrier",
        "A late action whose compensation already ran is refused; off, it runs after its undo.",
    ),
    "query_status": (
        "policy.query_status",
        "Orchestration: after a final timeout, ask the service whether the step ran before "
        "compensating.",
    ),
    "compensation_order": (
        "policy.compensation_order",
        "Undo committed steps one by one, last first (reverse), or all at once (parallel).",
    ),
    "redelivery": (
        "policy.redelivery",
        "Choreography: the broker resends an unacknowledged message after this many seconds "
        "(0: only when the subscriber restarts).",
    ),
    "max_redeliveries": (
        "policy.max_redeliveries",
        "Choreography: resends before a message goes to the dead-letter queue.",
    ),
    "compensation_retries": (
        "policy.compensation_retries",
        "Retries of a failing compensation before the saga needs manual intervention.",
    ),
    "semantic_lock": (
        "policy.isolation.semantic_lock",
        "A touched item stays pending (locked) until its saga ends; other sagas' steps on it "
        "abort.",
    ),
    "commutative": (
        "policy.isolation.commutative",
        "Updates add to the current value instead of writing a value computed earlier.",
    ),
    "reread": (
        "policy.isolation.reread",
        "Reread an item before writing; if another saga changed it since, abort.",
    ),
    "version": (
        "policy.isolation.version",
        "A write based on a stale version is redone on the current value.",
    ),
}
"""The safeguard switches: knob name -> (scenario field path, one-line explanation)."""

KNOBS: tuple[str, ...] = (
    "latency_ms",
    "loss",
    "duplicate",
    "timeout",
    "retries",
    *SAFEGUARDS,
)
"""Every knob of a ``RunConfig``, in the order of ``RunConfig.knobs()``."""

_BOOL_KNOBS = (
    "idempotent",
    "outbox",
    "barrier",
    "query_status",
    "semantic_lock",
    "commutative",
    "reread",
    "version",
)
_TRUE = ("1", "true", "on", "yes")
_FALSE = ("0", "false", "off", "no")
_ORDERS = ("reverse", "parallel")


@dataclass(frozen=True)
class RunConfig:
    """Everything that decides a run (and what the app shows of it).

    Attributes:
        scenario: a bundled scenario's name (file stem), or ``"custom"`` with ``scenario_yaml``.
        scenario_yaml: the scenario's YAML text when it is not a bundled one.
        faults: faults as YAML flow mappings, in order.
        seed: the run's seed.
        sagas: how many sagas (``None``: the scenario's workload).
        latency_ms, loss, duplicate, timeout, retries: knobs over the scenario's network and
            policy (``None``: as the scenario says).
        idempotent, outbox, barrier, query_status, compensation_order, redelivery,
            max_redeliveries, compensation_retries, semantic_lock, commutative, reread,
            version: the safeguard switches of ``SAFEGUARDS`` (``None``: as the scenario says;
            ``redelivery=0`` switches redelivery off).
        saga: the saga the timelines show.
        notices: what decoding a link changed, one sentence each (a value out of range
            and the value used instead).
    """

    scenario: str = "user_registration"
    scenario_yaml: str | None = None
    faults: tuple[str, ...] = ()
    seed: int = 7
    sagas: int | None = None
    latency_ms: float | None = None
    loss: float | None = None
    duplicate: float | None = None
    timeout: float | None = None
    retries: int | None = None
    idempotent: bool | None = None
    outbox: bool | None = None
    barrier: bool | None = None
    query_status: bool | None = None
    compensation_order: str | None = None
    redelivery: float | None = None
    max_redeliveries: int | None = None
    compensation_retries: int | None = None
    semantic_lock: bool | None = None
    commutative: bool | None = None
    reread: bool | None = None
    version: bool | None = None
    saga: int = 1
    extra: dict[str, str] = field(default_factory=dict, compare=False, hash=False)
    notices: tuple[str, ...] = field(default=(), compare=False, hash=False)

    def knobs(self) -> tuple:
        """The knobs as a hashable tuple in ``KNOBS`` order (a cache key)."""
        return tuple(getattr(self, k) for k in KNOBS)

    def with_(self, **changes: Any) -> RunConfig:
        """A copy with some fields changed."""
        return replace(self, **changes)


def fault_text(fault: Any) -> str:
    """A fault (model or mapping) as a canonical one-line YAML flow mapping, ``kind`` first,
    default values left out: ``{kind: fail_step, step: create_user}``."""
    if hasattr(fault, "model_dump"):
        full = fault.model_dump(mode="json", by_alias=True)
        lean = fault.model_dump(mode="json", by_alias=True, exclude_defaults=True)
        data = {"kind": full["kind"], **{k: v for k, v in lean.items() if k != "kind"}}
    else:
        data = dict(fault)
        data = {"kind": data.pop("kind", None), **data}
    text = yaml.safe_dump(data, default_flow_style=True, sort_keys=False, width=math.inf)
    return text.strip()


def _pack(text: str) -> str:
    raw = zlib.compress(text.encode("utf-8"), 9)
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


class _TooLarge(ValueError):
    pass


def _unpack(blob: str) -> str:
    """Inflate a packed scenario, stopping at the scenario size limit (a zlib bomb inflates no
    further than 1 MiB + 1 byte)."""
    pad = "=" * (-len(blob) % 4)
    raw = base64.urlsafe_b64decode(blob + pad)
    inflater = zlib.decompressobj()
    out = inflater.decompress(raw, MAX_FILE_BYTES + 1)
    if len(out) > MAX_FILE_BYTES or inflater.unconsumed_tail:
        raise _TooLarge
    if not inflater.eof:
        raise ValueError("truncated")
    return out.decode("utf-8")


def _num(x: float) -> str:
    return f"{x:g}"


def encode_config(cfg: RunConfig) -> dict[str, str | list[str]]:
    """The configuration as query parameters (only what differs from the defaults)."""
    out: dict[str, str | list[str]] = {}
    if cfg.scenario_yaml is not None:
        out["yaml"] = _pack(cfg.scenario_yaml)
    else:
        out["scenario"] = cfg.scenario
    if cfg.faults:
        out["fault"] = list(cfg.faults)
    out["seed"] = str(cfg.seed)
    if cfg.sagas is not None:
        out["sagas"] = str(cfg.sagas)
    for name in ("latency_ms", "loss", "duplicate", "timeout"):
        v = getattr(cfg, name)
        if v is not None:
            out[name] = _num(v)
    if cfg.retries is not None:
        out["retries"] = str(cfg.retries)
    for name in _BOOL_KNOBS:
        v = getattr(cfg, name)
        if v is not None:
            out[name] = "on" if v else "off"
    if cfg.compensation_order is not None:
        out["compensation_order"] = cfg.compensation_order
    if cfg.redelivery is not None:
        out["redelivery"] = "off" if cfg.redelivery == 0 else _num(cfg.redelivery)
    for name in ("max_redeliveries", "compensation_retries"):
        v = getattr(cfg, name)
        if v is not None:
            out[name] = str(v)
    if cfg.saga != 1:
        out["saga"] = str(cfg.saga)
    return out


def _one(params: Mapping[str, Any], key: str) -> str | None:
    v = params.get(key)
    if isinstance(v, (list, tuple)):
        return str(v[-1]) if v else None
    return None if v is None else str(v)


def _many(params: Mapping[str, Any], key: str) -> list[str]:
    v = params.get(key)
    if v is None:
        return []
    if isinstance(v, (list, tuple)):
        return [str(x) for x in v]
    return [str(v)]


@dataclass(frozen=True)
class Bound:
    """The range of a numeric link parameter, which the app's widget uses too."""

    kind: type  # int or float
    low: float
    high: float
    what: str  # "a whole number", "seconds", ...

    def clamp(self, name: str, value: float, raw: str | None = None) -> tuple[float, str | None]:
        """``value`` moved into the range, and the sentence saying so (None when it was in)."""
        if self.low <= value <= self.high:
            return value, None
        v = self.kind(self.low if value < self.low else self.high)
        shown = raw if raw is not None else self.show(value)
        return v, (
            f"{name} {_shorten(shown)} is out of range {self.show(self.low)} … "
            f"{self.show(self.high)}; using {self.show(v)}"
        )

    def show(self, x: float) -> str:
        """A bound or value as the link would write it."""
        return str(int(x)) if self.kind is int else f"{x:g}"


BOUNDS: dict[str, Bound] = {
    "seed": Bound(int, 0, 2**31 - 1, "a whole number"),
    "sagas": Bound(int, 1, MAX_SHARED_SAGAS, "a whole number"),
    "latency_ms": Bound(float, 0.0, 1e9, "milliseconds"),
    "loss": Bound(float, 0.0, 0.999, "a probability"),
    "duplicate": Bound(float, 0.0, 0.999, "a probability"),
    "timeout": Bound(float, 1e-6, 1e6, "seconds"),
    "retries": Bound(int, 0, 100, "a whole number"),
    "redelivery": Bound(float, 0.0, 1e6, "seconds, or off"),
    "max_redeliveries": Bound(int, 0, 1000, "a whole number"),
    "compensation_retries": Bound(int, 0, 100, "a whole number"),
    "saga": Bound(int, 1, MAX_SHARED_SAGAS, "a saga number"),
}
"""The one table of numeric bounds: the link codec clamps to it (and says so), the app's
widgets take their min and max from it."""

_RANGES = {k: b for k, b in BOUNDS.items() if k != "redelivery"}


def decode_config(
    params: Mapping[str, Any], bundled: tuple[str, ...] | list[str] | None = None
) -> RunConfig:
    """Read a configuration from query parameters, validating every field.

    Args:
        params: a mapping of parameter names to a string or a list of strings (as
            ``st.query_params.to_dict()`` or ``urllib.parse.parse_qs`` give them).
        bundled: the names of the bundled scenarios (to check ``scenario``).

    Returns:
        The configuration; parameters it does not know are kept in ``extra``.

    Raises:
        ScenarioError: every problem found, each naming its parameter.
    """
    problems: list[Problem] = []
    notices: list[str] = []
    values: dict[str, Any] = {}
    for key, bound in _RANGES.items():
        raw = _one(params, key)
        if raw is None or raw == "":
            continue
        v = _number(raw, bound)
        if v is None:
            problems.append(Problem(_SOURCE, key, f"must be {bound.what} (got {_shorten(raw)!r})"))
            continue
        v, notice = bound.clamp(key, v, raw)
        if notice:
            notices.append(notice)
        values[key] = v
    for key in _BOOL_KNOBS:
        raw = _one(params, key)
        if raw is None or raw == "":
            continue
        if raw.lower() in _TRUE:
            values[key] = True
        elif raw.lower() in _FALSE:
            values[key] = False
        else:
            problems.append(Problem(_SOURCE, key, f"must be on or off (got {raw!r})"))
    raw = _one(params, "compensation_order")
    if raw:
        if raw in _ORDERS:
            values["compensation_order"] = raw
        else:
            problems.append(
                Problem(_SOURCE, "compensation_order", f"must be reverse or parallel (got {raw!r})")
            )
    raw = _one(params, "redelivery")
    if raw:
        if raw.lower() in _FALSE:
            values["redelivery"] = 0.0
        else:
            bound = BOUNDS["redelivery"]
            v = _number(raw, bound)
            if v is None:
                problems.append(
                    Problem(
                        _SOURCE, "redelivery", f"must be seconds, or off (got {_shorten(raw)!r})"
                    )
                )
            else:
                v, notice = bound.clamp("redelivery", v, raw)
                if notice:
                    notices.append(notice)
                values["redelivery"] = v
    name = _one(params, "scenario")
    blob = _one(params, "yaml")
    if blob:
        if len(blob) > _MAX_YAML_PARAM:
            problems.append(Problem(_SOURCE, "yaml", "the scenario text in the link is too long"))
        else:
            try:
                values["scenario_yaml"] = _unpack(blob)
                values["scenario"] = "custom"
            except _TooLarge:
                problems.append(
                    Problem(
                        _SOURCE,
                        "yaml",
                        f"the scenario in the link inflates to more than {MAX_FILE_BYTES} bytes "
                        "(1 MiB); scenario files are limited to that",
                    )
                )
            except (binascii.Error, zlib.error, UnicodeDecodeError, ValueError):
                problems.append(
                    Problem(_SOURCE, "yaml", "is not a scenario packed by saga-sim (damaged link?)")
                )
    elif name is not None:
        if bundled is not None and name not in bundled:
            problems.append(
                Problem(
                    _SOURCE,
                    "scenario",
                    f"unknown scenario {name!r}; bundled: {', '.join(bundled)}",
                )
            )
        else:
            values["scenario"] = name
    faults = []
    texts = _many(params, "fault")
    if len(texts) > MAX_LINK_FAULTS:
        problems.append(
            Problem(
                _SOURCE,
                "fault",
                f"the link has {len(texts)} faults; a link carries at most {MAX_LINK_FAULTS}",
            )
        )
        texts = []
    for i, text in enumerate(texts):
        if len(text) > MAX_LINK_FAULT_CHARS:
            problems.append(
                Problem(
                    _SOURCE,
                    f"fault[{i}]",
                    f"is {len(text)} characters long; a fault in a link has at most "
                    f"{MAX_LINK_FAULT_CHARS}",
                )
            )
            continue
        try:
            data = load_yaml(text, f"fault[{i}]")
        except ScenarioError as err:
            why = err.problems[0].message if err.problems else "malformed"
            problems.append(
                Problem(
                    _SOURCE, f"fault[{i}]", f"is not a YAML mapping ({why}): {_shorten(text)!r}"
                )
            )
            continue
        if not isinstance(data, dict) or "kind" not in data:
            problems.append(
                Problem(
                    _SOURCE, f"fault[{i}]", f"must be a mapping with a kind: {_shorten(text)!r}"
                )
            )
            continue
        faults.append(text)
    if problems:  # the link is not used: a value out of range is one more problem with it
        for n in notices:
            problems.append(Problem(_SOURCE, n.split(" ", 1)[0], n.split("; using")[0]))
        raise ScenarioError(problems)
    known = {"scenario", "yaml", "fault", *_RANGES, *KNOBS}
    extra = {k: _shorten(_one(params, k) or "", 1000) for k in list(params)[:100] if k not in known}
    return RunConfig(faults=tuple(faults), extra=extra, notices=tuple(notices), **values)


def _shorten(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _number(raw: str, bound: Bound) -> float | None:
    """``raw`` read as the bound's kind of number, or None when it is not one (or too long to
    be one: a 5,000-digit number is not converted)."""
    if len(raw) > _MAX_NUMBER_CHARS:
        return None
    try:
        v = int(raw) if bound.kind is int else float(raw)
    except ValueError:
        return None
    if bound.kind is float and not math.isfinite(v):
        return None
    return v


def config_to_query_string(cfg: RunConfig) -> str:
    """The configuration as a URL query string (without the ``?``)."""
    return urlencode(encode_config(cfg), doseq=True)


def config_from_query_string(
    qs: str, bundled: tuple[str, ...] | list[str] | None = None
) -> RunConfig:
    """Read a configuration from a URL query string (with or without the ``?``)."""
    return decode_config(parse_qs(qs.lstrip("?"), keep_blank_values=True), bundled)


def _scale_dist(dist: dict[str, Any], mean_s: float) -> dict[str, Any]:
    kind = dist.get("dist")
    if kind == "constant":
        return {"dist": "constant", "value": mean_s}
    if kind == "uniform":
        old = (dist["low"] + dist["high"]) / 2 or 1.0
        f = mean_s / old
        return {"dist": "uniform", "low": dist["low"] * f, "high": dist["high"] * f}
    if kind == "lognormal":
        f = mean_s / dist["mean"]
        return {"dist": "lognormal", "mean": mean_s, "sd": dist["sd"] * f}
    return {"dist": kind or "exponential", "mean": mean_s}


def apply_knobs(scenario: Scenario, cfg: RunConfig) -> Scenario:
    """The scenario with the configuration's knobs applied (validated again).

    The network latency keeps its distribution's shape: its mean becomes ``latency_ms`` (a
    lognormal's spread scales with it; ``0`` makes it a constant 0). Each safeguard switch sets
    its field of ``SAFEGUARDS`` (``redelivery=0``: null, redelivery off).

    Raises:
        ScenarioError: a knob makes the scenario invalid (paths name the scenario field).
    """
    if all(v is None for v in cfg.knobs()):
        return scenario
    # Every field, nulls included: a null can mean something (``policy.redelivery: null``).
    data = scenario.model_dump(mode="json", by_alias=True)
    net = data.setdefault("network", {})
    pol = data.setdefault("policy", {})
    if cfg.latency_ms is not None:
        mean_s = cfg.latency_ms / 1000.0
        if mean_s <= 0:
            net["latency"] = {"dist": "constant", "value": 0.0}
        else:
            net["latency"] = _scale_dist(dict(net.get("latency", {})), mean_s)
    if cfg.loss is not None:
        net["loss"] = cfg.loss
    if cfg.duplicate is not None:
        net["duplicate"] = cfg.duplicate
    if cfg.timeout is not None:
        pol["timeout"] = cfg.timeout
    if cfg.retries is not None:
        pol["retries"] = cfg.retries
    for name, (path, _why) in SAFEGUARDS.items():
        v = getattr(cfg, name)
        if v is None:
            continue
        if name == "redelivery" and v == 0:
            v = None
        *heads, last = path.split(".")
        node = data
        for h in heads:
            node = node.setdefault(h, {})
        node[last] = v
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)
    return parse_scenario(text, source="knobs")


def check_faults(cfg: RunConfig, scenario: Scenario) -> tuple[Any, ...]:
    """Validate the configuration's faults against the scenario (paths ``fault[i].field``)."""
    return parse_faults(list(cfg.faults), scenario, source="fault")
