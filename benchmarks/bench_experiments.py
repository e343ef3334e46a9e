"""Benchmarks of the experiments (not timed tests): run ``python benchmarks/bench_experiments.py``.

Prints:
1. the seed scenario's fault matrix time (target < 2 s), serial, median of 5 after a warm-up;
2. 100,000 Monte Carlo sagas *per style* (200,000 simulated sagas) in a pool of 2 processes
   (target < 60 s), with sagas/s;
3. the peak memory of a Monte Carlo aggregate run of a million sagas per style (target < 1 GiB):
   run in a fresh child process; the resident set sizes of it and its worker processes are
   sampled every 0.2 s and summed (shared copy-on-write pages are counted in each process, so
   this over-estimates). ``--million N`` runs N sagas instead of 1,000,000 and says so.

Options: ``--mc N`` (sagas per style for part 2), ``--million N``, ``--skip-memory``,
``--workers W`` (default 2).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import threading
import time

import saga_sim as ss

SEED_FILE = "user_registration"  # the bundled sign-up scenario, by name


def bench_matrix() -> None:
    sc = ss.load_scenario(SEED_FILE)
    ss.fault_matrix(sc, seed=0)  # warm-up (imports, caches)
    times = []
    for seed in range(5):
        t = time.perf_counter()
        df = ss.fault_matrix(sc, seed=seed)
        times.append(time.perf_counter() - t)
    print(
        f"fault matrix, {sc.name}: {len(df)} cells ({ss.count_fault_points(sc)} points x 2 "
        f"styles): median {statistics.median(times):.3f} s, max {max(times):.3f} s "
        f"(target < 2 s)"
    )


def bench_monte_carlo(n: int, workers: int) -> None:
    import resource

    sc = ss.load_scenario(SEED_FILE)
    load = os.getloadavg()[0]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    mc = ss.monte_carlo(sc, n, seed=0, executor="process", workers=workers)
    dt = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)  # the pool's workers, reaped
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    print(
        f"monte carlo, {sc.name}: {n:,} sagas per style ({2 * n:,} simulated) on {workers} "
        f"processes: {dt:.1f} s, {2 * n / dt:,.0f} simulated sagas/s (target < 60 s for 100,000)"
    )
    print(
        f"  workers' CPU time {cpu:.1f} s: {2 * n / cpu:,.0f} simulated sagas per CPU-second "
        f"(1-minute load average before the run: {load:.2f}; other work on the machine slows "
        "the wall time, not this)"
    )
    print("  " + repr(mc))


def _tree_rss(pid: int) -> int:
    import psutil

    try:
        p = psutil.Process(pid)
        procs = [p, *p.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for q in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += q.memory_info().rss
    return total


def bench_memory(n: int, workers: int) -> None:
    try:
        import psutil  # noqa: F401
    except ImportError:  # pragma: no cover
        print("memory: psutil is not installed (pip install psutil); skipped")
        return
    cmd = [sys.executable, __file__, "--memory-child", str(n), "--workers", str(workers)]
    t = time.perf_counter()
    child = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    peak = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, _tree_rss(child.pid))
            stop.wait(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, _ = child.communicate()
    stop.set()
    sampler.join()
    dt = time.perf_counter() - t
    scaled = "" if n == 1_000_000 else f" (measured at {n:,} sagas, not 1,000,000)"
    print(
        f"memory, monte carlo aggregate of {n:,} sagas per style{scaled}: peak RSS of the run's "
        f"process tree {peak / 2**20:,.0f} MiB (target < 1024 MiB); {dt:.0f} s"
    )
    for line in out.strip().splitlines():
        print("  " + line)


def memory_child(n: int, workers: int) -> None:
    import resource

    sc = ss.load_scenario(SEED_FILE)
    mc = ss.monte_carlo(sc, n, seed=0, executor="process", workers=workers)
    me = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"main process peak {me:,.0f} MiB; largest worker peak {kids:,.0f} MiB")
    print(repr(mc))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mc", type=int, default=100_000)
    ap.add_argument("--million", type=int, default=1_000_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--memory-child", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.memory_child:
        memory_child(args.memory_child, args.workers)
        return
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    bench_matrix()
    bench_monte_carlo(args.mc, args.workers)
    if not args.skip_memory:
        bench_memory(args.million, args.workers)


if __name__ == "__main__":
    main()
