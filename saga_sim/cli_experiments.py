"""The experiments' CLI verbs: ``matrix``, ``sweep``, ``montecarlo`` and ``shrink``.

``register(subparsers)`` adds them to the main parser (``saga_sim/cli.py``); each parsed
namespace carries ``func(args) -> int``, the exit status. Bad input (a file, a parameter path, a
rate, a scheduler that cannot be reached) prints one clear message to stderr and returns 2; no
traceback. ``python -m saga_sim.cli_experiments VERB ...`` runs them on their own.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
from collections.abc import Iterator, Sequence
from typing import Any

import yaml

from .checks import INVARIANTS, OUTCOMES
from .cli_types import nonneg_int as _nonneg_int
from .scenario import Problem, ScenarioError, load_scenario

__all__ = ["main", "register"]


def _pos_int(text: str) -> int:
    v = _nonneg_int(text)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {v}")
    return v


def _styles(value: str) -> tuple[str, ...]:
    return ("orchestration", "choreography") if value == "both" else (value,)


def _common(p: argparse.ArgumentParser, scheduler: bool = True) -> None:
    p.add_argument("file", help="scenario YAML file")
    p.add_argument("--seed", type=_nonneg_int, default=0, help="base seed (default 0)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    if scheduler:
        p.add_argument(
            "--scheduler",
            metavar="ADDRESS",
            help="run on a Dask cluster (tcp://host:8786) instead of local processes",
        )
        p.add_argument(
            "--workers", type=_pos_int, help="local worker processes (default: one per CPU)"
        )


def register(subparsers: Any) -> None:
    """Add the ``matrix``, ``sweep``, ``montecarlo`` and ``shrink`` verbs to ``subparsers``
    (the object ``ArgumentParser.add_subparsers()`` returns)."""
    p = subparsers.add_parser(
        "matrix",
        help="every single fault at every point of the saga, in both styles",
        description="Simulate every single fault at every point of the saga (business failure, "
        "crashes before and after commit, lost, duplicated and delayed messages, compensation "
        "failures, coordinator crashes) in each style, and print the outcome of each.",
    )
    _common(p)
    p.add_argument("--style", choices=["orchestration", "choreography", "both"], default="both")
    p.add_argument("--sagas", type=_pos_int, default=1, help="sagas per run (default 1)")
    p.set_defaults(func=cmd_matrix)

    p = subparsers.add_parser(
        "sweep",
        help="a grid over one scenario parameter, replicated, both styles",
        description="Run the scenario at each value of one parameter (a dotted path such as "
        "network.loss, policy.timeout or steps[2].duration.mean), several replications each.",
    )
    _common(p)
    p.add_argument("--param", required=True, help="dotted parameter path")
    p.add_argument(
        "--values",
        required=True,
        nargs="+",
        help="values (YAML scalars), comma lists (0,0.1,0.2) or ranges start:stop:step",
    )
    p.add_argument("--replications", type=_pos_int, default=10, help="runs per value and style")
    p.add_argument("--sagas", type=_pos_int, help="sagas per run (default: the workload's)")
    p.add_argument("--style", choices=["orchestration", "choreography", "both"], default="both")
    p.add_argument(
        "--metric", default="completed", help="metric of the text table (default: completed)"
    )
    p.set_defaults(func=cmd_sweep)

    p = subparsers.add_parser(
        "montecarlo",
        help="many sagas under random faults drawn from rates, both styles",
        description="Simulate N sagas per style under random faults (business failures, "
        "crashes, message loss and duplication) drawn from rates, with common random numbers "
        "across the styles; print outcome shares with 95%% Wilson intervals.",
    )
    _common(p)
    p.add_argument("-n", "--sagas", dest="n", type=_pos_int, default=10_000, help="sagas per style")
    p.add_argument(
        "--rate",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a fault rate: step_failure, compensation_failure, crash, coordinator_crash, "
        "crash_duration, loss, duplication (repeatable)",
    )
    p.add_argument("--chunk", type=_pos_int, default=1000, help="sagas per batch (default 1000)")
    p.add_argument("--style", choices=["orchestration", "choreography", "both"], default="both")
    p.set_defaults(func=cmd_montecarlo)

    p = subparsers.add_parser(
        "shrink",
        help="find a fault plan that breaks an invariant and shrink it to a minimal one",
        description="Search random fault plans for one that breaks an invariant (or reaches an "
        "outcome), shrink it until removing any one fault makes the run pass, and print it as "
        "YAML ready to replay.",
    )
    _common(p)
    p.add_argument("--style", choices=["orchestration", "choreography"], default="orchestration")
    p.add_argument("--tries", type=_pos_int, default=500, help="random plans to try (default 500)")
    p.add_argument("--max-faults", type=_pos_int, default=4, help="largest plan (default 4)")
    p.add_argument("--invariant", choices=list(INVARIANTS), help="break this invariant")
    p.add_argument("--outcome", choices=list(OUTCOMES), help="or reach this outcome")
    p.add_argument("--sagas", type=_pos_int, help="sagas per run (default: the workload's)")
    p.add_argument(
        "--scenario",
        action="store_true",
        help="print the whole scenario with the plan in its faults: (default: the plan)",
    )
    p.set_defaults(func=cmd_shrink)


# --------------------------------------------------------------------------------------------
# Helpers


def _fail(err: ScenarioError | str) -> int:
    if isinstance(err, ScenarioError):
        lines = [str(p) for p in err.problems]
        msg = lines[0] if len(lines) == 1 else "\n  ".join([f"{len(lines)} problems:", *lines])
    else:
        msg = err
    print(f"error: {msg}", file=sys.stderr)
    return 2


@contextlib.contextmanager
def _executor(args: argparse.Namespace) -> Iterator[Any]:
    """A Dask client's executor for ``--scheduler``, else ``"auto"`` (or a pool of
    ``--workers``)."""
    address = getattr(args, "scheduler", None)
    if not address:
        yield "process" if getattr(args, "workers", None) else "auto"
        return
    try:
        from distributed import Client
    except ImportError:  # pragma: no cover - dask is a dev requirement
        raise ScenarioError(
            [
                Problem(
                    "--scheduler", "", "dask.distributed is not installed: pip install distributed"
                )
            ]
        ) from None
    try:
        client = Client(address, timeout="10s")
    except (OSError, TimeoutError, ValueError) as exc:
        raise ScenarioError(
            [Problem("--scheduler", "", f"cannot reach a Dask scheduler at {address!r}: {exc}")]
        ) from None
    try:
        yield client.get_executor()
    finally:
        client.close()


@contextlib.contextmanager
def _progress(total: int, unit: str, enabled: bool) -> Iterator[Any]:
    """A tqdm bar on stderr (only on a terminal) as a ``progress(done, total)`` callback."""
    if not enabled:
        yield None
        return
    from tqdm import tqdm

    bar = tqdm(total=total, unit=unit, file=sys.stderr, disable=None, leave=False)

    def update(done: int, _total: int) -> None:
        bar.update(done - bar.n)

    try:
        yield update
    finally:
        bar.close()


def _num(x: Any) -> Any:
    if isinstance(x, float):
        return None if math.isnan(x) else round(x, 6)
    return x


def _parse_values(items: Sequence[str]) -> list[Any]:
    out: list[Any] = []
    for item in items:
        parts = item.split(",") if "," in item and not item.lstrip().startswith("{") else [item]
        for part in parts:
            part = part.strip()
            if not part:
                continue
            if part.count(":") == 2 and not part.lstrip().startswith("{"):
                try:
                    a, b, step = (float(x) for x in part.split(":"))
                except ValueError:
                    raise ScenarioError(
                        [Problem("--values", part, "a range must be start:stop:step numbers")]
                    ) from None
                if step <= 0 or b < a or (b - a) / step > 10_000:
                    raise ScenarioError(
                        [
                            Problem(
                                "--values",
                                part,
                                "a range needs step > 0, stop >= start, and at most 10000 values",
                            )
                        ]
                    )
                k = 0
                while a + k * step <= b + step * 1e-9:
                    out.append(round(a + k * step, 12))
                    k += 1
                continue
            try:
                out.append(yaml.safe_load(part))
            except yaml.YAMLError:
                raise ScenarioError([Problem("--values", part, "not a YAML value")]) from None
    if not out:
        raise ScenarioError([Problem("--values", "", "give at least one value")])
    return out


def _parse_rates(items: Sequence[str]) -> dict[str, Any]:
    rates: dict[str, Any] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ScenarioError([Problem("--rate", item, "expected NAME=VALUE, e.g. loss=0.01")])
        try:
            rates[name.strip()] = yaml.safe_load(value)
        except yaml.YAMLError:
            raise ScenarioError([Problem("--rate", item, "the value is not a number")]) from None
    return rates


# --------------------------------------------------------------------------------------------
# Verbs


def cmd_matrix(args: argparse.Namespace) -> int:
    """``matrix FILE``: the fault matrix, as a table or ``--json``."""
    from .experiments import count_fault_points, fault_matrix
    from .experiments.matrix import matrix_json

    try:
        sc = load_scenario(args.file)
        styles = _styles(args.style)
        total = count_fault_points(sc) * len(styles)
        with _executor(args) as ex, _progress(total, "run", not args.json) as progress:
            if ex == "auto":
                ex = "serial"
            df = fault_matrix(
                sc, seed=args.seed, styles=styles, executor=ex, sagas=args.sagas, progress=progress
            )
    except ScenarioError as err:
        return _fail(err)
    if args.json:
        out = {"scenario": sc.name, "seed": args.seed, "sagas": args.sagas, **matrix_json(df)}
        print(json.dumps(out, indent=2))
        return 0
    cell = df.assign(
        cell=[
            o + (f" ({', '.join(sorted(set(v)))})" if v else "")
            for o, v in zip(df["outcome"], df["violations"])
        ]
    )
    table = cell.pivot(index="point", columns="style", values="cell")
    table = table.reindex(index=list(dict.fromkeys(df["point"])), columns=list(styles))
    print(f"fault matrix: {sc.name}, seed {args.seed}, {len(table)} points x {len(styles)} styles")
    print(table.to_string())
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    """``sweep FILE --param P --values ...``: a tidy frame as ``--json``, or a table of one
    metric per value and style."""
    from .experiments import SWEEP_METRICS, summarize_sweep, sweep

    try:
        sc = load_scenario(args.file)
        values = _parse_values(args.values)
        if args.metric not in SWEEP_METRICS:
            raise ScenarioError(
                [
                    Problem(
                        "--metric",
                        "",
                        f"unknown metric {args.metric!r}; known: {', '.join(SWEEP_METRICS)}",
                    )
                ]
            )
        styles = _styles(args.style)
        total = len(values) * args.replications * len(styles)
        with _executor(args) as ex, _progress(total, "run", not args.json) as progress:
            df = sweep(
                sc,
                args.param,
                values,
                replications=args.replications,
                seed=args.seed,
                executor=ex,
                progress=progress,
                styles=styles,
                sagas=args.sagas,
                workers=args.workers,
            )
    except ScenarioError as err:
        return _fail(err)
    if args.json:
        rows = [{k: _num(v) for k, v in r.items()} for r in df.to_dict(orient="records")]
        out = {
            "scenario": sc.name,
            "param": args.param,
            "seed": args.seed,
            "replications": args.replications,
            "rows": rows,
        }
        print(json.dumps(out, indent=2))
        return 0
    s = summarize_sweep(df, args.metric)
    s["cell"] = [
        f"{m:.4g} [{lo:.4g}, {hi:.4g}]" for m, lo, hi in zip(s["mean"], s["low"], s["high"])
    ]
    table = s.pivot(index="value", columns="style", values="cell")
    table = table.reindex(columns=list(styles))
    print(
        f"sweep: {sc.name}, {args.param}, {args.replications} replications, seed {args.seed}; "
        f"{args.metric} ({SWEEP_METRICS[args.metric]}): mean [95% band]"
    )
    print(table.to_string())
    return 0


def cmd_montecarlo(args: argparse.Namespace) -> int:
    """``montecarlo FILE``: outcome shares with Wilson intervals, latency, messages."""
    from .experiments import monte_carlo

    try:
        sc = load_scenario(args.file)
        rates = _parse_rates(args.rate)
        styles = _styles(args.style)
        with _executor(args) as ex, _progress(args.n, "saga", not args.json) as progress:
            mc = monte_carlo(
                sc,
                args.n,
                rates=rates,
                seed=args.seed,
                executor=ex,
                progress=progress,
                styles=styles,
                chunk=args.chunk,
                workers=args.workers,
            )
    except ScenarioError as err:
        return _fail(err)
    if args.json:
        print(json.dumps(mc.summary(), indent=2))
        return 0
    print(f"monte carlo: {sc.name}, {args.n} sagas per style, seed {args.seed}")
    print("rates: " + ", ".join(f"{k}={v}" for k, v in mc.rates.model_dump().items()))
    oc = mc.outcomes
    oc = oc.assign(
        cell=[
            f"{s:7.2%} [{lo:.2%}, {hi:.2%}]"
            for s, lo, hi in zip(oc["share"], oc["ci_low"], oc["ci_high"])
        ]
    )
    print("\noutcomes (share [95% Wilson interval]):")
    print(
        oc.pivot(index="outcome", columns="style", values="cell")
        .reindex(index=list(OUTCOMES), columns=list(styles))
        .to_string()
    )
    print("\nlatency of finished sagas, s:")
    print(mc.latency.set_index("style").round(4).to_string())
    print("\nper saga:")
    ps = mc.per_saga.set_index("style")[
        ["messages", "compensations", "retries", "timeouts", "violation_share"]
    ]
    print(ps.round(4).to_string())
    if mc.paired is not None:
        print("\npaired outcomes (same saga, same draws):")
        print(mc.paired.to_string())
    return 0


def cmd_shrink(args: argparse.Namespace) -> int:
    """``shrink FILE``: a minimal fault plan that breaks the run, as YAML (exit 1: none
    found)."""
    from .experiments import find_and_shrink

    try:
        sc = load_scenario(args.file)
        with _executor(args) as ex, _progress(args.tries, "plan", not args.json) as progress:
            if ex == "auto":
                ex = "serial"
            found = find_and_shrink(
                sc,
                args.style,
                seed=args.seed,
                tries=args.tries,
                max_faults=args.max_faults,
                invariant=args.invariant,
                outcome=args.outcome,
                sagas=args.sagas,
                executor=ex,
                progress=progress,
            )
    except ScenarioError as err:
        return _fail(err)
    if found is None:
        if args.json:
            print(json.dumps({"found": False, "style": args.style, "seed": args.seed}))
        print(
            f"no plan among {args.tries} broke {sc.name} ({args.style}, seed {args.seed}); "
            "try more --tries or another --seed",
            file=sys.stderr,
        )
        return 1
    if args.json:
        out = {
            "found": True,
            "scenario": sc.name,
            "style": found.style,
            "seed": found.seed,
            "tries": found.tries,
            "faults": list(found.faults),
            "found_plan": list(found.found),
            "violations": [
                {"invariant": v.invariant, "saga": v.saga, "step": v.step, "message": v.message}
                for v in found.violations
            ],
        }
        print(json.dumps(out, indent=2))
        return 0
    print(found.scenario_yaml() if args.scenario else found.to_yaml(), end="")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run one experiments verb on its own: ``python -m saga_sim.cli_experiments VERB ...``."""
    parser = argparse.ArgumentParser(prog="python -m saga_sim.cli_experiments")
    sub = parser.add_subparsers(dest="command", required=True)
    register(sub)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
