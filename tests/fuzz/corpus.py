"""The fuzz corpus of issue 11: scenario files and share links, by class, generated (seeded).

``scenario_inputs()`` gives (id, bytes) for scenario files: every class the fuzzing run of issue
11 found (unhashable keys, huge integers, deep nesting, bad templates, lognormal parameters,
lone surrogates, lax types, thousands of problems, worker bombs), the classes that already
passed (binary files, alias bombs, empty files, duplicate and unknown keys, wrong types, NaN,
10^12 sagas, the 1 MiB limit, ...) and seeded mutations of the bundled scenarios.
``link_inputs()`` gives (id, query parameters) for ``decode_config`` and the app.

Run ``python -m tests.fuzz.corpus DIR`` to write the scenario inputs to files (to replay them by
hand through ``python -m saga_sim validate``).
"""

from __future__ import annotations

import base64
import random
import sys
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

BASE = """\
name: fuzz
services: {a: {}, b: {}}
steps:
  - {name: s1, service: a, action: do, compensation: undo}
  - {name: s2, service: b, action: go, kind: pivot}
"""


def _with_step_field(field: str) -> bytes:
    return BASE.replace("undo}", f"undo, {field}}}", 1).encode()


def _extra(text: str) -> bytes:
    return (BASE + text + "\n").encode()


def _bomb(services: str) -> bytes:
    step = "{name: x, service: s0, action: do}"
    return f"name: bomb\nservices: {{{services}}}\nsteps:\n  - {step}\n".encode()


