"""Redis CPU per lookup on one private node: the single node's call, and a Cluster's calls.

``bench_cluster.py`` measures what a Cluster gives against one node; this measures where a
lookup's server CPU goes, on one private ``redis-server`` with nothing else on it, so that
two versions of the library can be compared within minutes (run it under each, in turn):

* ``--mode admit``: the single node's path, one call a lookup;
* ``--mode cluster``: the Cluster's calls (the practitioner's, the cohort's heat, the
  practitioner's again), all sent to the one node (the codec is told it is a Cluster):
  what a Cluster's extra calls cost the servers, without the Cluster's network;
* ``--noop``: the same lookups answered by a library that does nothing but reply (a
  call's fixed cost: the protocol, ``FCALL``, the reply).

The lookups are ``bench_cluster.py``'s (its registry and plan, at a tenth of the people and
a fifth of the practitioners, the clock slowed to keep each practitioner's pace), driven
on the async path with 384 in flight; the store is seasoned (past its warm-up). It
reports the node's CPU (``used_cpu_user`` + ``used_cpu_sys``) per measured lookup.

    python benchmarks/bench_redis_cpu.py [--mode admit|cluster] [--sequence WINDOWS]
        [--noop] [--lookups 60000] [--warm 40000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_cluster as cluster
from _common import drive

from nirguard._engine import Request
from tests.redis_tools import RedisServer, missing_redis_binaries

PRACTITIONERS = 4000
SCALE = 0.1
INFLIGHT = 384
#: A library that answers every call "allowed" and does nothing else.
NOOP = (
    "#!lua name=nirguard_noop\n"
    "local function main(K, A)\n"
    '  return {"allowed", "", -1, 0, 0, 0, 0, 0, 0, -1, -1, -1, -1, 0, 0, -1, 0, 0}\n'
    "end\n"
    "redis.register_function('nirguard_noop', main)\n"
)


def requests(args: argparse.Namespace) -> tuple[list[Request], int, Any]:
    """The lookups (warm-up first), how many warm up, and the registry."""
    cluster.STEP = 0.05 * 20_000 / PRACTITIONERS  # each practitioner at bench_cluster's pace
    registry = cluster.build_registry(SCALE, seed=args.seed)
    settings = cluster.Settings(
        PRACTITIONERS, SCALE, args.warm, args.lookups, 0.8, 1, INFLIGHT, args.seed, True,
        args.sequence,
    )  # fmt: skip
    (lookups,), (warm,) = cluster.plan(settings, registry)
    out = cluster.requests_for(lookups, registry, cluster.shipped(args.sequence))
    return out, warm, registry


def cpu(client: Any) -> tuple[float, int]:
    """The node's CPU seconds, and the library calls it ran."""
    info = client.info("cpu")
    calls = client.info("commandstats").get("cmdstat_fcall", {"calls": 0})["calls"]
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"]), int(calls)


def run(args: argparse.Namespace) -> None:
    import redis

    import nirguard._redis.script as script
    from nirguard._redis import RedisEngine

    lookups, warm, registry = requests(args)
    with RedisServer() as server:
        url = server.url(0)
        cluster._season(url, "cpu", registry, args.sequence)
        engine = RedisEngine(url, prefix="cpu", deadline=60.0)
        engine._codec.cluster = args.mode == "cluster"  # every slot on this one node
        client = redis.Redis(port=server.port)

        async def main() -> None:
            await drive(lookups[:warm], INFLIGHT, engine.adecide)
            if args.noop:
                client.execute_command("FUNCTION", "LOAD", NOOP)
                script.FUNCTION = "nirguard_noop"  # type: ignore[misc]
            before, start = cpu(client), time.perf_counter()
            await drive(lookups[warm:], INFLIGHT, engine.adecide)
            after, seconds = cpu(client), time.perf_counter() - start
            measured = len(lookups) - warm
            print(
                f"{args.mode}{' noop' if args.noop else ''}, sequence "
                f"{args.sequence or 'shipped'}: {(after[0] - before[0]) / measured * 1e6:.1f} us of "
                f"Redis CPU a lookup, {(after[1] - before[1]) / measured:.3f} calls a lookup, "
                f"{measured:,} lookups in {seconds:.1f} s; load average {os.getloadavg()[0]:.1f}"
            )
            await engine.aclose()

        asyncio.run(main())
        client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mode", choices=("admit", "cluster"), default="admit")
    parser.add_argument("--sequence", default=None, metavar="WINDOWS")
    parser.add_argument("--noop", action="store_true")
    parser.add_argument("--lookups", type=int, default=60_000)
    parser.add_argument("--warm", type=int, default=40_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    why = missing_redis_binaries()
    if why is not None:
        print(f"skipped: {why}")
        return
    run(args)


if __name__ == "__main__":
    main()
