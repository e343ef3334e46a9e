"""Scenarios: the saga a user writes in YAML, validated once, at the edge, into frozen models.

``load_scenario`` and ``parse_scenario`` read a YAML file or text; ``parse_faults`` reads faults
given apart from a scenario (the CLI's ``--fault``, the app, a notebook). Every problem found is
collected into one ``ScenarioError``, each with the file, the field path (``steps[1].service``)
and a sentence. The simulation never sees YAML or dicts, only these models.
"""

from __future__ import annotations

import difflib
import os
import re
import string
import types
import typing
from collections.abc import Iterable
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
)

from .bundled import bundled_scenarios, find_bundled
from .distributions import Distribution, Exponential, Lognormal
from .faults import Crash, FailCompensation, Fault, MessageFault, Partition

__all__ = [
    "MAX_FILE_BYTES",
    "MAX_NESTING",
    "MAX_PROBLEMS",
    "MAX_SERVICES",
    "MAX_TEMPLATE_WIDTH",
    "MAX_TOTAL_WORKERS",
    "Isolation",
    "Network",
    "Policy",
    "Problem",
    "Scenario",
    "ScenarioError",
    "Service",
    "Step",
    "StepData",
    "Workload",
    "load_scenario",
    "parse_faults",
    "parse_scenario",
]

MAX_FILE_BYTES = 1024 * 1024
"""A scenario file or text is at most this many bytes (1 MiB)."""
MAX_NESTING = 64
"""YAML deeper than this many levels of mappings and lists is refused (a scenario needs ~6)."""
MAX_INT_DIGITS = 30
"""A YAML integer longer than this is refused before Python converts it."""
MAX_PROBLEMS = 25
"""An error lists at most this many problems, then says how many more there are."""
MAX_SERVICES = 100
"""A scenario has at most this many services."""
MAX_TOTAL_WORKERS = 10_000
"""The workers of all services together (each is a simulated process the run builds)."""
MAX_TEMPLATE_WIDTH = 32
"""The largest width or precision a format spec in ``writes`` may ask for."""
MAX_WRITES = 32
"""A step writes at most this many fields."""
RESERVED_NODES = ("coordinator", "broker", "client")

Name = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)]


class _Model(BaseModel):
    # strict: '12' and true are not numbers, 1 is not true (ints still pass where floats go)
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True, strict=True)


_SPEC = re.compile(
    r"(?:(?P<fill>.)?(?P<align>[<>=^]))?(?P<sign>[-+ ])?z?#?0?(?P<width>\d+)?[,_]?"
    r"(?:\.(?P<precision>\d+))?(?P<type>[a-zA-Z%])?\Z",
    re.S,
)
_INT_TYPES = "dboxXeEfFgG%"


def _check_template(template: str) -> str:
    """A ``writes`` value: text in which ``{saga}`` (with a bounded format spec) is filled in."""
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(
            f"unbalanced brace ({exc}); write {{{{ or }}}} for a literal brace"
        ) from None
    for _literal, field, spec, conversion in parts:
        if field is None:
            continue
        if field != "saga":
            if field.startswith(("saga.", "saga[")):
                raise ValueError(
                    f"only {{saga}} itself can be filled in, not {{{_short(field, 40)}}}"
                )
            raise ValueError(
                f"unknown field {{{_short(field, 40)}}}; a template fills in only {{saga}} "
                "(the saga number)"
            )
        if conversion not in (None, "r", "s", "a"):
            raise ValueError(f"unknown conversion !{conversion} (use !r, !s, !a or none)")
        spec = spec or ""
        if "{" in spec or "}" in spec:
            raise ValueError(f"the format spec {_short(spec, 40)!r} may not contain fields")
        m = _SPEC.match(spec)
        if m is None:
            raise ValueError(f"the format spec {_short(spec, 40)!r} is not a valid format spec")
        for what in ("width", "precision"):
            v = m.group(what)
            if v is not None and (len(v) > 4 or int(v) > MAX_TEMPLATE_WIDTH):
                raise ValueError(
                    f"the format spec {_short(spec, 40)!r} asks for a {what} of "
                    f"{_short(v, 12)}; at most {MAX_TEMPLATE_WIDTH} is allowed"
                )
        kind = m.group("type")
        allowed = "s" if conversion else _INT_TYPES
        if kind is not None and kind not in allowed:
            raise ValueError(
                f"the format spec {spec!r} has format type {kind!r}, which a "
                f"{'text' if conversion else 'saga number'} cannot take (allowed: "
                f"{', '.join(allowed)})"
            )
    try:
        template.format(saga=1)
        template.format(saga=1_000_000)
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        raise ValueError(f"not a valid format: {exc}") from None
    return template