def scenario_inputs() -> list[tuple[str, bytes]]:
    """Every scenario input of the corpus, (class/id, file bytes), in a fixed order."""
    out: list[tuple[str, bytes]] = []
    add = out.append
    # --- classes the fuzzer found (issue 11) -----------------------------------------------
    for i, key in enumerate(["[1, 2]", "{a: 1}", "[[]]", "? [x]\n  : 1"]):
        text = f"x: {{{key}: 3}}" if "?" not in key else f"x:\n  {key}"
        add((f"unhashable-key-{i}", _extra(text)))
    add(("unhashable-key-top", b"[1]: 2\n"))
    for n in (4301, 5000, 20_000):
        add((f"big-int-horizon-{n}", _extra("horizon: " + "9" * n)))
        add((f"big-int-seed-key-{n}", _extra("workload: {sagas: " + "1" * n + "}")))
    add(("big-int-key", _extra("x: {" + "7" * 5000 + ": 1}")))
    add(("big-int-negative", _extra("horizon: -" + "9" * 5000)))
    for depth in (100, 1000, 5000):
        add((f"deep-flow-list-{depth}", _extra("x: " + "[" * depth + "]" * depth)))
        add((f"deep-flow-map-{depth}", _extra("x: " + "{a: " * depth + "1" + "}" * depth)))
    add(("deep-flow-unclosed", _extra("x: " + "[" * 3000)))
    add(
        (
            "deep-block",
            _extra("".join("  " * i + f"k{i}:\n" for i in range(300)) + "  " * 300 + "v: 1"),
        )
    )
    add(("deep-block-list", _extra("x:\n" + "".join("  " * i + "- \n" for i in range(1, 300)))))
    templates = [
        "{saga.x}", "{saga[0]}", "{saga.__class__}", "{user}", "{0}", "{}", "usr-{saga", "usr-}",
        "{saga:>4000000}", "{saga:.100000f}", "{saga:q}", "{saga:s}", "{saga:{saga}}", "{saga!x}",
        "{saga:c}", "{saga:n}", "{saga:,>99999}", "{saga!r:>99999}", "{saga:" + "9" * 5000 + "}",
    ]  # fmt: skip
    for i, t in enumerate(templates):
        add((f"template-{i}", _with_step_field(f'writes: {{k: "{t}"}}')))
    add(("template-too-long", _with_step_field('writes: {k: "' + "x" * 5000 + '"}')))
    add(
        (
            "template-many-keys",
            _with_step_field("writes: {" + ", ".join(f"k{i}: v" for i in range(200)) + "}"),
        )
    )
    for i, d in enumerate(
        [
            "{dist: lognormal, mean: 1, sd: 1e-200}",
            "{dist: lognormal, mean: 1.0e-300, sd: 1.0e6}",
            "{dist: lognormal, mean: 5e-324, sd: 1}",
            "{dist: lognormal, mean: 1e-200, sd: 1e-10}",
        ]
    ):
        add((f"lognormal-{i}", _with_step_field(f"duration: {d}")))
    for i, (where, text) in enumerate(
        [
            ("title", 'title: "x \\ud800"'),
            ("description", 'description: "\\udfff"'),
            ("key", 'services: {a: {data: {"\\ud800": 1}}}'),
            ("writes", None),
        ]
    ):
        if text is None:
            add((f"surrogate-{where}", _with_step_field('writes: {k: "\\ud83d"}')))
        elif where == "key":
            add((f"surrogate-{where}", BASE.replace("{a: {}, b: {}}", text[10:], 1).encode()))
        else:
            add((f"surrogate-{where}-{i}", _extra(text)))
    add(("surrogate-fault", _extra('faults: [{kind: fail_step, step: "s\\ud800"}]')))
    add(("dev-zero-like", b"\0" * (1024 * 1024 + 10)))
    for i, text in enumerate(
        [
            "horizon: true", "horizon: '12'", "policy: {retries: '3'}", "policy: {retries: 3.0}",
            "policy: {idempotent: 1}", "policy: {idempotent: 'yes'}", "network: {loss: false}",
            "workload: {sagas: true}", "workload: {sagas: '5'}", "policy: {timeout: '0.5'}",
            "faults: [{kind: fail_step, step: s1, attempt: '2'}]",
            "faults: [{kind: crash, service: a, at: true, for: 1}]",
        ]
    ):  # fmt: skip
        add((f"lax-type-{i}", _extra(text)))
    add(("unknown-keys-10000", _extra("".join(f"k{i}: 1\n" for i in range(10_000)))))
    add(("unknown-key-long", _extra("x" * 100_000 + ": 1")))
    add(("bad-name-long", _extra("name: " + "X" * 100_000)))
    add(
        (
            "service-name-long",
            _with_step_field("").replace(b"service: a", b"service: " + b"q" * 100_000),
        )
    )
    services = ", ".join(f"s{i}: {{workers: 1000}}" for i in range(400))
    add(
        (
            "worker-bomb-400",
            _bomb(services),
        )
    )
    services = ", ".join(f"s{i}: {{workers: 1000}}" for i in range(50))
    add(
        (
            "worker-bomb-50",
            _bomb(services),
        )
    )
    # --- classes that already passed --------------------------------------------------------
    rng = random.Random(11)
    add(("binary", bytes(rng.randrange(256) for _ in range(4096))))
    add(("binary-png", b"\x89PNG\r\n\x1a\n" + bytes(rng.randrange(256) for _ in range(512))))
    add(("not-utf8", "title: café\n".encode("latin-1")))
    lol = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
        for p, c in zip("abcdefgh", "bcdefghi")
    )
    add(("alias-bomb", (BASE + lol).encode()))
    add(("alias-bomb-in-field", (BASE + lol + "title: *i\n").encode()))
    add(("empty", b""))
    add(("only-comment", b"# nothing\n"))
    add(("list-document", b"- 1\n- 2\n"))
    add(("scalar-document", b"hello\n"))
    add(("duplicate-key", _extra("name: again")))
    add(("unknown-key", _extra("colour: blue")))
    add(("wrong-type-steps", b"name: x\nservices: {a: {}}\nsteps: 3\n"))
    add(("nan", _extra("horizon: .nan")))
    add(("inf", _extra("horizon: .inf")))
    add(("negative-inf-timeout", _extra("policy: {timeout: -.inf}")))
    add(("sagas-1e12", _extra("workload: {sagas: 1000000000000}")))
    add(("too-large", _extra("description: " + "y" * (1024 * 1024))))
    add(("tab-indent", b"name: x\nservices:\n\ta: {}\n"))
    add(("unknown-fault-kind", _extra("faults: [{kind: explode}]")))
    add(("unknown-step-fault", _extra("faults: [{kind: fail_step, step: nope}]")))
    add(("unknown-service", _with_step_field("").replace(b"service: a", b"service: zz")))
    add(("yaml-tags", _extra("title: !!python/object:os.system ls")))
    add(("yaml-binary", _extra("title: !!binary aGVsbG8=")))
    add(("yaml-timestamp", _extra("title: 2001-12-14")))
    add(("bom", b"\xef\xbb\xbf" + BASE.encode()))
    add(("crlf", BASE.replace("\n", "\r\n").encode()))
    add(("control-chars", _extra("title: \x07\x08")))
    add(("merge-key", _extra("x: &x {a: 1}\ny:\n  <<: *x")))
    add(
        (
            "many-steps",
            _extra("")
            + "".join(
                f"  - {{name: t{i}, service: a, action: a{i}}}\n" for i in range(150)
            ).encode(),
        )
    )
    add(
        (
            "many-faults",
            _extra(
                "faults: [" + ", ".join("{kind: fail_step, step: s1}" for _ in range(1500)) + "]"
            ),
        )
    )
    # --- seeded mutations of the bundled scenarios -------------------------------------------
    bundled = sorted((ROOT / "scenarios").glob("*.yaml"))
    tokens = ["[", "]", "{", "}", ":", "-", "&a", "*a", "!!str", "'", '"', "\\", "null", "1e9",
              "-1", "true", "9" * 50, "\t", "#", "?", "|", ">", "%", "@", "\\ud800"]  # fmt: skip
    for k in range(60):
        src = bundled[k % len(bundled)]
        lines = src.read_text(encoding="utf-8").splitlines()
        for _ in range(rng.randint(1, 4)):
            op = rng.randrange(4)
            j = rng.randrange(len(lines))
            if op == 0:
                del lines[j]
            elif op == 1:
                lines.insert(j, lines[rng.randrange(len(lines))])
            elif op == 2:
                pos = rng.randrange(len(lines[j]) + 1)
                lines[j] = lines[j][:pos] + rng.choice(tokens) + lines[j][pos:]
            else:
                lines[j] = lines[j][: rng.randrange(len(lines[j]) + 1)]
        add((f"mutant-{k}-{src.stem}", ("\n".join(lines) + "\n").encode()))
    return out


