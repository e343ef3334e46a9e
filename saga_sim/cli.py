"""The command line: ``python -m saga_sim validate|run|schema ...`` (and experiment verbs).

Bad input (a file that does not parse, a schema error, an unknown step in a fault) exits with
status 2 and one clear message naming the file, the field path and the problem; no traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from .cli_types import nonneg_int
from .run import compare, simulate
from .scenario import Problem, Scenario, ScenarioError, load_scenario, parse_faults
from .styles import STYLES

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse's own usage errors: status 2, one line
        self.exit(2, f"{self.prog}: error: {message}\n")


def _print_problems(err: ScenarioError) -> None:
    n = len(err.problems)
    print(f"error: {n} problem{'s' if n != 1 else ''} found:", file=sys.stderr)
    for p in err.problems:
        print(f"  {p}", file=sys.stderr)


def _fmt_s(x: float) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x * 1000:.1f} ms"


def _cmd_validate(args: argparse.Namespace) -> int:
    sc = load_scenario(args.file)
    kinds = ", ".join(f"{s.name} ({s.kind})" for s in sc.steps)
    print(f"{args.file}: valid scenario {sc.name!r}")
    print(f"  services: {', '.join(sc.services)}")
    print(f"  steps:    {kinds}")
    print(f"  faults:   {len(sc.faults)}; sagas: {sc.workload.sagas}")
    return 0


def _cmd_schema(args: argparse.Namespace) -> int:
    schema = Scenario.model_json_schema(by_alias=True)
    schema["title"] = "saga-sim scenario"
    print(json.dumps(schema, indent=2))
    return 0


def _table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def _cmd_run(args: argparse.Namespace) -> int:
    sc = load_scenario(args.file)
    faults = parse_faults(args.fault, sc, source="--fault") if args.fault else ()
    styles = list(STYLES) if args.style == "both" else [args.style]
    if len(styles) == 2:
        cmp = compare(sc, faults, seed=args.seed, sagas=args.sagas, horizon=args.horizon)
        runs = cmp.runs
        sentence = cmp.sentence()
    else:
        runs = {styles[0]: simulate(sc, styles[0], faults, args.seed, args.sagas, args.horizon)}
        sentence = None
    payload: dict[str, Any] = {
        "scenario": sc.name,
        "seed": args.seed,
        "sagas": next(iter(runs.values())).n_sagas,
        "faults": [f.model_dump(mode="json", by_alias=True) for f in sc.faults + list(faults)],
        "styles": {style: run.summary() for style, run in runs.items()},
    }
    if sentence is not None:
        payload["divergence"] = sentence
    if args.out:
        _write_out(Path(args.out), runs, payload)
    if args.json:
        print(json.dumps(payload, indent=2))
        return 0
    print(f"{sc.title or sc.name}  (seed {args.seed}, {payload['sagas']} saga(s))")
    for f in payload["faults"]:
        print(f"  fault: {json.dumps(f)}")
    header = ("", *runs.keys())
    summaries = [r.summary() for r in runs.values()]
    rows = [header]
    for o in ("completed", "compensated", "inconsistent", "stalled"):
        rows.append((o, *(str(s["outcomes"][o]) for s in summaries)))
    rows.append(("messages", *(str(s["messages"]) for s in summaries)))
    rows.append(("latency p50", *(_fmt_s(s["latency"]["p50"] or math.nan) for s in summaries)))
    rows.append(("latency p95", *(_fmt_s(s["latency"]["p95"] or math.nan) for s in summaries)))
    for k in ("compensations", "retries", "timeouts"):
        rows.append((k, *(str(s[k]) for s in summaries)))
    rows.append(("violations", *(str(len(s["violations"])) for s in summaries)))
    print()
    print(_table(rows))
    for style, s in zip(runs, summaries):
        for v in s["violations"][:10]:
            print(f"  {style}: saga {v['saga']}: {v['invariant']}: {v['message']}")
        if len(s["violations"]) > 10:
            print(f"  {style}: ... and {len(s['violations']) - 10} more violations")
        for note in s["notes"]:
            print(f"  {style}: note: {note}")
    if sentence:
        print()
        print(sentence)
    if args.out:
        print(f"\nwrote {args.out}/events.csv, sagas.csv, run.json")
    return 0


def _write_out(out: Path, runs: dict[str, Any], payload: dict[str, Any]) -> None:
    """Write the frames and the summary into the directory ``out`` (made if missing)."""
    if out.exists() and not out.is_dir():
        raise ScenarioError([Problem("--out", "", f"{out} exists and is not a directory")])
    try:
        out.mkdir(parents=True, exist_ok=True)
        import pandas as pd

        pd.concat([r.events for r in runs.values()]).to_csv(out / "events.csv")
        pd.concat([r.sagas for r in runs.values()]).to_csv(out / "sagas.csv", index=False)
        (out / "run.json").write_text(json.dumps(payload, indent=2) + "\n")
    except OSError as exc:
        where = exc.filename or out
        raise ScenarioError(
            [Problem("--out", "", f"cannot write {where}: {exc.strerror or exc}")]
        ) from None


def _seconds(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not v > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return v


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and for ``--help``)."""
    p = _Parser(
        prog="python -m saga_sim",
        description="Simulate sagas: orchestration vs choreography under the same faults.",
    )
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    v = sub.add_parser("validate", help="check a scenario file and list every problem")
    v.add_argument("file")
    v.set_defaults(func=_cmd_validate)
    r = sub.add_parser("run", help="simulate a scenario in one or both styles")
    r.add_argument("file")
    r.add_argument("--style", choices=[*STYLES, "both"], default="both")
    r.add_argument("--seed", type=nonneg_int, default=0)
    r.add_argument("--sagas", type=nonneg_int, default=None, help="override workload.sagas")
    r.add_argument("--horizon", type=_seconds, default=None, help="simulated seconds to run")
    r.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="YAML",
        help="a fault as a YAML flow mapping, e.g. '{kind: fail_step, step: x}'; repeatable",
    )
    r.add_argument("--json", action="store_true", help="print one JSON object")
    r.add_argument("--out", metavar="DIR", help="write events.csv, sagas.csv and run.json")
    r.set_defaults(func=_cmd_run)
    s = sub.add_parser("schema", help="print the scenario file's JSON Schema (for editors)")
    s.set_defaults(func=_cmd_schema)
    try:
        from . import cli_experiments
    except ImportError:  # pragma: no cover - experiments not installed in this build
        pass
    else:
        cli_experiments.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ScenarioError as err:
        _print_problems(err)
        return 2
    except BrokenPipeError:  # pragma: no cover - e.g. piped into head
        return 0
    except KeyboardInterrupt:  # pragma: no cover
        print("interrupted", file=sys.stderr)
        return 130