Template = Annotated[str, Field(max_length=1000), AfterValidator(_check_template)]
"""A ``writes`` value, checked when the scenario loads (``{saga}`` and a bounded spec only)."""


class Service(_Model):
    """A participant: a process with an inbox, workers and its own local store."""

    description: str = ""
    workers: int = Field(default=4, ge=1, le=1000, description="concurrent local transactions")
    data: dict[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)], int] = Field(
        default_factory=dict,
        max_length=1000,
        description="shared items in this service's store and their "
        "initial values (sagas read and update them concurrently)",
    )


class StepData(_Model):
    """What a step does to a shared item of its service's store."""

    item: str
    change: int = Field(
        default=0,
        ge=-1_000_000,
        le=1_000_000,
        description="added to the item at commit (0: the step only reads it)",
    )
    floor: int | None = Field(
        default=0, description="abort if the result would fall below this (null: no check)"
    )


class Step(_Model):
    """One local transaction of the saga, owned by one service."""

    name: Name
    service: Annotated[str, Field(max_length=64)]
    action: Name
    compensation: Name | None = None
    kind: Literal["compensatable", "pivot", "retriable"] = "compensatable"
    duration: Distribution = Exponential(mean=0.02)
    compensation_duration: Distribution | None = None
    writes: dict[Annotated[str, Field(max_length=64)], Template] = Field(
        default_factory=dict,
        max_length=MAX_WRITES,
        description="fields the step writes; '{saga}' is replaced by the saga number "
        "(a format spec such as '{saga:04d}' may follow)",
    )
    after: list[str] | None = Field(
        default=None,
        description="steps that must commit before this one starts (default: the "
        "previous step; [] : it starts with the saga). Steps with the same predecessors run in "
        "parallel.",
    )
    data: StepData | None = None
    description: str = ""

    @property
    def undoable(self) -> bool:
        """True when a compensation exists to run (a compensatable step with something to undo)."""
        return self.kind == "compensatable" and self.compensation is not None


class Network(_Model):
    """Per-message latency, loss and duplication, shared by every link."""

    latency: Distribution = Lognormal(mean=0.005, sd=0.002)
    loss: float = Field(default=0.0, ge=0, lt=1)
    duplicate: float = Field(default=0.0, ge=0, lt=1)


class Isolation(_Model):
    """Countermeasures against isolation anomalies between concurrent sagas (all off: none)."""

    semantic_lock: bool = Field(
        default=False,
        description="a step that touches an item leaves it pending (locked by its "
        "saga) until the saga ends or the step is undone; other sagas' steps on it abort",
    )
    commutative: bool = Field(
        default=False,
        description="updates are applied as increments to the current value, not "
        "as a value computed from an earlier read",
    )
    reread: bool = Field(
        default=False,
        description="before writing, reread the item; if another saga changed it "
        "since this saga read it, abort",
    )
    version: bool = Field(
        default=False,
        description="optimistic versioning: a write whose read version is stale is "
        "re-executed on the current value",
    )


class Policy(_Model):
    """The coordinator's and participants' protocol settings."""

    timeout: float = Field(default=0.5, gt=0, le=1e6, description="seconds to wait for a reply")
    retries: int = Field(default=3, ge=0, le=100, description="re-sends after a timeout")
    backoff: float = Field(default=2.0, ge=1, le=100, description="retry delay multiplier")
    retry_delay: float = Field(default=0.05, ge=0, le=1e6, description="first retry delay, s")
    compensation_retries: int = Field(default=5, ge=0, le=100)
    idempotent: bool = Field(default=True, description="consumers deduplicate by message key")
    barrier: bool = Field(default=True, description="refuse an action after its compensation")
    outbox: bool = Field(
        default=True,
        description="a message that follows a local transaction is committed with it (a relay "
        "sends it after a crash)",
    )
    compensation_order: Literal["reverse", "parallel"] = Field(
        default="reverse", description="undo committed steps one by one in reverse, or all at once"
    )
    query_status: bool = Field(
        default=True,
        description="orchestration: after a step times out for good, ask its service whether it "
        "ran before compensating",
    )
    max_redeliveries: int = Field(
        default=5,
        ge=0,
        le=1000,
        description="choreography: redeliveries before a message goes to the dead-letter queue",
    )
    isolation: Isolation = Field(default_factory=lambda: Isolation())
    redelivery: float | None = Field(
        default=1.0,
        gt=0,
        le=1e6,
        description="choreography: the broker redelivers a message not acknowledged after this "
        "many seconds (null: only when the subscriber restarts)",
    )
    relay_timeout: float = Field(
        default=0.2,
        gt=0,
        le=1e6,
        description="with the outbox: the relay publishes an event again when the broker has not "
        "acknowledged it after this many seconds (each next wait backoff times longer)",
    )