SPIN = """\
name: spin
services: {a: {data: {x: 0}}}
steps:
  - {name: s, service: a, action: take, kind: retriable, duration: 0, data: {item: x, change: -1}}
network: {latency: 0}
policy: {retry_delay: 0, backoff: 1}
"""
"""A valid scenario that loops at t=0 forever without the guard (issue 11)."""


def _pack(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def link_inputs() -> list[tuple[str, dict[str, list[str]]]]:
    """Query parameters of share links, (class/id, params), in a fixed order."""
    out: list[tuple[str, dict[str, list[str]]]] = []
    add = out.append
    add(("fault-deep-list", {"fault": ["[" * 5000]}))
    add(("fault-deep-map", {"fault": ["{a: " * 3000]}))
    add(
        ("fault-big-int", {"fault": ["{kind: drop, step: create_user, count: " + "9" * 5000 + "}"]})
    )
    add(("fault-unhashable", {"fault": ["{[1]: 2}"]}))
    add(("fault-surrogate", {"fault": ['{kind: fail_step, step: "\\ud800"}']}))
    add(
        (
            "fault-alias-bomb",
            {"fault": ["{a: &a [x, x, x, x], b: &b [*a, *a, *a, *a], kind: drop}"]},
        )
    )
    add(("faults-100000", {"fault": ["{kind: fail_step, step: create_user}"] * 100_000}))
    add(("fault-10MB", {"fault": ["{kind: fail_step, step: " + "x" * 10_000_000 + "}"]}))
    add(("fault-not-mapping", {"fault": ["[1, 2]"]}))
    add(("fault-no-kind", {"fault": ["{step: create_user}"]}))
    add(("fault-unknown-step", {"fault": ["{kind: fail_step, step: nope}"]}))
    add(("fault-lax-type", {"fault": ["{kind: fail_step, step: create_user, attempt: '2'}"]}))
    for key in ("seed", "sagas", "latency_ms", "loss", "timeout", "retries", "saga"):
        add((f"{key}-5000-digits", {key: ["9" * 5000]}))
    for key, raw in [
        ("seed", "3000000000"), ("seed", "-3"), ("loss", "0.9"), ("duplicate", "0.7"),
        ("latency_ms", "50000"), ("latency_ms", "1e12"), ("timeout", "1000"), ("timeout", "0"),
        ("retries", "1000"), ("max_redeliveries", "5000"), ("compensation_retries", "-1"),
        ("redelivery", "1e9"), ("sagas", "5000"), ("saga", "0"),
    ]:  # fmt: skip
        add((f"range-{key}-{raw}", {key: [raw]}))
    for key, raw in [("loss", "nan"), ("timeout", "inf"), ("seed", "1.5"), ("retries", "x"),
                     ("idempotent", "maybe"), ("compensation_order", "random"),
                     ("redelivery", "soon"), ("scenario", "nope")]:  # fmt: skip
        add((f"bad-{key}-{raw}", {key: [raw]}))
    add(("yaml-zlib-bomb", {"yaml": [_pack(zlib.compress(b"a: " + b" " * 150_000_000, 9))]}))
    add(("yaml-too-long", {"yaml": ["A" * 300_000]}))
    add(("yaml-garbage", {"yaml": ["!!!not-base64!!!"]}))
    add(("yaml-not-zlib", {"yaml": [_pack(b"plain text")]}))
    add(("yaml-truncated", {"yaml": [_pack(zlib.compress(BASE.encode() * 20))[:40]]}))
    add(("yaml-latin1", {"yaml": [_pack(zlib.compress("title: café".encode("latin-1")))]}))
    add(("yaml-deep", {"yaml": [_pack(zlib.compress(("x: " + "[" * 5000).encode()))]}))
    add(
        ("yaml-surrogate", {"yaml": [_pack(zlib.compress((BASE + 'title: "\\ud800"\n').encode()))]})
    )
    add(("yaml-spin", {"yaml": [_pack(zlib.compress(SPIN.encode()))]}))
    add(("unknown-params", {f"p{i}": ["v"] for i in range(5000)}))
    add(("empty-values", {"seed": [""], "fault": [""], "loss": [""]}))
    return out


def main(argv: list[str]) -> int:
    """Write the scenario inputs as files into the directory ``argv[0]``."""
    out = Path(argv[0] if argv else "fuzz-corpus")
    out.mkdir(parents=True, exist_ok=True)
    for name, data in scenario_inputs():
        (out / f"{name}.yaml").write_bytes(data)
    print(f"wrote {len(scenario_inputs())} files to {out}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
