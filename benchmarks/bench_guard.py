"""Cost of a guarded lookup, measured against baselines in the same run.

Prints:
* a guarded call (memory store, every quota and detection on) vs calling
  ``limits`` directly (MemoryStorage + FixedWindowRateLimiter.hit) for the same
  windows -- target <= 1.5x -- and vs the unguarded call;
* p50/p99 latency of a guarded call with 100,000 practitioners in the memory
  store (target p99 <= 2 ms);
* on Redis (``--redis URL``, default from NIRGUARD_TEST_REDIS_URL): round trips
  per allowed lookup counted from ``INFO commandstats`` deltas, latency relative
  to a bare PING, and how long a lookup takes to fail closed on a stalled Redis
  (a private redis-server paused with SIGSTOP; target <= 0.5 s).

    python benchmarks/bench_guard.py [--calls 20000] [--practitioners 100000] [--redis URL]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import best_of, ratio_line

from nirguard import GuardUnavailable, LookupGuard, Pseudonymiser, QuotaPolicy, SecretKey
from nirguard.testing import NIRGenerator

FULL = QuotaPolicy(
    lookups="1000000/minute;10000000/day",
    distinct_patients="10000000/day",
    invalid_nirs="1000/hour",
    misses="1000000/hour",
    portal="100000000/hour",
    cohort="1000000/day",
    portal_cohort="10000000/day",
    miss_ratio=0.99,
    miss_ratio_min_lookups=1000000,
)
KEY = SecretKey(bytes(range(32)), "bench")


def lookup(practitioner_id: str, nir: str) -> dict[str, str]:
    return {"name": "Jeanne Martin"}


def limits_baseline(calls: list[tuple[str, str]]) -> float:
    """limits alone, for the windows a guarded lookup touches (one hit each)."""
    from limits import parse_many
    from limits.storage import MemoryStorage
    from limits.strategies import FixedWindowRateLimiter

    storage = MemoryStorage()
    limiter = FixedWindowRateLimiter(storage)
    per_practitioner = [
        *parse_many(FULL.lookups or ""),
        *parse_many(FULL.distinct_patients or ""),
        *parse_many(FULL.misses or ""),
        *parse_many(FULL.cohort or ""),
    ]
    portal = [*parse_many(FULL.portal or ""), *parse_many(FULL.portal_cohort or "")]

    def run() -> None:
        hit = limiter.hit
        for who, value in calls:
            for item in per_practitioner:
                hit(item, who, value[:10])
            for item in portal:
                hit(item, "portal", value[:10])
            lookup(who, value)

    try:
        return best_of(run, repeat=3)
    finally:
        storage.reset()
        timer = getattr(storage, "timer", None)
        if timer is not None:
            timer.cancel()


def guarded_time(calls: list[tuple[str, str]]) -> float:
    guard = LookupGuard(FULL, pseudonymiser=Pseudonymiser(KEY, purpose="guard"))
    wrapped = guard.protect(practitioner="practitioner_id", nir="nir")(lookup)

    def run() -> None:
        for who, value in calls:
            wrapped(who, value)

    return best_of(run, repeat=3)


def latency_at_scale(
    practitioners: int, per_practitioner: int, samples: int
) -> tuple[float, float, int]:
    guard = LookupGuard(FULL, pseudonymiser=Pseudonymiser(KEY, purpose="guard"))
    wrapped = guard.protect(practitioner="practitioner_id", nir="nir")(lookup)
    patients = NIRGenerator(7).many(50_000)
    rng = random.Random(7)
    for p in range(practitioners):  # fill the store
        who = f"rpps-{p}"
        for _ in range(per_practitioner):
            wrapped(who, patients[rng.randrange(len(patients))])
    keys = len(guard._engine)  # type: ignore[arg-type]
    timings = []
    perf = time.perf_counter
    for _ in range(samples):
        who = f"rpps-{rng.randrange(practitioners)}"
        value = patients[rng.randrange(len(patients))]
        start = perf()
        wrapped(who, value)
        timings.append(perf() - start)
    timings.sort()
    return timings[len(timings) // 2], timings[int(len(timings) * 0.99)], keys


def redis_numbers(url: str, calls: list[tuple[str, str]]) -> None:
    import redis

    client = redis.Redis.from_url(url)
    prefix = f"bench-{os.getpid()}"
    guard = LookupGuard(
        FULL, storage=url, key_prefix=prefix, pseudonymiser=Pseudonymiser(KEY, purpose="guard")
    )
    wrapped = guard.protect(practitioner="practitioner_id", nir="nir")(lookup)
    sample = calls[:2000]

    # Commands a client sends (one round trip each); INCRBY/EXPIRE run inside the EVALSHA scripts.
    top_level = ("cmdstat_evalsha", "cmdstat_eval", "cmdstat_get", "cmdstat_ttl", "cmdstat_del")

    def counts() -> tuple[int, int]:
        stats = client.info("commandstats")
        everything = sum(int(v["calls"]) for k, v in stats.items() if k != "cmdstat_info")
        sent = sum(int(stats[k]["calls"]) for k in top_level if k in stats)
        return everything, sent

    before = counts()
    start = time.perf_counter()
    for who, value in sample:
        wrapped(who, value)
    guarded = (time.perf_counter() - start) / len(sample)
    after = counts()
    commands = (after[0] - before[0]) / len(sample)
    trips = (after[1] - before[1]) / len(sample)
    start = time.perf_counter()
    for _ in sample:
        client.ping()
    ping = (time.perf_counter() - start) / len(sample)
    keys = list(client.scan_iter(match=f"*{prefix}*", count=1000))
    for i in range(0, len(keys), 1000):
        client.delete(*keys[i : i + 1000])
    guard.close()
    client.close()
    print(
        f"Redis: {trips:.1f} round trips per allowed lookup ({commands:.1f} commands with those "
        "run inside scripts), full policy"
    )
    print(f"Redis: guarded lookup {guarded * 1e6:.0f} us vs bare PING {ping * 1e6:.0f} us")
    print(ratio_line("Redis: guarded lookup / PING latency", guarded / ping, "report"))


def stalled_redis() -> None:
    binary = shutil.which("redis-server")
    if binary is None:
        print("stalled Redis: redis-server not installed, skipped")
        return
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(0.5)
        guard = LookupGuard(
            FULL,
            storage=f"redis://127.0.0.1:{port}/0",
            pseudonymiser=Pseudonymiser(KEY, purpose="guard"),
        )
        wrapped = guard.protect(practitioner="practitioner_id", nir="nir")(lookup)
        values = NIRGenerator(3).many(6)
        wrapped("dr", values[0])
        os.kill(proc.pid, signal.SIGSTOP)
        worst = 0.0
        for value in values[1:]:
            start = time.perf_counter()
            try:
                wrapped("dr", value)
            except GuardUnavailable:
                pass
            worst = max(worst, time.perf_counter() - start)
        print(f"stalled Redis: slowest fail-closed lookup {worst:.3f} s (target <= 0.5 s)")
    finally:
        os.kill(proc.pid, signal.SIGCONT)
        proc.terminate()
        proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--practitioners", type=int, default=100_000)
    parser.add_argument("--per-practitioner", type=int, default=30)
    parser.add_argument("--samples", type=int, default=20_000)
    parser.add_argument("--redis", default=os.environ.get("NIRGUARD_TEST_REDIS_URL"))
    args = parser.parse_args()

    patients = NIRGenerator(1).many(5_000)
    rng = random.Random(1)
    calls = [(f"rpps-{rng.randrange(2000)}", rng.choice(patients)) for _ in range(args.calls)]

    bare = best_of(lambda: [lookup(w, v) for w, v in calls], repeat=3)
    base = limits_baseline(calls)
    ours = guarded_time(calls)
    n = len(calls)
    print(
        f"guarded call (memory store, every quota on): {ours / n * 1e6:.1f} us; "
        f"limits alone for the same windows: {base / n * 1e6:.1f} us; unguarded: {bare / n * 1e6:.2f} us"
    )
    print(ratio_line("guarded / limits-direct", ours / base, "<= 1.5x"))
    print(ratio_line("guarded / unguarded", ours / bare, "report"))

    p50, p99, keys = latency_at_scale(args.practitioners, args.per_practitioner, args.samples)
    print(
        f"{args.practitioners:,} practitioners x {args.per_practitioner} lookups in the memory store "
        f"({keys:,} keys): p50 {p50 * 1e3:.3f} ms, p99 {p99 * 1e3:.3f} ms (target p99 <= 2 ms)"
    )

    if args.redis:
        redis_numbers(args.redis, calls)
        stalled_redis()
    else:
        print("Redis: skipped (pass --redis URL or set NIRGUARD_TEST_REDIS_URL)")


if __name__ == "__main__":
    main()
