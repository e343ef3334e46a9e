"""The benchmarks still run and print their figures (small sizes; no speed is asserted here:
speed is measured by running the benchmarks themselves, see the README)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def this_checkout_first() -> dict[str, str]:
    """The environment of a child interpreter that imports this checkout's saga_sim (as pytest's
    ``pythonpath`` does here), whether or not the package is installed."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path}


def bench(script: str, *args: str) -> str:
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env=this_checkout_first(),
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_core_benchmark_prints_a_ratio_per_style():
    text = bench("bench_core.py", "--sagas", "300", "--repeat", "1")
    for style in ("orchestration", "choreography"):
        line = next(ln for ln in text.splitlines() if ln.startswith(f"saga-sim {style}"))
        seconds, per_second, ratio = re.findall(r"[\d,]+\.?\d*", line)[:3]
        assert float(seconds) > 0 and float(ratio) > 0
        assert int(per_second.replace(",", "")) > 0
        assert "trace rows/saga" in line


def test_core_benchmark_profiles_a_style():
    text = bench("bench_core.py", "--sagas", "300", "--profile", "choreography")
    assert text.startswith("choreography: 300 sagas")
    assert "simulate" in text and "Network.send" in text


def test_experiments_benchmark_prints_its_targets():
    text = bench("bench_experiments.py", "--mc", "200", "--skip-memory")
    assert re.search(r"fault matrix, user-registration: \d+ cells .* \(target < 2 s\)", text)
    assert re.search(r"monte carlo, user-registration: 200 sagas per style", text)
