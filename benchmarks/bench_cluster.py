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
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import drive

from nirguard import Pseudonymiser, QuotaPolicy, SecretKey
from nirguard._engine import Request, escape
from nirguard._sequence import neighbours
from nirguard.replay.registry import Registry, build_registry
from tests.redis_tools import RedisCluster, RedisServer, missing_redis_binaries

KEY = SecretKey(bytes(range(32)), "bench")
#: Seconds of simulated time between two lookups of the whole portal: at 20,000
#: practitioners each one looks up a patient every ~17 minutes, a GP's pace.
STEP = 0.05
T0 = 1_800_000_000.0
SCRIPT_CALLS = ("FCALL", "EVALSHA", "EVAL")
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


# -- the servers ------------------------------------------------------------------------------


@contextmanager
def deployment(masters: int) -> Iterator[tuple[str, list[int]]]:
    """(storage URL, ports of the masters): one plain node, or a Cluster."""
    if masters == 1:
        with RedisServer() as server:
            yield server.url(0), [server.port]
        return
    with RedisCluster(masters=masters) as cluster:
        yield cluster.url, [node.port for node in cluster.nodes]


def _snapshot(clients: list[Any]) -> list[dict[str, float]]:
    out = []
    for client in clients:
        cpu = client.info("cpu")
        memory = client.info("memory")
        stats = client.info("commandstats")
        reads = client.info("stats")["total_reads_processed"]
        scripts = [
            v for k, v in stats.items() if k.removeprefix("cmdstat_").upper() in SCRIPT_CALLS
        ]
        calls = sum(int(v["calls"]) for v in scripts)
        usec = sum(float(v["usec"]) for v in scripts)
        out.append(
            {
                "cpu": float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"]),
                "sys": float(cpu["used_cpu_sys"]),
                "reads": float(reads),
                "memory": float(memory["used_memory"]),
                "calls": float(calls),
                "script": usec / 1e6,
                "records": float(client.dbsize()),
            }
        )
    return out


@dataclass
class Measured:
    masters: int
    lookups: int
    cpu: list[float]  # per node, seconds, measured phase
    idle: list[float]  # per node, CPU seconds a second with no lookups (cron, bus)
    memory: list[float]  # per node, bytes held at the end (above an empty node)
    calls: float  # library calls per lookup
    script: float  # seconds inside the library's calls (INFO commandstats), all masters
    sys: float  # seconds of the CPU in the kernel (used_cpu_sys), all masters
    reads: float  # reads from client sockets (total_reads_processed), all masters
    keys: list[float]
    seconds: float
    outcomes: dict[str, int]

    @property
    def capacity(self) -> float:
        return self.lookups / max(self.cpu)

    @property
    def net_capacity(self) -> float:
        """The capacity with each node's idle CPU for the run's length taken off."""
        net = [c - i * self.seconds for c, i in zip(self.cpu, self.idle, strict=True)]
        return self.lookups / max(max(net), 1e-9)

    @property
    def cpu_per_lookup(self) -> float:
        return sum(self.cpu) / self.lookups


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
        quiet = _snapshot(clients)
        time.sleep(IDLE)
        before = _snapshot(clients)
        idle = [(b["cpu"] - q["cpu"]) / IDLE for b, q in zip(before, quiet, strict=True)]
        barrier.wait()  # go
        start = time.perf_counter()
        barrier.wait()  # measured
        seconds = time.perf_counter() - start
        after = _snapshot(clients)
        outcomes: dict[str, int] = {}
        for _ in workers:
            for name, count in results.get().items():
                outcomes[name] = outcomes.get(name, 0) + count
        for worker in workers:
            worker.join()
        measured = sum(len(part) - warm for part, warm in zip(lookups, warm_each, strict=True))
        result = Measured(
            masters=masters,
            lookups=measured,
            cpu=[a["cpu"] - b["cpu"] for a, b in zip(after, before, strict=True)],
            idle=idle,
            memory=[a["memory"] - e for a, e in zip(after, empty, strict=True)],
            calls=sum(a["calls"] - b["calls"] for a, b in zip(after, before, strict=True))
            / measured,
            script=sum(a["script"] - b["script"] for a, b in zip(after, before, strict=True)),
            sys=sum(a["sys"] - b["sys"] for a, b in zip(after, before, strict=True)),
            reads=sum(a["reads"] - b["reads"] for a, b in zip(after, before, strict=True)),
            keys=[a["records"] for a in after],
            seconds=seconds,
            outcomes=outcomes,
        )
        for client in clients:
            client.close()
    return result


def report(results: list[Measured]) -> None:
    ones = [r.capacity for r in results if r.masters == 1]
    base = sum(ones) / len(ones) if ones else None  # one node, every run of it (interleaved)
    nets = [r.net_capacity for r in results if r.masters == 1]
    net_base = sum(nets) / len(nets) if nets else None
    print(
        f"{'deployment':<12}{'capacity/s':>12}{'x one node':>11}{'net':>7}{'Redis CPU us':>14}"
        f"{'script us':>11}{'calls':>7}{'busiest CPU':>13}{'busiest mem':>13}"
        "   CPU shares / memory shares"
    )
    for r in results:
        fair = 1 / r.masters
        cpu_share = [c / sum(r.cpu) for c in r.cpu]
        mem_share = [m / sum(r.memory) for m in r.memory]
        ratio = f"{r.capacity / base:.2f}x" if base else "-"
        net = f"{r.net_capacity / net_base:.2f}x" if net_base else "-"
        name = "one node" if r.masters == 1 else f"{r.masters} masters"
        print(
            f"{name:<12}{r.capacity:>12,.0f}{ratio:>11}{net:>7}{r.cpu_per_lookup * 1e6:>14.1f}"
            f"{r.script / r.lookups * 1e6:>11.1f}{r.calls:>7.2f}"
            f"{max(cpu_share) / fair:>12.2f}x{max(mem_share) / fair:>12.2f}x   "
            + " ".join(f"{s:.2f}" for s in cpu_share)
            + " / "
            + " ".join(f"{s:.2f}" for s in mem_share)
        )
    for r in results:
        print(
            f"   {r.masters} master(s): {r.lookups:,} lookups in {r.seconds:.1f} s "
            f"({r.lookups / r.seconds:,.0f}/s with these clients on this host); "
            f"keys per node {', '.join(f'{k:,.0f}' for k in r.keys)}; outcomes {r.outcomes}; "
            f"kernel {r.sys / sum(r.cpu):.0%} of the CPU; {r.reads / r.lookups:.2f} socket reads "
            f"per lookup; idle CPU {', '.join(f'{i * 1e3:.1f}' for i in r.idle)} ms/s "
            f"({sum(i * r.seconds for i in r.idle) / sum(r.cpu):.1%} of the measured CPU)"
        )
    print(
        "   capacity: measured lookups / CPU seconds of the busiest master (one core there);\n"
        "   x one node: against the mean of the one-node runs (--masters 1,3,6,1 brackets the\n"
        "   Clusters); net: the same ratio with each node's idle CPU (cron, Cluster bus) over\n"
        "   the run taken off; Redis CPU us: CPU of all masters per lookup; script us: the time\n"
        "   inside the library's calls (INFO commandstats; the rest is the servers' I/O);\n"
        "   calls: library calls (FCALL/EVALSHA) per lookup; busiest CPU / mem: the busiest\n"
        "   master's share as a multiple of its fair share (target <= 1.5x); targets: 3 masters\n"
        "   >= 2.5x one node, 6 masters >= 4.5x"
    )


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
