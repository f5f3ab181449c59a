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

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import random
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import best_of, ratio_line
from _policies import FULL, default_scaled

from nirguard import GuardUnavailable, LookupGuard, Pseudonymiser, QuotaPolicy, SecretKey
from nirguard.testing import NIRGenerator
from tests.redis_tools import (
    Counts,
    RedisCluster,
    RedisServer,
    TcpProxy,
    missing_redis_binaries,
)

KEY = SecretKey(bytes(range(32)), "bench")
MISSING: set[str] = set()  # NIRs the fake service does not know (a miss)


def lookup(practitioner_id: str, nir: str) -> dict[str, str] | None:
    return None if nir in MISSING else {"name": "Jeanne Martin"}


async def alookup(practitioner_id: str, nir: str) -> dict[str, str] | None:
    return None if nir in MISSING else {"name": "Jeanne Martin"}


def _guard(
    policy: QuotaPolicy, storage: str = "memory://", prefix: str = "nirguard"
) -> LookupGuard:
    return LookupGuard(
        policy,
        storage=storage,
        key_prefix=prefix,
        pseudonymiser=Pseudonymiser(KEY, purpose="guard"),
    )


# -- memory store -------------------------------------------------------------------------------


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
        timer = getattr(storage, "timer", None)
        if timer is not None:  # stop limits' expiry thread first: it races reset()
            timer.cancel()
            timer.join()
        storage.reset()


def sequence_off(policy: QuotaPolicy) -> QuotaPolicy:
    """``policy`` with ``sequence`` off, everything else as set."""
    fields = {name: getattr(policy, name) for name in policy.model_fields_set}
    return QuotaPolicy(**{**fields, "sequence": None})


def guarded_time(calls: list[tuple[str, str]], policy: QuotaPolicy = FULL) -> float:
    guard = _guard(policy)
    wrapped = guard.protect(practitioner="practitioner_id", nir="nir")(lookup)

    def run() -> None:
        for who, value in calls:
            wrapped(who, value)

    return best_of(run, repeat=3)


def _one_pass(calls: list[tuple[str, str]], policy: QuotaPolicy) -> float:
    """The thread's CPU time of ``calls`` through a fresh guard (GC off): the time the
    host's other processes take the core is not in it."""
    guard = _guard(policy)
    wrapped = guard.protect(practitioner="practitioner_id", nir="nir")(lookup)
    gc.collect()
    gc.disable()
    try:
        start = time.thread_time()
        for who, value in calls:
            wrapped(who, value)
        return time.thread_time() - start
    finally:
        gc.enable()


def on_off(calls: list[tuple[str, str]], rounds: int = 6) -> tuple[float, float, float]:
    """A guarded call with ``sequence`` on (``FULL``) and off, each round through fresh
    guards, alternating which goes first (issue 17: on / off <= 1.5x): the median CPU
    time of each, and the median of the rounds' ratios."""
    off = sequence_off(FULL)
    on_times: list[float] = []
    off_times: list[float] = []
    for r in range(rounds):
        if r % 2 == 0:
            on_times.append(_one_pass(calls, FULL))
            off_times.append(_one_pass(calls, off))
        else:
            off_times.append(_one_pass(calls, off))
            on_times.append(_one_pass(calls, FULL))
    ratios = [a / b for a, b in zip(on_times, off_times, strict=True)]
    return statistics.median(on_times), statistics.median(off_times), statistics.median(ratios)


class AtScale(NamedTuple):
    """Percentiles of a guarded call with the store full, in wall time (what a caller
    waits) and in the thread's CPU time (without the time the host's other processes
    took the core: on a shared host the wall-time p99 is mostly theirs)."""

    p50: float
    p99: float
    cpu_p50: float
    cpu_p99: float
    keys: int
    #: garbage collections during the samples, by generation, and their wall time
    collections: tuple[int, int, int]
    gc_seconds: float


class _Collections:
    """Counts the garbage collections by generation, and times them (``gc.callbacks``)."""

    def __init__(self) -> None:
        self.counts = [0, 0, 0]
        self.seconds = 0.0
        self._start = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.counts[info["generation"]] += 1
            self.seconds += time.perf_counter() - self._start


