"""Throughput of the simulation core beside a minimal SimPy request/reply model.

Simulates N sagas of the seed scenario (user registration) per style, tracing on, and a
minimal SimPy model of the same shape (3 steps, Store mailboxes, a reply event per request,
random service times and latencies) timed in the same process, and prints sagas/s and the ratio.
The target is a ratio of 0.5 or better.

    python benchmarks/bench_core.py [--sagas 10000] [--repeat 3]
    python benchmarks/bench_core.py --profile orchestration   # where the time goes (pyinstrument)
"""

from __future__ import annotations

import argparse
import gc
import random
import time

import simpy

import saga_sim as ss


def minimal_model(n: int, seed: int = 0, reply: str = "mailbox") -> float:
    """A bare request/reply saga: 3 steps, each a command put in the service's Store mailbox and
    a reply put in the saga's own Store mailbox (``reply="mailbox"``, the issue's "Store
    mailboxes"), or, lighter still, a reply event the service triggers (``reply="event"``)."""
    rng = random.Random(seed)
    env = simpy.Environment()
    inboxes = [simpy.Store(env) for _ in range(3)]

    def service(inbox: simpy.Store):
        while True:
            answer_to = yield inbox.get()
            yield env.timeout(rng.expovariate(1 / 0.02))  # local transaction
            yield env.timeout(rng.expovariate(1 / 0.005))  # reply latency
            if reply == "mailbox":
                answer_to.put("ok")
            else:
                answer_to.succeed()

    def saga():
        mailbox = simpy.Store(env) if reply == "mailbox" else None
        for inbox in inboxes:
            yield env.timeout(rng.expovariate(1 / 0.005))  # request latency
            if mailbox is not None:
                inbox.put(mailbox)
                yield mailbox.get()
            else:
                answer = env.event()
                inbox.put(answer)
                yield answer

    def source():
        for _ in range(n):
            env.process(saga())
            yield env.timeout(rng.expovariate(1 / 0.1))

    for inbox in inboxes:
        for _ in range(4):
            env.process(service(inbox))
    env.process(source())
    t0 = time.perf_counter()
    env.run()
    return time.perf_counter() - t0


def core(n: int, style: str, seed: int = 0) -> tuple[float, ss.Run]:
    sc = ss.load_scenario("user_registration")
    t0 = time.perf_counter()
    run = ss.simulate(sc, style, seed=seed, sagas=n)
    return time.perf_counter() - t0, run


def profile(n: int, style: str) -> None:
    """Print pyinstrument's call tree of one run (sampling, so the timings are the real ones)."""
    from pyinstrument import Profiler

    core(min(n, 1000), style)  # warm up
    profiler = Profiler(interval=0.0005)
    profiler.start()
    secs, _ = core(n, style)
    profiler.stop()
    print(f"{style}: {n:,} sagas in {secs:.3f} s under the profiler (slower; read the shares)")
    print(profiler.output_text(unicode=False, color=False, show_all=False))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sagas", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument(
        "--profile",
        choices=ss.STYLES,
        help="profile one style's run with pyinstrument and print the call tree instead",
    )
    args = ap.parse_args()
    n = args.sagas
    if args.profile:
        profile(n, args.profile)
        return
    gc.collect()
    base = min(minimal_model(n, seed=k) for k in range(args.repeat))
    light = min(minimal_model(n, seed=k, reply="event") for k in range(args.repeat))
    print(f"sagas per run: {n:,}; best of {args.repeat}; ratio = baseline time / model time")
    print(f"{'model':<34}{'seconds':>9}{'sagas/s':>11}{'ratio':>8}")
    print(f"{'minimal SimPy req/reply (baseline)':<34}{base:>9.3f}{n / base:>11,.0f}{1.0:>8.2f}")
    print(f"{'  same, reply as an event':<34}{light:>9.3f}{n / light:>11,.0f}{base / light:>8.2f}")
    for style in ss.STYLES:
        best = None
        for k in range(args.repeat):
            gc.collect()
            secs, run = core(n, style, seed=k)
            best = secs if best is None else min(best, secs)
        rows = len(run._rows)
        print(
            f"{'saga-sim ' + style:<34}{best:>9.3f}{n / best:>11,.0f}{base / best:>8.2f}"
            f"   (vs the event variant {light / best:.2f}; {rows / n:.0f} trace rows/saga)"
        )


if __name__ == "__main__":
    main()
