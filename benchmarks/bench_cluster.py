"""How a Redis Cluster scales the guard: capacity at one core on the busiest node.

One node, then Clusters of 3 and 6 masters (each started for the run with
``tests/redis_tools.py``), take the same lookups: 20,000 practitioners and
about 1,000,000 people (the replay's registry: French birth cohorts, whole,
with their real sizes), 80% of lookups a patient the practitioner already
has, the shipped policy (``QuotaPolicy()``) at a GP's pace on a simulated
clock (each call carries its time, so the policy refuses nothing it would
not refuse in a working day). Several client processes (``--clients``)
drive the Redis engine directly, each with many lookups in flight (the
async path: pipelined), so that Redis, not the client, sets the pace.

Every deployment gets the same clients and the same lookups in flight: 3 x
384 by default (per client, 64 per master of the 6-master Cluster). A
server's CPU per call falls as its pipeline deepens (one read of a socket
brings more calls): with 3 x 64 in flight the one node read about 33 calls
per socket read and each master of 6 about 9, and the Cluster paid up to half
as much again per lookup for that alone, which a loaded Cluster, its masters'
queues as deep as the one node's, does not pay. The one node's pipeline is
deep at either setting and its cost per lookup about the same at both
(docs/redis.md, "Capacity of a Cluster").

For each deployment the script reads every master's CPU (``used_cpu_user`` +
``used_cpu_sys`` from ``INFO``) and memory (``used_memory``) before and after
the measured lookups, and reports:

* **capacity**: lookups per second that one core would serve on the busiest
  node (lookups / that node's CPU seconds), and its ratio to one node;
* the same **net of each node's idle CPU** (its cron and, on a Cluster, the
  bus's gossip: read over ``IDLE`` seconds with the clients warmed up and
  waiting, about 1.4 ms a second per node on the shared host), taken off each
  node's CPU for the measured phase's length. A node at one core spends a
  negligible share on it, but a node that the clients keep at a few percent
  (six masters on a loaded host) spends several percent of its measured CPU
  on it, so the raw ratio falls as the host's load stretches the run;
* each node's share of the CPU and of the memory, against its fair share
  (1 / masters); the busiest as a multiple of fair;
* Redis CPU per lookup, summed over the masters (a Cluster should cost about
  what one node costs), the library calls per lookup and the time inside them
  (``INFO commandstats``: wall time, inflated when the host is loaded), the
  kernel's share of the CPU and the socket reads per lookup (how deep the
  pipelines were).

One node runs first and last (``--masters 1,3,6,1``): ratios are against the
mean of its runs, so a host whose load drifts during the run shows it.

Targets (issue 20): 3 masters >= 2.5x one node, 6 masters >= 4.5x, no node
above 1.5x its fair share of CPU or memory.

A fresh store is still in the shipped policy's 14-day ``hot_cohort_warmup`` (no cohort
can be hot; the run spans hours of simulated time); ``--seasoned`` starts the store's
watch 30 days earlier, the steady state, where a Cluster asks a new patient's heat
before it decides (one call more per new patient).

The shipped policy has the ``sequence`` signal on (a new patient is then three calls on a
fresh store too); ``--sequence off`` turns it off, ``--sequence "6/day;8/7 days"`` sets
its windows. The lookups carry the four probes the guard sends (``_lookup.py``).

    python benchmarks/bench_cluster.py [--masters 1,3,6,1] [--lookups 300000]
        [--warm 200000] [--clients 3] [--inflight 384] [--repeats 0.8] [--seasoned]
        [--sequence WINDOWS]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _cluster_tools import Measured, deployment, report, snapshot
from _common import drive

from nirguard import Pseudonymiser, QuotaPolicy, SecretKey
from nirguard._engine import Request, escape
from nirguard._sequence import neighbours
from nirguard.replay.registry import Registry, build_registry
from tests.redis_tools import missing_redis_binaries

KEY = SecretKey(bytes(range(32)), "bench")
#: Seconds of simulated time between two lookups of the whole portal: at 20,000
#: practitioners each one looks up a patient every ~17 minutes, a GP's pace.
STEP = 0.05
T0 = 1_800_000_000.0
#: Seconds over which each node's idle CPU is read (clients warmed up, waiting).
IDLE = 5.0


@dataclass(frozen=True)
class Settings:
    practitioners: int
    people: float  # registry scale (1.0 = about 2,000,000 people)
    warm: int
    lookups: int
    repeats: float
    clients: int
    inflight: int
    seed: int
    seasoned: bool  # the store watched the portal for longer than hot_cohort_warmup
    sequence: str | None = None  # QuotaPolicy(sequence=...): None the shipped, "off" none


# -- the lookups ------------------------------------------------------------------------------


Plan = tuple[list[list[tuple[int, int, float]]], list[int]]


def plan(settings: Settings, registry: Registry) -> Plan:
    """Per client: (practitioner, person, time) lookups, warm-up first, and how many of them
    warm up. Practitioners are split between clients, so each one's clock only moves on."""
    rng = random.Random(settings.seed)
    people = len(registry)
    panels: list[list[int]] = [[] for _ in range(settings.practitioners)]
    out: list[list[tuple[int, int, float]]] = [[] for _ in range(settings.clients)]
    warm = [0] * settings.clients
    total = settings.warm + settings.lookups
    for i in range(total):
        who = rng.randrange(settings.practitioners)
        panel = panels[who]
        if panel and rng.random() < settings.repeats:
            person = panel[rng.randrange(len(panel))]
        else:
            person = rng.randrange(people)
            panel.append(person)
        out[who % settings.clients].append((who, person, T0 + i * STEP))
        if i < settings.warm:
            warm[who % settings.clients] += 1
    return out, warm