class Workload(_Model):
    """How many sagas start, and how far apart."""

    sagas: int = Field(default=1, ge=1, le=1_000_000)
    interarrival: Distribution = Exponential(mean=0.1)


class Scenario(_Model):
    """A saga, its services, network, policy, workload and faults."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$", max_length=64)
    title: str = ""
    description: str = ""
    services: dict[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)], Service] = (
        Field(max_length=MAX_SERVICES)
    )
    steps: list[Step] = Field(min_length=1, max_length=100)
    network: Network = Network()
    policy: Policy = Policy()
    workload: Workload = Workload()
    faults: list[Fault] = Field(default_factory=list, max_length=1000)
    horizon: float | None = Field(default=None, gt=0, le=1e7, description="simulated seconds")

    @field_validator("services", mode="before")
    @classmethod
    def _none_is_empty(cls, v: Any) -> Any:
        if isinstance(v, dict):
            return {k: ({} if s is None else s) for k, s in v.items()}
        return v

    def step_index(self, name: str) -> int:
        """The position of the step called ``name``."""
        for i, s in enumerate(self.steps):
            if s.name == name:
                return i
        raise KeyError(name)

    @cached_property
    def predecessors(self) -> tuple[tuple[int, ...], ...]:
        """For each step, the indices of the steps that must commit before it starts."""
        index = {st.name: i for i, st in enumerate(self.steps)}
        out = []
        for i, st in enumerate(self.steps):
            if st.after is None:
                out.append((i - 1,) if i else ())
            else:
                out.append(tuple(sorted(index[n] for n in st.after if n in index)))
        return tuple(out)

    @property
    def is_linear(self) -> bool:
        """True when every step follows the previous one (no ``after`` makes a branch)."""
        return all(p == ((i - 1,) if i else ()) for i, p in enumerate(self.predecessors))

    def descendants(self, i: int) -> frozenset[int]:
        """Steps that (transitively) wait for step ``i``, ``i`` itself included."""
        out = {i}
        for j in range(i + 1, len(self.steps)):
            if any(p in out for p in self.predecessors[j]):
                out.add(j)
        return frozenset(out)

    @property
    def pivot_index(self) -> int | None:
        """Index of the pivot step, if any."""
        for i, s in enumerate(self.steps):
            if s.kind == "pivot":
                return i
        return None

    def to_yaml(self) -> str:
        """The scenario as YAML text that ``parse_scenario`` reads back to an equal scenario."""
        data = self.model_dump(mode="json", by_alias=True, exclude_none=True)
        if Scenario.model_validate(data) != self:
            # A null that means something (``policy.redelivery: null``, ``floor: null``) would
            # read back as its default: keep every field, nulls included.
            data = self.model_dump(mode="json", by_alias=True)
        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)


# --------------------------------------------------------------------------------------------
# Errors


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input: where (file, field path) and what."""

    file: str
    path: str
    message: str

    def __str__(self) -> str:
        if not self.path:
            where = self.file
        elif self.path.startswith("["):
            where = f"{self.file}{self.path}"
        else:
            where = f"{self.file}: {self.path}"
        return f"{where}: {self.message}"


class ScenarioError(ValueError):
    """A scenario or fault list is invalid; ``problems`` lists every problem found."""

    def __init__(self, problems: Iterable[Problem]):
        found = [
            p if len(p.message) <= _MAX_MESSAGE else replace(p, message=_short(p.message))
            for p in problems
        ]
        n = len(found)
        if n > MAX_PROBLEMS:
            more = n - MAX_PROBLEMS
            found = found[:MAX_PROBLEMS]
            found.append(Problem(found[0].file, "", f"... and {more} more problems"))
        self.problems: list[Problem] = found
        self.total = n
        head = f"{n} problem{'s' if n != 1 else ''} found"
        super().__init__(head + ":\n" + "\n".join(f"  {p}" for p in self.problems))


