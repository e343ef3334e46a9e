"""Run the safety search outside pytest: many examples, every distinct failure shrunk to a case.

    python -m tests.safety_fuzz search --examples 5000 --out /tmp/safety   # collect signatures
    python -m tests.safety_fuzz shrink --out /tmp/safety                   # one minimal case each

(from the repository's top folder, with the package installed)

``search`` draws examples from ``strategies.safety_cases`` (random, not derandomized), checks
each with ``safety_oracle.check`` and appends every failure to ``<out>/failures.jsonl`` with the
example that showed it. ``shrink`` then asks hypothesis, for each distinct signature (style,
assertion, detail), for the smallest example that still shows it (``hypothesis.find``), and
writes it as ``<out>/<style>__<assertion>__<detail>.yaml``, the form tests/safety_cases holds.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from hypothesis import HealthCheck, Phase, given, settings

from tests.safety_oracle import check, check_healthy
from tests.strategies import SafetyCase, safety_cases


def _failures(case: SafetyCase) -> list:
    return check(case.model, case.faults, case.seed)


def search(examples: int, out: Path, seconds: float) -> None:
    out.mkdir(parents=True, exist_ok=True)
    log = (out / "failures.jsonl").open("a")
    count = {"n": 0, "failing": 0}
    t0 = time.monotonic()

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.generate],
    )
    @given(safety_cases())
    def run(case: SafetyCase) -> None:
        if time.monotonic() - t0 > seconds:
            return
        count["n"] += 1
        found = _failures(case)
        if found:
            count["failing"] += 1
        for f in found:
            row = {"signature": f.signature, "message": str(f), "case": case.to_yaml()}
            log.write(json.dumps(row) + "\n")
        log.flush()
        if count["n"] % 100 == 0:
            (out / "progress.txt").write_text(
                f"{count['n']} examples, {count['failing']} failing, "
                f"{time.monotonic() - t0:.0f} s\n"
            )

    run()
    (out / "progress.txt").write_text(
        f"done: {count['n']} examples, {count['failing']} failing, {time.monotonic() - t0:.0f} s\n"
    )


def _fails(case: SafetyCase, sig: tuple) -> bool:
    try:
        model = case.model
    except Exception:
        return False
    try:
        found = check(model, case.faults, case.seed, styles=(sig[0],))
    except Exception:
        return False
    return any(f.signature == sig for f in found)


def _without_step(sc: dict, k: int) -> dict:
    """The scenario without step ``k``: its successors inherit its predecessors."""
    steps = [dict(s) for s in sc["steps"]]
    gone = steps[k]["name"]
    preds_k = steps[k].get("after")
    if preds_k is None:
        preds_k = [steps[k - 1]["name"]] if k else []
    out = []
    for i, s in enumerate(steps):
        if i == k:
            continue
        if "after" in s and gone in s["after"]:
            s["after"] = sorted(set(s["after"]) - {gone} | set(preds_k))
        elif "after" not in s and i == k + 1:
            s["after"] = list(preds_k)
        out.append(s)
    return {**sc, "steps": out}


def _candidates(case: SafetyCase):
    """Smaller or simpler variants of a case, most reducing first."""
    sc, faults = case.scenario, case.faults
    for j in range(len(faults)):
        yield SafetyCase(sc, faults[:j] + faults[j + 1 :], case.seed)
    n = sc["workload"]["sagas"]
    for m in range(1, n):
        keep = [f for f in faults if f.get("saga", "all") == "all" or f["saga"] <= m]
        yield SafetyCase({**sc, "workload": {**sc["workload"], "sagas": m}}, keep, case.seed)
    for k in range(len(sc["steps"]) - 1, -1, -1):
        name = sc["steps"][k]["name"]
        keep = [f for f in faults if f.get("step") != name]
        yield SafetyCase(_without_step(sc, k), keep, case.seed)
    for svc, spec in sc["services"].items():
        used_items = {s["data"]["item"] for s in sc["steps"] if "data" in s}
        if any(i not in used_items for i in spec.get("data", {})):
            data = {k: v for k, v in spec["data"].items() if k in used_items}
            services = {**sc["services"], svc: {**spec, "data": data}}
            if not data:
                services[svc] = {k: v for k, v in spec.items() if k != "data"}
            yield SafetyCase({**sc, "services": services}, faults, case.seed)
    used = {s["service"] for s in sc["steps"]}
    for svc in sc["services"]:
        if svc not in used:
            services = {k: v for k, v in sc["services"].items() if k != svc}
            keep = [
                f for f in faults if f.get("service") != svc and svc not in f.get("between", [])
            ]
            yield SafetyCase({**sc, "services": services}, keep, case.seed)
    for i, s in enumerate(sc["steps"]):
        simpler = []
        if "data" in s:
            simpler.append({k: v for k, v in s.items() if k != "data"})
        if "compensation_duration" in s:
            simpler.append({k: v for k, v in s.items() if k != "compensation_duration"})
        if s["duration"] != {"dist": "constant", "value": 0.01}:
            simpler.append({**s, "duration": {"dist": "constant", "value": 0.01}})
        for new in simpler:
            steps = list(sc["steps"])
            steps[i] = new
            yield SafetyCase({**sc, "steps": steps}, faults, case.seed)
    pol = sc["policy"]
    # (the semantic lock stays: every safeguard on is the point)
    if pol.get("compensation_order") == "parallel":
        newpol = {**pol, "compensation_order": "reverse"}
        yield SafetyCase({**sc, "policy": newpol}, faults, case.seed)
    if "isolation" in pol:
        for flag in ("commutative", "reread", "version"):
            if pol["isolation"].get(flag):
                iso = {**pol["isolation"], flag: False}
                yield SafetyCase({**sc, "policy": {**pol, "isolation": iso}}, faults, case.seed)
    if sc["network"].get("duplicate"):
        yield SafetyCase({**sc, "network": {**sc["network"], "duplicate": 0.0}}, faults, case.seed)
    for j, f in enumerate(faults):
        for key in ("count", "times", "attempt"):
            if f.get(key, 1) > 1:
                yield SafetyCase(sc, [*faults[:j], {**f, key: 1}, *faults[j + 1 :]], case.seed)
        if "saga" in f:
            g = {k: v for k, v in f.items() if k != "saga"}
            yield SafetyCase(sc, [*faults[:j], g, *faults[j + 1 :]], case.seed)
    if case.seed != 0:
        for seed in (0, 1, 2):
            yield SafetyCase(sc, faults, seed)


def _fails_healthy(case: SafetyCase, sig: tuple) -> bool:
    try:
        return any(f.signature == sig for f in check_healthy(case.model, case.seed))
    except Exception:
        return False


def reduce(case: SafetyCase, sig: tuple, fails=_fails) -> SafetyCase:
    """Greedy reduction: take the first smaller variant that still fails the same way, repeat."""
    changed = True
    while changed:
        changed = False
        for cand in _candidates(case):
            if fails(cand, sig):
                case, changed = cand, True
                break
    return case


def shrink(out: Path, only: str | None, tries: int) -> None:
    import yaml

    first: dict[tuple, dict] = {}
    for line in (out / "failures.jsonl").open():
        row = json.loads(line)
        sig = tuple(row["signature"])
        data = yaml.safe_load(row["case"])
        size = len(row["case"])
        if sig not in first or size < first[sig]["size"]:
            first[sig] = {"size": size, "data": data, "message": row["message"]}
    for sig, row in sorted(first.items()):
        name = "__".join(x or "-" for x in sig)
        if only and only not in name:
            continue
        d = row["data"]
        case = SafetyCase(d["scenario"], d["faults"], d["seed"])
        print("shrinking", sig, flush=True)
        if not _fails(case, sig):
            print("  does not reproduce", flush=True)
            continue
        best = reduce(case, sig)
        fails = check(best.model, best.faults, best.seed, styles=(sig[0],))
        text = "".join(f"# {f}\n" for f in fails)
        (out / f"{name}.yaml").write_text(text + best.to_yaml())
        print("  ->", out / f"{name}.yaml", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("search")
    s.add_argument("--examples", type=int, default=5000)
    s.add_argument("--seconds", type=float, default=2400)
    s.add_argument("--out", type=Path, required=True)
    k = sub.add_parser("shrink")
    k.add_argument("--out", type=Path, required=True)
    k.add_argument("--only")
    k.add_argument("--tries", type=int, default=3000)
    a = p.parse_args()
    if a.cmd == "search":
        search(a.examples, a.out, a.seconds)
    else:
        shrink(a.out, a.only, a.tries)


if __name__ == "__main__":
    main()