class Pseudonyms:
    """Pseudonyms of people and cohorts, made once each (the guard's HMACs, as it keys them)."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        patients = Pseudonymiser(KEY, purpose="guard")
        self._patients = patients
        self._cohorts = patients.derive("cohort")
        self._cache: dict[int, tuple[str, str]] = {}

    def of(self, person: int) -> tuple[str, str]:
        found = self._cache.get(person)
        if found is None:
            number = self.registry.nir(person)
            found = (
                self._patients.pseudonymise_canonical(number),
                self._cohorts.pseudonymise_canonical(number[:10]),
            )
            self._cache[person] = found
        return found

    def near(self, person: int) -> bytes:
        """The fingerprints of the person's four probes in its cohort (``sequence``)."""
        return neighbours(self._patients, self.registry.nir(person), self.of(person)[0])


# -- the clients ------------------------------------------------------------------------------


def shipped(sequence: str | None) -> Any:
    """The shipped policy, compiled; ``sequence`` ``"off"`` or other windows when given."""
    if sequence is None:
        return QuotaPolicy()._compiled
    return QuotaPolicy(sequence=None if sequence == "off" else sequence)._compiled


def requests_for(
    lookups: list[tuple[int, int, float]], registry: Registry, policy: Any
) -> list[Request]:
    """The engine's requests for ``lookups`` (practitioner, person, time), with the probes the
    guard sends when the policy has ``sequence`` (``_lookup.py``)."""
    names = Pseudonyms(registry)
    requests = []
    for who, person, now in lookups:
        patient, cohort = names.of(person)
        near = names.near(person) if policy.sequence else b""
        requests.append(
            Request(escape(f"rpps-{who}"), policy, patient, cohort, False, now=now, neighbours=near)
        )
    return requests


def _client(
    url: str,
    prefix: str,
    lookups: list[tuple[int, int, float]],
    warm: int,
    inflight: int,
    registry: Registry,
    barrier: Any,
    results: Any,
    sequence: str | None,
) -> None:
    from nirguard._redis import RedisEngine

    requests = requests_for(lookups, registry, shipped(sequence))
    # A deadline for a host the benchmark loads to the full: the run measures CPU, not latency.
    engine = RedisEngine(url, prefix=prefix, deadline=30.0)
    outcomes: dict[str, int] = {}

    async def decide(request: Request) -> None:
        try:
            outcome = (await engine.adecide(request)).outcome
        except engine.outages:
            outcome = "store unavailable"
        outcomes[outcome] = outcomes.get(outcome, 0) + 1

    async def main() -> None:
        loop = asyncio.get_running_loop()
        await drive(requests[:warm], inflight, decide)
        await loop.run_in_executor(None, barrier.wait)  # warmed up: the parent reads INFO
        await loop.run_in_executor(None, barrier.wait)  # ... and lets go
        outcomes.clear()
        await drive(requests[warm:], inflight, decide)
        await loop.run_in_executor(None, barrier.wait)
        await engine.aclose()

    asyncio.run(main())
    results.put(outcomes)