def latency_at_scale(
    practitioners: int, per_practitioner: int, samples: int, policy: QuotaPolicy = FULL
) -> AtScale:
    guard = _guard(policy)
    wrapped = guard.protect(practitioner="practitioner_id", nir="nir")(lookup)
    patients = NIRGenerator(7).many(50_000)
    rng = random.Random(7)
    for p in range(practitioners):  # fill the store
        who = f"rpps-{p}"
        for _ in range(per_practitioner):
            wrapped(who, patients[rng.randrange(len(patients))])
    keys = len(guard._engine)  # type: ignore[arg-type]
    timings: list[float] = []
    cpu_timings: list[float] = []
    perf, cpu = time.perf_counter, time.thread_time
    collections = _Collections()
    gc.callbacks.append(collections)
    try:
        for _ in range(samples):
            who = f"rpps-{rng.randrange(practitioners)}"
            value = patients[rng.randrange(len(patients))]
            start, start_cpu = perf(), cpu()
            wrapped(who, value)
            cpu_timings.append(cpu() - start_cpu)
            timings.append(perf() - start)
    finally:
        gc.callbacks.remove(collections)
    timings.sort()
    cpu_timings.sort()
    p50, p99 = len(timings) // 2, int(len(timings) * 0.99)
    counts = collections.counts
    return AtScale(
        timings[p50],
        timings[p99],
        cpu_timings[p50],
        cpu_timings[p99],
        keys,
        (counts[0], counts[1], counts[2]),
        collections.seconds,
    )


def _at_scale_lines(args: argparse.Namespace, label: str, at: AtScale, base_call: float) -> None:
    print(
        f"{args.practitioners:,} practitioners x {args.per_practitioner} lookups in the memory store "
        f"({at.keys:,} keys), {label}: p50 {at.p50 * 1e3:.3f} ms, p99 {at.p99 * 1e3:.3f} ms "
        f"(target p99 <= 0.07 ms); thread CPU time p50 {at.cpu_p50 * 1e3:.3f} ms, "
        f"p99 {at.cpu_p99 * 1e3:.3f} ms; load {os.getloadavg()[0]:.1f}"
    )
    gen0, gen1, gen2 = at.collections
    print(
        f"  garbage collections during the samples: {gen0} / {gen1} / {gen2} (generations "
        f"0 / 1 / 2), {at.gc_seconds * 1e3:.1f} ms in all"
    )
    print(ratio_line(f"at scale, {label}: p50 / limits-direct call", at.p50 / base_call, "report"))
    print(ratio_line(f"at scale, {label}: p99 / limits-direct call", at.p99 / base_call, "report"))


def memory_numbers(args: argparse.Namespace, calls: list[tuple[str, str]]) -> None:
    bare = best_of(lambda: [lookup(w, v) for w, v in calls], repeat=3)
    base = limits_baseline(calls)
    ours = guarded_time(calls)
    on_cpu, off_cpu, on_off_ratio = on_off(calls)
    n = len(calls)
    base_call = base / n
    print(f"== memory store (load average {os.getloadavg()[0]:.1f})")
    print(
        f"guarded call (memory store, every quota on; best of 3 passes over the same calls, "
        f"so repeats after the first): {ours / n * 1e6:.1f} us; "
        f"limits alone for the same windows: {base_call * 1e6:.1f} us; unguarded: {bare / n * 1e6:.2f} us"
    )
    print(
        f"first pass through a fresh guard, thread CPU time (median of 6): sequence on "
        f"{on_cpu / n * 1e6:.1f} us, off {off_cpu / n * 1e6:.1f} us"
    )
    print(ratio_line("guarded / limits-direct", ours / base, "<= 1.5x"))
    print(ratio_line("guarded, sequence on / off (median of 6 rounds)", on_off_ratio, "<= 1.5x"))
    print(ratio_line("guarded / unguarded", ours / bare, "report"))
    at = latency_at_scale(args.practitioners, args.per_practitioner, args.samples_scale)
    _at_scale_lines(args, "sequence on", at, base_call)
    if args.scale_off:
        off = latency_at_scale(
            args.practitioners, args.per_practitioner, args.samples_scale, sequence_off(FULL)
        )
        _at_scale_lines(args, "sequence off", off, base_call)
        print(ratio_line("at scale: p50, sequence on / off", at.p50 / off.p50, "report"))
        print(ratio_line("at scale: p99, sequence on / off", at.p99 / off.p99, "report"))


