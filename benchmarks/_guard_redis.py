"""``bench_guard.py``'s Redis counts: what a lookup sends, counted on the wire by a TCP
proxy in front of Redis (round trips, RESP commands) and cross-checked with the server's
``INFO commandstats`` and ``used_cpu`` deltas, sync and async; on a local three-master
Redis Cluster, counted from every master's ``INFO`` (a proxy cannot sit in front of a
cluster). Also the Redis a run measures (:func:`redis_target`) and its clean-up.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from _guard_calls import KINDS, Scenario, alookup, lookup, make_guard, scenarios

from nirguard import LookupGuard, QuotaPolicy
from nirguard.testing import NIRGenerator
from tests.redis_tools import (
    Counts,
    RedisCluster,
    RedisServer,
    TcpProxy,
    missing_redis_binaries,
)

__all__ = [
    "ServerStats",
    "cleanup",
    "count_cluster",
    "count_round_trips",
    "redis_target",
]

Snapshot = tuple[Counter[str], Counter[str], float]
"""INFO commandstats calls and usec by command, and the server's CPU seconds."""


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

    def snapshot(self) -> Snapshot:
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
    def delta(before: Snapshot, after: Snapshot) -> Snapshot:
        calls = after[0] - before[0]
        usec = after[1] - before[1]
        # The INFO calls of the snapshots themselves are not the guard's.
        calls.pop("INFO", None)
        usec.pop("INFO", None)
        return calls, usec, after[2] - before[2]


@contextmanager
def redis_target(url: str | None) -> Iterator[tuple[str, str]]:
    """(url, description): the given Redis, or a private redis-server for this run."""
    if url:
        yield url, "the Redis given by --redis / NIRGUARD_TEST_REDIS_URL (shared counters!)"
        return
    with RedisServer() as server:
        version = server.info("server").get("redis_version", "?")
        yield server.url(0), f"private redis-server {version} on 127.0.0.1:{server.port}"


def cleanup(client: Any, prefix: str) -> None:
    """Delete the keys a measurement left under ``prefix``."""
    keys = list(client.scan_iter(match=f"*{prefix}*", count=1000))
    for i in range(0, len(keys), 1000):
        client.delete(*keys[i : i + 1000])


def _fmt_names(names: Counter[str], n: int) -> str:
    return ", ".join(f"{name} {count / n:.1f}" for name, count in names.most_common())


Measured = tuple[Counts, Snapshot, Snapshot]


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


def _wire_row(row: str, measured: Measured, n: int) -> float:
    """Print one row of the round-trip table; return the round trips per lookup."""
    wire, before_srv, after_srv = measured
    calls, usec, cpu = ServerStats.delta(before_srv, after_srv)
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
    print(
        f"{row:<20}{wire.round_trips / n:>12.1f}"
        f"{wire.commands / n:>10.1f}{sum(calls.values()) / n:>11.1f}"
        f"{redis_usec / n:>11.0f}{cpu / n * 1e6:>10.0f}   {_fmt_names(wire.names, n)}"
        + ("" if agree and server_side >= wire.commands else "   (INFO disagrees)")
    )
    return wire.round_trips / n


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
            guard = make_guard(policy, proxied, prefix + mode)
            by_kind = scenarios(count, 100 if mode == "sync" else 200)
            for kind in KINDS:
                measure = _wire_sync if mode == "sync" else _wire_async
                measured = measure(guard, by_kind[kind], proxy, stats)
                row = kind + " (" + mode + ")"
                trips[f"{kind} {mode}"] = _wire_row(row, measured, len(by_kind[kind].pairs))
            guard.close()
        cleanup(server, prefix)
    server.close()
    print(
        "   round trips: client->server flights answered by Redis (a pipeline is one); commands:\n"
        "   RESP commands sent; in server: commands Redis ran, those inside scripts included\n"
        "   (INFO commandstats; its EVALSHA/EVAL counts must equal the proxy's, or the row says\n"
        "   'INFO disagrees'); Redis usec: commandstats usec of the commands sent; Redis CPU: the\n"
        "   server's used_cpu_user+sys delta per lookup (usec; networking included; coarse)"
    )
    return trips


def count_cluster(policy: QuotaPolicy, label: str, count: int) -> None:
    """Client calls and commands in the servers per lookup on a local Redis Cluster."""
    why = missing_redis_binaries(cluster=True)
    if why is not None:
        print(f"-- Redis Cluster: skipped ({why})")
        return
    import redis

    with RedisCluster() as cluster:
        clients = [redis.Redis(port=node.port) for node in cluster.nodes]
        stats = ServerStats(clients)
        guard = make_guard(policy, cluster.url, f"bench-cl-{os.getpid()}")
        call = guard.protect(practitioner="practitioner_id", nir="nir")(lookup)
        call("warm-up", NIRGenerator(9).generate())
        print(f"-- {label} on a local 3-master Redis Cluster (INFO deltas summed over the masters)")
        # commandstats counts the commands a script runs too: only script calls are the
        # client's own (the guard sends nothing else on a lookup)
        sent_names = ("EVALSHA", "EVAL", "FCALL")
        for kind, scenario in scenarios(count, 300).items():
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