def _season(url: str, prefix: str, registry: Registry, sequence: str | None) -> None:
    """Make the store's watch of the portal start 30 days before the lookups (past the
    shipped 14-day ``hot_cohort_warmup``): the steady state, where a cohort's heat can
    decide a new patient, and a Cluster asks for it before it decides."""
    from nirguard._redis import RedisEngine

    patient, cohort = Pseudonyms(registry).of(0)
    engine = RedisEngine(url, prefix=prefix, deadline=30.0)
    policy = shipped(sequence)
    engine.decide(Request("bench-season", policy, patient, cohort, False, now=T0 - 30 * 86400))
    engine.close()


def measure(masters: int, settings: Settings, registry: Registry, planned: Plan) -> Measured:
    import redis

    context = multiprocessing.get_context("fork")
    with deployment(masters) as (url, ports):
        clients = [redis.Redis(port=port) for port in ports]
        empty = [float(c.info("memory")["used_memory"]) for c in clients]
        barrier = context.Barrier(settings.clients + 1)
        results = context.Queue()
        prefix = f"bench-cap-{os.getpid()}"
        if settings.seasoned:
            _season(url, prefix, registry, settings.sequence)
        lookups, warm_each = planned
        workers = [
            context.Process(
                target=_client,
                args=(
                    url,
                    prefix,
                    part,
                    warm,
                    settings.inflight,
                    registry,
                    barrier,
                    results,
                    settings.sequence,
                ),
            )
            for part, warm in zip(lookups, warm_each, strict=True)
        ]
        for worker in workers:
            worker.start()
        barrier.wait()  # warmed up
        quiet = snapshot(clients)
        time.sleep(IDLE)
        before = snapshot(clients)
        idle = [(b["cpu"] - q["cpu"]) / IDLE for b, q in zip(before, quiet, strict=True)]
        barrier.wait()  # go
        start = time.perf_counter()
        barrier.wait()  # measured
        seconds = time.perf_counter() - start
        after = snapshot(clients)
        outcomes: dict[str, int] = {}
        for _ in workers:
            for name, count in results.get().items():
                outcomes[name] = outcomes.get(name, 0) + count
        for worker in workers:
            worker.join()
        measured = sum(len(part) - warm for part, warm in zip(lookups, warm_each, strict=True))
        result = Measured.between(before, after, empty, idle, masters, measured, seconds, outcomes)
        for client in clients:
            client.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--masters", default="1,3,6,1")
    parser.add_argument("--practitioners", type=int, default=20_000)
    parser.add_argument("--scale", type=float, default=0.5, help="registry scale (0.5: ~1M)")
    parser.add_argument("--warm", type=int, default=200_000)
    parser.add_argument("--lookups", type=int, default=300_000)
    parser.add_argument("--repeats", type=float, default=0.8)
    parser.add_argument("--clients", type=int, default=3)
    parser.add_argument("--inflight", type=int, default=384)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--seasoned",
        action="store_true",
        help="a store past hot_cohort_warmup (default: a fresh store, still warming up)",
    )
    parser.add_argument(
        "--sequence",
        default=None,
        metavar="WINDOWS",
        help='the sequence signal: "off", or these windows (default: the shipped policy\'s)',
    )
    args = parser.parse_args()
    why = missing_redis_binaries(cluster=True)
    if why is not None:
        print(f"skipped: {why}")
        return
    settings = Settings(
        args.practitioners,
        args.scale,
        args.warm,
        args.lookups,
        args.repeats,
        args.clients,
        args.inflight,
        args.seed,
        args.seasoned,
        args.sequence,
    )
    registry = build_registry(args.scale, seed=args.seed)
    lookups = plan(settings, registry)
    print(
        f"{args.practitioners:,} practitioners, {len(registry):,} people in "
        f"{registry.cohorts:,} cohorts, {args.repeats:.0%} repeats, shipped policy, "
        f"{args.clients} client processes x {args.inflight} lookups in flight; "
        f"{args.warm:,} lookups to warm up, {args.lookups:,} measured; "
        f"{'a store past its warm-up' if args.seasoned else 'a fresh store (warming up)'}; "
        f"sequence {args.sequence or 'shipped'}; "
        "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())
    )
    results = []
    for masters in (int(m) for m in args.masters.split(",")):
        results.append(measure(masters, settings, registry, lookups))
        print(f"   ... {masters} master(s) done; load average {os.getloadavg()[0]:.2f}")
    report(results)


if __name__ == "__main__":
    main()