# -- Redis: what a lookup sends ------------------------------------------------------------------


class Scenario:
    """Fresh (practitioner, NIR) pairs for one kind of lookup."""

    def __init__(self, kind: str, count: int, seed: int) -> None:
        self.kind = kind
        rng = random.Random(seed)
        values = NIRGenerator(seed).many(count)
        self.pairs = [(f"rpps-{seed}-{rng.randrange(200)}", value) for value in values]
        if kind == "miss":
            MISSING.update(values)

    def prepare(self, call: Callable[[str, str], object]) -> None:
        """Repeat lookups need the patient seen by that practitioner first."""
        if self.kind == "repeat":
            for who, value in self.pairs:
                call(who, value)


KINDS = ("new patient", "repeat", "miss")


def _scenarios(count: int, base_seed: int) -> dict[str, Scenario]:
    return {kind: Scenario(kind, count, base_seed + i) for i, kind in enumerate(KINDS)}


def _commandstats(info: dict[str, Any]) -> dict[str, tuple[int, int]]:
    return {
        key.removeprefix("cmdstat_").upper().replace("|", " "): (
            int(value["calls"]),
            int(value["usec"]),
        )
        for key, value in info.items()
        if key.startswith("cmdstat_")
    }


def _cpu(info: dict[str, Any]) -> float:
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


class ServerStats:
    """INFO commandstats + cpu deltas over one or more nodes (a cluster: all masters)."""

    def __init__(self, clients: list[Any]) -> None:
        self._clients = clients

    def snapshot(self) -> tuple[Counter[str], Counter[str], float]:
        calls: Counter[str] = Counter()
        usec: Counter[str] = Counter()
        cpu = 0.0
        for client in self._clients:
            for name, (c, u) in _commandstats(client.info("commandstats")).items():
                calls[name] += c
                usec[name] += u
            cpu += _cpu(client.info("cpu"))
        return calls, usec, cpu

    @staticmethod
    def delta(
        before: tuple[Counter[str], Counter[str], float],
        after: tuple[Counter[str], Counter[str], float],
    ) -> tuple[Counter[str], Counter[str], float]:
        calls = after[0] - before[0]
        usec = after[1] - before[1]
        # The INFO calls of the snapshots themselves are not the guard's.
        calls.pop("INFO", None)
        usec.pop("INFO", None)
        return calls, usec, after[2] - before[2]


@contextmanager
def _redis_target(url: str | None) -> Iterator[tuple[str, str]]:
    """(url, description): the given Redis, or a private redis-server for this run."""
    if url:
        yield url, "the Redis given by --redis / NIRGUARD_TEST_REDIS_URL (shared counters!)"
        return
    with RedisServer() as server:
        version = server.info("server").get("redis_version", "?")
        yield server.url(0), f"private redis-server {version} on 127.0.0.1:{server.port}"


def _fmt_names(names: Counter[str], n: int) -> str:
    return ", ".join(f"{name} {count / n:.1f}" for name, count in names.most_common())


Measured = tuple[
    Counts, tuple[Counter[str], Counter[str], float], tuple[Counter[str], Counter[str], float]
]


def _wire_sync(
    guard: LookupGuard, scenario: Scenario, proxy: TcpProxy, stats: ServerStats
) -> Measured:
    call = guard.protect(practitioner="practitioner_id", nir="nir")(lookup)
    call("warm-up", NIRGenerator(9).generate())  # connection set-up is not the lookup's
    scenario.prepare(call)
    before_wire, before_srv = proxy.counts(), stats.snapshot()
    for who, value in scenario.pairs:
        call(who, value)
    return proxy.counts() - before_wire, before_srv, stats.snapshot()