_MAX_MESSAGE = 2000


def _short(value: Any, limit: int = _MAX_MESSAGE) -> str:
    """``value`` as text of at most ``limit`` characters (the middle cut out)."""
    text = value if isinstance(value, str) else repr(value)
    if len(text) <= limit:
        return text
    keep = max(limit - 30, 10)
    return f"{text[: keep // 2]}...({len(text) - keep} characters)...{text[-(keep // 2) :]}"


def _format_path(parts: Iterable[Any]) -> str:
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            out += ("." if out else "") + str(p)
    return out


def _unwrap(tp: Any) -> Any:
    while typing.get_origin(tp) is Annotated:
        tp = typing.get_args(tp)[0]
    return tp


def _union_members(tp: Any) -> list[Any]:
    tp = _unwrap(tp)
    if typing.get_origin(tp) in (Union, types.UnionType):
        return [_unwrap(a) for a in typing.get_args(tp)]
    return [tp]


def _resolve(loc: tuple[Any, ...], root: Any) -> tuple[list[Any], Any]:
    """Walk a pydantic error location through the models: (clean path, type at the end).

    Discriminator tags that pydantic puts in locations (``faults.0.fail_step.step``) are
    dropped from the path, so users see the path as they wrote it.
    """
    path: list[Any] = []
    tp: Any = root
    for part in loc:
        tp = _unwrap(tp)
        origin = typing.get_origin(tp)
        members = _union_members(tp)
        if len(members) > 1:
            models = [m for m in members if isinstance(m, type) and issubclass(m, BaseModel)]
            tagged = None
            for m in models:
                for key in ("kind", "dist"):
                    f = m.model_fields.get(key)
                    if f is not None and f.default == part:
                        tagged = m
            if tagged is not None:
                tp = tagged
                continue
            nonnull = [m for m in members if m is not type(None)]
            tp = nonnull[0] if nonnull else tp
            tp = _unwrap(tp)
            origin = typing.get_origin(tp)
        if isinstance(part, str) and part.startswith(("function-", "literal[", "constrained")):
            continue
        path.append(part)
        if origin in (list, tuple):
            args = typing.get_args(tp)
            tp = args[0] if args else Any
        elif origin is dict:
            tp = typing.get_args(tp)[1]
        elif isinstance(tp, type) and issubclass(tp, BaseModel):
            field = tp.model_fields.get(part)
            if field is None:
                for f in tp.model_fields.values():
                    if f.alias == part:
                        field = f
            tp = field.annotation if field is not None else Any
        else:
            tp = Any
    return path, tp


