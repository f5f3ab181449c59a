"""Cost of a guarded lookup, measured against baselines in the same run.

Memory store (every quota and detection on):
* a guarded call vs calling ``limits`` directly (MemoryStorage +
  FixedWindowRateLimiter.hit) for the same windows -- target <= 1.5x -- and vs
  the unguarded call;
* the same call with ``sequence`` off, in the same run (issue 17: on / off <= 1.5x);
* p50/p99 of a guarded call with 100,000 practitioners in the store (issue 20: p99
  <= 0.07 ms), in wall time and in the thread's CPU time, also as ratios to the
  limits-direct call of this run (``--scale-off``: again with ``sequence`` off).

Redis (a private ``redis-server`` started for the run, so its counters and CPU
are ours alone; ``--redis URL`` to use another one):
* round trips per lookup -- new patient, repeat, miss -- counted ON THE WIRE by
  a TCP proxy in front of Redis (``tests/redis_tools.TcpProxy``: RESP commands
  and client->server flights), sync and async, cross-checked with ``INFO
  commandstats`` deltas; Redis CPU per lookup (``usec`` of the commands the
  client sent, and the server's ``used_cpu`` delta);
* the same on a local three-master Redis Cluster (counted from every node's
  ``INFO commandstats``: a proxy cannot sit in front of a cluster);
* median / p99 guarded lookup as a ratio to a PING measured in the same run,
  interleaved with it (target after issue 9: <= 3x for a new patient), and where
  the time goes;
* how long a lookup takes to fail closed on a paused (SIGSTOP) Redis (target
  <= 0.5 s).

    python benchmarks/bench_guard.py [--calls 20000] [--practitioners 100000]
        [--samples 2000] [--redis URL] [--no-memory] [--no-cluster] [--scale-off]
"""

# The command line and the run; the numbers are measured in _guard_memory.py (the memory
# store), _guard_redis.py (round trips on the wire, INFO deltas, the cluster) and
# _guard_latency.py (time per lookup vs PING, a paused Redis), around _guard_calls.py (the
# fake service, its guard, the scenarios of lookups).

from __future__ import annotations

import argparse
import os
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import best_of
from _guard_calls import KEY, MISSING, alookup, lookup, make_guard
from _guard_latency import latency_vs_ping, stalled_redis
from _guard_memory import (
    AtScale,
    guarded_time,
    latency_at_scale,
    limits_baseline,
    memory_numbers,
    on_off,
    sequence_off,
)
from _guard_redis import count_cluster, count_round_trips, redis_target
from _policies import FULL, default_scaled

from nirguard.testing import NIRGenerator
from tests.redis_tools import missing_redis_binaries

__all__ = [
    "FULL",
    "KEY",
    "MISSING",
    "AtScale",
    "NIRGenerator",
    "alookup",
    "best_of",
    "count_cluster",
    "count_round_trips",
    "guarded_time",
    "latency_at_scale",
    "latency_vs_ping",
    "limits_baseline",
    "lookup",
    "main",
    "memory_numbers",
    "on_off",
    "redis_numbers",
    "sequence_off",
    "stalled_redis",
]

#: The name the scripts kept in results/ (``bg._guard``) use for :func:`make_guard`.
_guard = make_guard


def redis_numbers(args: argparse.Namespace) -> None:
    """Redis: round trips (both policies), the cluster, time vs PING, a paused Redis."""
    policies = [
        ("default policy (quotas x1e5)", default_scaled()),
        ("FULL policy (portal quotas on)", FULL),
    ]
    with redis_target(args.redis) as (url, description):
        print(f"== Redis: {description}")
        trips: dict[str, float] = {}
        for label, policy in policies:
            counted = count_round_trips(url, policy, label, args.count)
            trips = trips or counted  # the first (default) policy's, used for the timing below
        if not args.no_cluster:
            count_cluster(policies[0][1], policies[0][0], args.count)
        latency_vs_ping(url, policies[0][1], args.samples, trips)
    stalled_redis()


def main() -> None:
    """Parse the flags and run the parts asked for."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--practitioners", type=int, default=100_000)
    parser.add_argument("--per-practitioner", type=int, default=30)
    parser.add_argument("--samples-scale", type=int, default=20_000)
    parser.add_argument(
        "--scale-off", action="store_true", help="also at scale with sequence off (about 2 min)"
    )
    parser.add_argument("--count", type=int, default=200, help="lookups counted per scenario")
    parser.add_argument("--samples", type=int, default=2000, help="timed lookups per scenario")
    parser.add_argument(
        "--redis",
        default=None,
        help="Redis URL (default: a private redis-server for the run; "
        "NIRGUARD_TEST_REDIS_URL when redis-server is not installed)",
    )
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--no-redis", action="store_true")
    parser.add_argument("--no-cluster", action="store_true")
    args = parser.parse_args()
    if args.redis is None and missing_redis_binaries() is not None:
        args.redis = os.environ.get("NIRGUARD_TEST_REDIS_URL")
        if not args.redis:
            args.no_redis = True

    if not args.no_memory:
        patients = NIRGenerator(1).many(5_000)
        rng = random.Random(1)
        calls = [(f"rpps-{rng.randrange(2000)}", rng.choice(patients)) for _ in range(args.calls)]
        memory_numbers(args, calls)
    if args.no_redis:
        print(
            "Redis: skipped (no redis-server here; pass --redis URL or set NIRGUARD_TEST_REDIS_URL)"
        )
    else:
        redis_numbers(args)


if __name__ == "__main__":
    main()