def _wire_async(
    guard: LookupGuard, scenario: Scenario, proxy: TcpProxy, stats: ServerStats
) -> Measured:
    call = guard.protect(practitioner="practitioner_id", nir="nir")(alookup)

    async def run() -> Measured:
        await call("warm-up", NIRGenerator(9).generate())
        for who, value in scenario.pairs if scenario.kind == "repeat" else ():
            await call(who, value)
        before_wire, before_srv = proxy.counts(), stats.snapshot()
        for who, value in scenario.pairs:
            await call(who, value)
        result = proxy.counts() - before_wire, before_srv, stats.snapshot()
        await guard.aclose()  # its connections belong to this event loop
        return result

    return asyncio.run(run())


def count_round_trips(url: str, policy: QuotaPolicy, label: str, count: int) -> dict[str, float]:
    """Round trips and commands per lookup, counted by the proxy, checked against the server."""
    import redis

    from tests.redis_tools import redis_url_via

    host_port = url.split("://", 1)[1].split("/", 1)[0].rpartition("@")[2]
    host, _, port = host_port.rpartition(":")
    server = redis.Redis.from_url(url)
    stats = ServerStats([server])
    trips: dict[str, float] = {}
    print(f"-- {label}: per lookup, on the wire (proxy) and on the server (INFO deltas)")
    print(
        f"{'lookup':<20}{'round trips':>12}{'commands':>10}{'in server':>11}{'Redis usec':>11}"
        f"{'Redis CPU':>10}   commands sent"
    )
    with TcpProxy((host or "127.0.0.1", int(port or 6379))) as proxy:
        proxied = redis_url_via(url, proxy.port)
        prefix = f"bench-rt-{os.getpid()}-{time.monotonic_ns()}"
        for mode in ("sync", "async"):
            guard = _guard(policy, proxied, prefix + mode)
            scenarios = _scenarios(count, 100 if mode == "sync" else 200)
            for kind in KINDS:
                measure = _wire_sync if mode == "sync" else _wire_async
                wire, before_srv, after_srv = measure(guard, scenarios[kind], proxy, stats)
                calls, usec, cpu = ServerStats.delta(before_srv, after_srv)
                n = len(scenarios[kind].pairs)
                sent = set(wire.names)
                server_side = sum(calls[name] for name in sent)
                redis_usec = sum(usec[name] for name in sent)
                # cross-check: scripts are only ever sent by the client, so their counts must be
                # equal; other commands the proxy saw may also run inside scripts (>=).
                agree = all(
                    calls[name] == wire.names[name]
                    if name.startswith(("EVAL", "FCALL"))
                    else calls[name] >= wire.names[name]
                    for name in sent
                )
                trips[f"{kind} {mode}"] = wire.round_trips / n
                print(
                    f"{kind + ' (' + mode + ')':<20}{wire.round_trips / n:>12.1f}"
                    f"{wire.commands / n:>10.1f}{sum(calls.values()) / n:>11.1f}"
                    f"{redis_usec / n:>11.0f}{cpu / n * 1e6:>10.0f}   {_fmt_names(wire.names, n)}"
                    + ("" if agree and server_side >= wire.commands else "   (INFO disagrees)")
                )
            guard.close()
        _cleanup(server, prefix)
    server.close()
    print(
        "   round trips: client->server flights answered by Redis (a pipeline is one); commands:\n"
        "   RESP commands sent; in server: commands Redis ran, those inside scripts included\n"
        "   (INFO commandstats; its EVALSHA/EVAL counts must equal the proxy's, or the row says\n"
        "   'INFO disagrees'); Redis usec: commandstats usec of the commands sent; Redis CPU: the\n"
        "   server's used_cpu_user+sys delta per lookup (usec; networking included; coarse)"
    )
    return trips