def _allowed_keys(tp: Any) -> list[str]:
    tp = _unwrap(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return [f.alias or n for n, f in tp.model_fields.items()]
    return []


_PATTERN_RULES = {
    r"^[a-z0-9][a-z0-9-]*$": "must be lowercase letters, digits and '-', starting with a letter "
    "or digit",
    r"^[a-z][a-z0-9_]*$": "must be lowercase letters, digits and '_', starting with a letter",
}


def _problems_from_validation(
    err: ValidationError, file: str, root: Any, prefix: str
) -> list[Problem]:
    problems: list[Problem] = []
    seen: set[tuple[str, str]] = set()
    errors = err.errors(include_url=False)
    for k, e in enumerate(errors):
        if len(problems) > MAX_PROBLEMS:  # the rest is only counted ("and K more")
            problems += [Problem(file, "", "")] * (len(errors) - k)
            break
        loc = tuple(e["loc"])
        etype = e["type"]
        if etype == "extra_forbidden":
            parent_path, parent_tp = _resolve(loc[:-1], root)
            key = loc[-1]
            allowed = _allowed_keys(parent_tp)
            msg = f"unknown key {_short(repr(key), 80)}"
            close = difflib.get_close_matches(str(key)[:100], allowed, n=1)
            if close:
                msg += f" (did you mean {close[0]!r}?)"
            if allowed:
                msg += f"; allowed keys: {', '.join(allowed)}"
            path = _format_path([*parent_path, key])
        else:
            clean, _ = _resolve(loc, root)
            path = _format_path(clean)
            if etype == "missing":
                msg = "required, but missing"
            elif etype == "string_pattern_mismatch":
                pattern = e.get("ctx", {}).get("pattern", "")
                rule = _PATTERN_RULES.get(pattern, f"must match {pattern}")
                msg = f"{rule} (got {_short(repr(e['input']), 80)})"
            elif etype in ("union_tag_invalid", "union_tag_not_found"):
                ctx = e.get("ctx", {})
                tag = ctx.get("discriminator", "kind").strip("'")
                expected = ctx.get("expected_tags", "")
                if etype == "union_tag_not_found":
                    msg = f"needs a {tag!r} key (one of: {expected})"
                else:
                    msg = f"unknown {tag} {ctx.get('tag')!r} (expected one of: {expected})"
            else:
                msg = e["msg"]
                if msg.startswith("Value error, "):
                    msg = msg[len("Value error, ") :]
                if (
                    "input" in e
                    and etype not in ("model_type", "dict_type")
                    and not isinstance(e["input"], (dict, list))
                ):
                    msg += f" (got {_short(repr(e['input']), 80)})"
        if prefix:
            path = prefix + (path if path.startswith("[") else "." + path if path else "")
        if (path, msg) not in seen:
            seen.add((path, msg))
            problems.append(Problem(file, path, msg))
    return problems


# --------------------------------------------------------------------------------------------
# YAML


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe loader that refuses a key given twice in one mapping, an unhashable key, an
    integer too long to be a number of this model, and nesting deeper than ``MAX_NESTING``
    (PyYAML composes nested nodes recursively: 1,000 levels of ``[`` overflow the stack)."""

    _depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        try:
            if self._depth > MAX_NESTING:
                raise yaml.composer.ComposerError(
                    None,
                    None,
                    f"mappings and lists nest more than {MAX_NESTING} levels deep",
                    self.peek_event().start_mark,
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict[Any, Any] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            hash(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"a mapping key must be a plain value, not a {type(key).__name__}",
                key_node.start_mark,
            ) from None
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"key {_short(repr(key), 80)} appears twice in one mapping",
                key_node.start_mark,
            )
        seen[key] = True
    return loader.construct_mapping(node, deep=deep)


def _construct_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int:
    if len(node.value) > MAX_INT_DIGITS:
        raise yaml.constructor.ConstructorError(
            None,
            None,
            f"an integer of {len(node.value)} digits; numbers here have at most "
            f"{MAX_INT_DIGITS} digits",
            node.start_mark,
        )
    return yaml.constructor.SafeConstructor.construct_yaml_int(loader, node)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_UniqueKeyLoader.add_constructor("tag:yaml.org,2002:int", _construct_int)
# YAML 1.1 (PyYAML) reads 1e6 and 1e-3 as text, which strict numbers would then refuse; read
# them as numbers, as YAML 1.2 does (quoted, '1e6' stays text).
_UniqueKeyLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def load_yaml(text: str, file: str) -> Any:
    """Parse YAML text with the scenario loader's limits; every failure is a ``ScenarioError``."""
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = exc.problem or exc.context or "malformed YAML"
        raise ScenarioError([Problem(file, where, f"YAML syntax error: {what}")]) from None
    except yaml.YAMLError as exc:
        raise ScenarioError([Problem(file, "", f"YAML syntax error: {_short(exc, 300)}")]) from None
    except (RecursionError, ValueError, TypeError, OverflowError) as exc:  # a last line of defence
        raise ScenarioError(
            [Problem(file, "", f"the YAML cannot be read: {_short(exc, 300)}")]
        ) from None


_load_yaml = load_yaml


def _surrogate_problems(data: Any, file: str, prefix: list[Any]) -> list[Problem]:
    """Text with a lone surrogate (``"\\ud800"``) is not Unicode: no file, page or CSV can hold
    it, so every run would fail when it writes the text out. Walk the data and name each."""
    out: list[Problem] = []

    def bad(text: str) -> bool:
        if text.isascii():
            return False
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False

    todo: list[tuple[Any, list[Any]]] = [(data, prefix)]
    visited: set[int] = set()  # YAML aliases share one object: walk it once (alias bombs)
    while todo and len(out) <= MAX_PROBLEMS:
        node, path = todo.pop()
        if isinstance(node, (dict, list, tuple)):
            if id(node) in visited:
                continue
            visited.add(id(node))
        if isinstance(node, str):
            if bad(node):
                out.append(
                    Problem(
                        file,
                        _format_path(path),
                        "contains a lone surrogate (an escape such as \\ud800 that is not a "
                        "character); it is not valid Unicode text",
                    )
                )
        elif isinstance(node, dict):
            for k, v in node.items():
                if isinstance(k, str) and bad(k):
                    out.append(
                        Problem(
                            file,
                            _format_path(path),
                            f"the key {_short(ascii(k), 60)} contains a lone surrogate; it is "
                            "not valid Unicode text",
                        )
                    )
                else:
                    todo.append((v, [*path, k]))
        elif isinstance(node, (list, tuple)):
            todo.extend((v, [*path, i]) for i, v in enumerate(node))
    return sorted(out, key=lambda p: p.path)


# --------------------------------------------------------------------------------------------
# References between parts


def message_names(scenario: Scenario) -> list[str]:
    """Every message name the scenario can produce, in either style."""
    names = ["start_saga", "saga_requested"]
    for s in scenario.steps:
        names += [s.action, f"{s.action}.ok", f"{s.action}.failed"]
        names += [f"{s.name}.succeeded", f"{s.name}.failed"]
        if s.compensation:
            names += [s.compensation, f"{s.compensation}.ok", f"{s.compensation}.failed"]
            names += [f"{s.name}.compensated"]
    return list(dict.fromkeys(names))


def _fault_problems(faults: Iterable[Any], sc: Scenario, file: str, prefix: str) -> list[Problem]:
    steps = [s.name for s in sc.steps]
    services = list(sc.services)
    nodes = services + list(RESERVED_NODES)
    messages = message_names(sc)
    out: list[Problem] = []

    def unknown(path: str, what: str, value: str, known: list[str]) -> None:
        close = difflib.get_close_matches(value[:100], known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        out.append(
            Problem(
                file,
                path,
                f"unknown {what} {_short(repr(value), 80)}{hint}; known: {', '.join(known)}",
            )
        )

    for i, f in enumerate(faults):
        base = f"{prefix}[{i}]"
        step = getattr(f, "step", None)
        if step is not None and step not in steps:
            unknown(f"{base}.step", "step", step, steps)
        if isinstance(f, FailCompensation) and step in steps:
            s = sc.steps[steps.index(step)]
            if not s.undoable:
                out.append(
                    Problem(file, f"{base}.step", f"step {step!r} has no compensation to fail")
                )
        if (
            isinstance(f, MessageFault)
            and f.compensation
            and step in steps
            and not sc.steps[steps.index(step)].undoable
        ):
            out.append(Problem(file, f"{base}.compensation", f"step {step!r} has no compensation"))
        if isinstance(f, Crash) and f.service not in services:
            unknown(f"{base}.service", "service", f.service, services)
        elif isinstance(f, Crash) and f.step in steps:
            owner = sc.steps[steps.index(f.step)].service
            if owner != f.service:
                out.append(
                    Problem(
                        file,
                        f"{base}.step",
                        f"step {f.step!r} runs on {owner!r}, not on {f.service!r}",
                    )
                )
        if isinstance(f, Partition):
            for j, node in enumerate(f.between):
                if node != "*" and node not in nodes:
                    unknown(f"{base}.between[{j}]", "node", node, [*nodes, "*"])
            if f.between[0] == f.between[1]:
                out.append(Problem(file, f"{base}.between", "the two sides must differ"))
        if isinstance(f, MessageFault):
            if f.message is not None and f.message not in messages:
                unknown(f"{base}.message", "message", f.message, messages)
            if f.link_pair is not None:
                for end in f.link_pair:
                    if end != "*" and end not in nodes:
                        unknown(f"{base}.link", "node", end, [*nodes, "*"])
    return out


def _after_problems(sc: Scenario, i: int, file: str) -> list[Problem]:
    """``after`` names earlier steps; the pivot and retriable steps join every branch."""
    s = sc.steps[i]
    out: list[Problem] = []
    if s.after is not None:
        earlier = [st.name for st in sc.steps[:i]]
        for j, name in enumerate(s.after):
            if name not in earlier:
                what = (
                    "itself"
                    if name == s.name
                    else ("a later step" if name in [st.name for st in sc.steps] else "no step")
                )
                hint = ""
                close = difflib.get_close_matches(name, earlier, n=1)
                if close and what == "no step":
                    hint = f" (did you mean {close[0]!r}?)"
                out.append(
                    Problem(
                        file,
                        f"steps[{i}].after[{j}]",
                        f"{name!r} is {what}{hint}: after names steps listed before this one",
                    )
                )
        if len(set(s.after)) != len(s.after):
            out.append(Problem(file, f"steps[{i}].after", "a step is named twice"))
    if out or s.kind == "compensatable":
        return out
    ancestors: set[int] = set()
    todo = list(sc.predecessors[i])
    while todo:
        k = todo.pop()
        if k not in ancestors:
            ancestors.add(k)
            todo += sc.predecessors[k]
    missing = [st.name for k, st in enumerate(sc.steps[:i]) if k not in ancestors]
    if missing:
        out.append(
            Problem(
                file,
                f"steps[{i}].after",
                f"a {s.kind} step must come after every "
                f"earlier step (it is the point of no return), but not after: "
                f"{', '.join(missing)}",
            )
        )
    return out


def _reference_problems(sc: Scenario, file: str) -> list[Problem]:
    out: list[Problem] = []
    services = list(sc.services)
    for name in services:
        if name in RESERVED_NODES:
            out.append(
                Problem(
                    file,
                    f"services.{name}",
                    f"{name!r} is reserved for the simulator's own node; choose another name",
                )
            )
    workers = sum(s.workers for s in sc.services.values())
    if workers > MAX_TOTAL_WORKERS:
        out.append(
            Problem(
                file,
                "services",
                f"the services have {workers} workers in all; a scenario may have at most "
                f"{MAX_TOTAL_WORKERS} (MAX_TOTAL_WORKERS: each worker is a simulated process)",
            )
        )
    seen: dict[str, int] = {}
    phase = 0  # 0: compensatable, 1: after the pivot
    order = {"compensatable": 0, "pivot": 1, "retriable": 2}
    last_kind = "compensatable"
    for i, s in enumerate(sc.steps):
        if s.service not in services:
            close = difflib.get_close_matches(s.service, services, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            out.append(
                Problem(
                    file,
                    f"steps[{i}].service",
                    f"unknown service {s.service!r}{hint}; known: {', '.join(services)}",
                )
            )
        if s.name in seen:
            out.append(
                Problem(
                    file,
                    f"steps[{i}].name",
                    f"duplicate step name {s.name!r} (also steps[{seen[s.name]}])",
                )
            )
        seen.setdefault(s.name, i)
        if order[s.kind] < order[last_kind] or (s.kind == "pivot" and phase == 1):
            out.append(
                Problem(
                    file,
                    f"steps[{i}].kind",
                    f"a {s.kind} step cannot come after a "
                    f"{last_kind} step: compensatable steps come first, then at most one "
                    "pivot, then retriable steps",
                )
            )
        if s.data is not None and s.service in sc.services:
            items = list(sc.services[s.service].data)
            if s.data.item not in items:
                close = difflib.get_close_matches(s.data.item, items, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                known = ", ".join(items) or "none: add services." + s.service + ".data"
                out.append(
                    Problem(
                        file,
                        f"steps[{i}].data.item",
                        f"service {s.service!r} has no "
                        f"item {s.data.item!r}{hint}; its items: {known}",
                    )
                )
        if s.kind in ("pivot", "retriable") and s.compensation is not None:
            out.append(
                Problem(
                    file,
                    f"steps[{i}].compensation",
                    f"a {s.kind} step is never "
                    "compensated; remove its compensation or make it compensatable",
                )
            )
        if s.kind == "pivot":
            phase = 1
        last_kind = s.kind if order[s.kind] >= order[last_kind] else last_kind
        out += _after_problems(sc, i, file)
    out += _fault_problems(sc.faults, sc, file, "faults")
    return out


# --------------------------------------------------------------------------------------------
# Public entry points


def parse_scenario(text: str, source: str = "<scenario>") -> Scenario:
    """Parse and validate a scenario from YAML text.

    Args:
        text: the YAML document.
        source: the name shown in error messages (a file name).

    Returns:
        The validated, frozen scenario.

    Raises:
        ScenarioError: every problem found, each with its field path.
    """
    if len(text) > MAX_FILE_BYTES or len(text.encode("utf-8", errors="replace")) > MAX_FILE_BYTES:
        raise ScenarioError(
            [
                Problem(
                    source,
                    "",
                    f"the scenario is larger than {MAX_FILE_BYTES} "
                    "bytes (1 MiB); scenario files are limited to that",
                )
            ]
        )
    data = _load_yaml(text, source)
    return scenario_from_dict(data, source)


def scenario_from_dict(data: Any, source: str = "<scenario>") -> Scenario:
    """Validate an already-parsed mapping (for example ``yaml.safe_load`` output) as a scenario."""
    if not isinstance(data, dict):
        kind = "empty" if data is None else f"a {type(data).__name__}"
        raise ScenarioError(
            [Problem(source, "", f"a scenario must be a YAML mapping, but the document is {kind}")]
        )
    problems = _surrogate_problems(data, source, [])
    if problems:
        raise ScenarioError(problems)
    try:
        sc = Scenario.model_validate(data)
    except ValidationError as err:
        raise ScenarioError(_problems_from_validation(err, source, Scenario, "")) from None
    except RecursionError:  # a mapping built in Python, nested beyond the stack
        raise ScenarioError(
            [Problem(source, "", f"nested more than {MAX_NESTING} levels deep")]
        ) from None
    problems = _reference_problems(sc, source)
    if problems:
        raise ScenarioError(problems)
    return sc


def load_scenario(path: str | os.PathLike[str]) -> Scenario:
    """Read and validate a scenario file (YAML, at most 1 MiB), or a bundled scenario by name.

    ``path`` is a file; a string that names no file but a bundled scenario
    (``"user_registration"``, see ``bundled_scenarios()``) loads that one, from any directory.

    Raises:
        ScenarioError: the file is missing, too large, not YAML, or not a valid scenario.
    """
    p = Path(path)
    name = str(path)
    if isinstance(path, str) and not p.exists() and (found := find_bundled(path)) is not None:
        return parse_scenario(found.read_text(encoding="utf-8"), name)
    try:
        # read at most the limit and one byte more, whatever stat says (/dev/zero has size 0)
        with p.open("rb") as fh:
            raw = fh.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        why = f"cannot read the file: {exc.strerror}"
        if isinstance(exc, FileNotFoundError) and not ({"/", "\\"} & set(name)):
            why = (
                "no such file, and no bundled scenario of that name "
                f"(bundled: {', '.join(bundled_scenarios())})"
            )
        raise ScenarioError([Problem(name, "", why)]) from None
    if len(raw) > MAX_FILE_BYTES:
        raise ScenarioError(
            [
                Problem(
                    name,
                    "",
                    f"the file is larger than {MAX_FILE_BYTES} bytes; scenario files are "
                    f"limited to {MAX_FILE_BYTES} bytes (1 MiB)",
                )
            ]
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ScenarioError(
            [Problem(name, "", f"the file is not UTF-8 text ({exc.reason} at byte {exc.start})")]
        ) from None
    return parse_scenario(text, name)


_FAULT_LIST = TypeAdapter(list[Fault])


def parse_faults(items: Any, scenario: Scenario, source: str = "faults") -> tuple[Any, ...]:
    """Validate faults given apart from a scenario, checking their references against it.

    Args:
        items: a list whose items are fault objects, mappings, or YAML flow-mapping strings
            (``'{kind: fail_step, step: create_user}'``); a single string holding a YAML list
            is accepted too.
        scenario: the scenario the faults refer to.
        source: the name used in error paths (``--fault``, ``faults``).

    Raises:
        ScenarioError: every problem found, with paths like ``--fault[0].step``.
    """
    if items is None:
        return ()
    if isinstance(items, str):
        parsed = _load_yaml(items, source)
        items = [] if parsed is None else parsed
        if isinstance(items, dict):
            items = [items]
    if not isinstance(items, (list, tuple)):
        raise ScenarioError([Problem(source, "", "faults must be a list of mappings")])
    raw: list[Any] = []
    problems: list[Problem] = []
    for i, item in enumerate(items):
        if isinstance(item, str):
            try:
                item = _load_yaml(item, f"{source}[{i}]")
            except ScenarioError as err:
                problems += err.problems
                continue
        if isinstance(item, BaseModel):
            item = item.model_dump(by_alias=True)
        problems += _surrogate_problems(item, source, [i])
        raw.append(item)
    if problems:
        raise ScenarioError(problems)
    try:
        faults = _FAULT_LIST.validate_python(raw)
    except ValidationError as err:
        raise ScenarioError(_problems_from_validation(err, source, list[Fault], "")) from None
    problems = _fault_problems(faults, scenario, source, "")
    if problems:
        raise ScenarioError(problems)
    return tuple(faults)