def _cleanup(client: Any, prefix: str) -> None:
    keys = list(client.scan_iter(match=f"*{prefix}*", count=1000))
    for i in range(0, len(keys), 1000):
        client.delete(*keys[i : i + 1000])


def count_cluster(policy: QuotaPolicy, label: str, count: int) -> None:
    why = missing_redis_binaries(cluster=True)
    if why is not None:
        print(f"-- Redis Cluster: skipped ({why})")
        return
    import redis

    with RedisCluster() as cluster:
        clients = [redis.Redis(port=node.port) for node in cluster.nodes]
        stats = ServerStats(clients)
        guard = _guard(policy, cluster.url, f"bench-cl-{os.getpid()}")
        call = guard.protect(practitioner="practitioner_id", nir="nir")(lookup)
        call("warm-up", NIRGenerator(9).generate())
        print(f"-- {label} on a local 3-master Redis Cluster (INFO deltas summed over the masters)")
        # commandstats counts the commands a script runs too: only script calls are the
        # client's own (the guard sends nothing else on a lookup)
        sent_names = ("EVALSHA", "EVAL", "FCALL")
        for kind, scenario in _scenarios(count, 300).items():
            scenario.prepare(call)
            before = stats.snapshot()
            for who, value in scenario.pairs:
                call(who, value)
            calls, _, _ = ServerStats.delta(before, stats.snapshot())
            n = len(scenario.pairs)
            top = Counter({k: v for k, v in calls.items() if k in sent_names})
            print(
                f"{kind + ' (sync)':<20}{sum(top.values()) / n:>6.1f} client calls "
                f"({_fmt_names(top, n)}; {sum(calls.values()) / n:.1f} commands in server, "
                "those inside the scripts included)"
            )
        guard.close()
        for client in clients:
            client.close()


# -- Redis: time per lookup vs PING ---------------------------------------------------------


def _summary(samples: list[float]) -> tuple[float, float]:
    samples = sorted(samples)
    return statistics.median(samples), samples[min(len(samples) - 1, int(len(samples) * 0.99))]


def latency_vs_ping(
    url: str, policy: QuotaPolicy, samples: int, trips: dict[str, float]
) -> dict[str, float]:
    """Median guarded lookup / median PING, each lookup interleaved with a PING, and with as
    many PINGs in a row as the lookup has round trips (``trips``, from the proxy): on a
    loaded host every round trip is a chance to lose the CPU, so the lookup is also compared
    with that burst, which pays the same."""
    import redis
    import redis.asyncio as aredis

    prefix = f"bench-lat-{os.getpid()}-{time.monotonic_ns()}"
    ratios: dict[str, float] = {}
    perf = time.perf_counter
    print(f"-- time per lookup, {samples} of each, interleaved with a PING on its own connection")
    print(
        f"{'':<22}{'median':>10}{'p99':>10}{'median / PING':>15}"
        f"{'PINGs in a row (as many as round trips)':>44}"
    )

    ping_client = redis.Redis.from_url(url)
    ping_client.ping()
    guard = _guard(policy, url, prefix + "s")
    call = guard.protect(practitioner="practitioner_id", nir="nir")(lookup)
    call("warm-up", NIRGenerator(9).generate())
    mem_guard = _guard(policy)
    mem_call = mem_guard.protect(practitioner="practitioner_id", nir="nir")(lookup)
    pings: list[float] = []
    rows: dict[str, tuple[float, float]] = {}
    mem_rows: dict[str, float] = {}
    bursts: dict[str, tuple[int, float]] = {}
    for kind, scenario in _scenarios(samples, 400).items():
        scenario.prepare(call)
        scenario.prepare(mem_call)
        timings = []
        mem = []
        burst = []
        k = max(1, round(trips.get(f"{kind} sync", 1)))
        for who, value in scenario.pairs:
            start = perf()
            ping_client.ping()
            middle = perf()
            call(who, value)
            end = perf()
            mem_call(who, value)
            after_mem = perf()
            for _ in range(k):
                ping_client.ping()
            burst.append(perf() - after_mem)
            mem.append(after_mem - end)
            pings.append(middle - start)
            timings.append(end - middle)
        rows[kind] = _summary(timings)
        mem_rows[kind] = statistics.median(mem)
        bursts[kind] = (k, statistics.median(burst))
    ping = _summary(pings)
    print(f"{'PING (sync)':<22}{ping[0] * 1e6:>8.0f}us{ping[1] * 1e6:>8.0f}us")
    for kind, (median, p99) in rows.items():
        ratios[f"{kind} sync"] = median / ping[0]
        k, burst_median = bursts[kind]
        print(
            f"{kind + ' (sync)':<22}{median * 1e6:>8.0f}us{p99 * 1e6:>8.0f}us{median / ping[0]:>14.1f}x"
            f"{f'{k} PINGs {burst_median * 1e6:.0f}us: lookup = {median / burst_median:.2f}x':>44}"
            + ("   (target <= 3x PING after issue 9)" if kind == "new patient" else "")
        )
    guard.close()
    _cleanup(ping_client, prefix)
    new = rows["new patient"][0]
    print(
        "   same lookups on the memory store (guard logic, HMAC, audit): median "
        + ", ".join(f"{k} {v * 1e6:.0f}us" for k, v in mem_rows.items())
    )
    print(
        f"   new patient on Redis {new * 1e6:.0f}us = guard logic ~{mem_rows['new patient'] * 1e6:.0f}us"
        f" + store ~{(new - mem_rows['new patient']) * 1e6:.0f}us"
        f" (= {(new - mem_rows['new patient']) / ping[0]:.1f} PINGs)"
    )

    async def run_async() -> None:
        aping = aredis.Redis.from_url(url)
        await aping.ping()
        aguard = _guard(policy, url, prefix + "a")
        acall = aguard.protect(practitioner="practitioner_id", nir="nir")(alookup)
        await acall("warm-up", NIRGenerator(9).generate())
        apings: list[float] = []
        arows: dict[str, tuple[float, float]] = {}
        for kind, scenario in _scenarios(samples, 500).items():
            for who, value in scenario.pairs if kind == "repeat" else ():
                await acall(who, value)
            timings = []
            for who, value in scenario.pairs:
                start = perf()
                await aping.ping()
                middle = perf()
                await acall(who, value)
                end = perf()
                apings.append(middle - start)
                timings.append(end - middle)
            arows[kind] = _summary(timings)
        aping_s = _summary(apings)
        print(f"{'PING (async)':<22}{aping_s[0] * 1e6:>8.0f}us{aping_s[1] * 1e6:>8.0f}us")
        for kind, (median, p99) in arows.items():
            ratios[f"{kind} async"] = median / aping_s[0]
            print(
                f"{kind + ' (async)':<22}{median * 1e6:>8.0f}us{p99 * 1e6:>8.0f}us"
                f"{median / aping_s[0]:>14.1f}x"
            )
        await aguard.aclose()
        await aping.aclose()

    asyncio.run(run_async())
    _cleanup(ping_client, prefix)
    ping_client.close()
    return ratios


def stalled_redis() -> None:
    why = missing_redis_binaries()
    if why is not None:
        print(f"-- paused Redis: skipped ({why})")
        return
    with RedisServer() as server:
        guard = _guard(FULL, server.url())
        wrapped = guard.protect(practitioner="practitioner_id", nir="nir")(lookup)
        values = NIRGenerator(3).many(6)
        wrapped("dr", values[0])
        worst = 0.0
        with server.paused():
            for value in values[1:]:
                start = time.perf_counter()
                try:
                    wrapped("dr", value)
                except GuardUnavailable:
                    pass
                worst = max(worst, time.perf_counter() - start)
        guard.close()
    print(f"-- paused Redis (SIGSTOP): slowest fail-closed lookup {worst:.3f} s (target <= 0.5 s)")


def redis_numbers(args: argparse.Namespace) -> None:
    policies = [
        ("default policy (quotas x1e5)", default_scaled()),
        ("FULL policy (portal quotas on)", FULL),
    ]
    with _redis_target(args.redis) as (url, description):
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
