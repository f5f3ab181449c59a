"""``bench_guard.py``'s Redis timings: a guarded lookup against a PING measured in the same
run (each lookup interleaved with one, sync and async), against a burst of as many PINGs
as the lookup has round trips, and split into the guard's own work (the same lookups on
the memory store) and the store's; then how long a lookup takes to fail closed on a
paused (SIGSTOP) Redis.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

from _guard_calls import Scenario, alookup, lookup, make_guard, scenarios
from _guard_redis import cleanup
from _policies import FULL

from nirguard import GuardUnavailable, QuotaPolicy
from nirguard.testing import NIRGenerator
from tests.redis_tools import RedisServer, missing_redis_binaries

__all__ = ["latency_vs_ping", "stalled_redis"]

Call = Callable[[str, str], object]


def _summary(samples: list[float]) -> tuple[float, float]:
    samples = sorted(samples)
    return statistics.median(samples), samples[min(len(samples) - 1, int(len(samples) * 0.99))]


def _interleaved(
    scenario: Scenario, call: Call, mem_call: Call, ping_client: Any, k: int, pings: list[float]
) -> tuple[list[float], list[float], list[float]]:
    """Per lookup: a PING (appended to ``pings``), the lookup on Redis, the same on the
    memory store, then ``k`` PINGs in a row: (Redis lookups, memory lookups, bursts)."""
    perf = time.perf_counter
    timings: list[float] = []
    mem: list[float] = []
    burst: list[float] = []
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
    return timings, mem, burst


def _sync_rows(
    url: str,
    policy: QuotaPolicy,
    samples: int,
    trips: dict[str, float],
    ping_client: Any,
    prefix: str,
) -> dict[str, float]:
    """Time and print the sync rows, then the memory store's split; return median / PING."""
    guard = make_guard(policy, url, prefix + "s")
    call = guard.protect(practitioner="practitioner_id", nir="nir")(lookup)
    call("warm-up", NIRGenerator(9).generate())
    mem_guard = make_guard(policy)
    mem_call = mem_guard.protect(practitioner="practitioner_id", nir="nir")(lookup)
    pings: list[float] = []
    rows: dict[str, tuple[float, float]] = {}
    mem_rows: dict[str, float] = {}
    bursts: dict[str, tuple[int, float]] = {}
    for kind, scenario in scenarios(samples, 400).items():
        scenario.prepare(call)
        scenario.prepare(mem_call)
        k = max(1, round(trips.get(f"{kind} sync", 1)))
        timings, mem, burst = _interleaved(scenario, call, mem_call, ping_client, k, pings)
        rows[kind] = _summary(timings)
        mem_rows[kind] = statistics.median(mem)
        bursts[kind] = (k, statistics.median(burst))
    ping = _summary(pings)
    ratios: dict[str, float] = {}
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
    cleanup(ping_client, prefix)
    _split_lines(rows["new patient"][0], mem_rows, ping[0])
    return ratios


def _split_lines(new: float, mem_rows: dict[str, float], ping: float) -> None:
    """Where a new patient's time on Redis goes: the guard's own work and the store."""
    print(
        "   same lookups on the memory store (guard logic, HMAC, audit): median "
        + ", ".join(f"{k} {v * 1e6:.0f}us" for k, v in mem_rows.items())
    )
    print(
        f"   new patient on Redis {new * 1e6:.0f}us = guard logic ~{mem_rows['new patient'] * 1e6:.0f}us"
        f" + store ~{(new - mem_rows['new patient']) * 1e6:.0f}us"
        f" (= {(new - mem_rows['new patient']) / ping:.1f} PINGs)"
    )


async def _async_rows(
    url: str, policy: QuotaPolicy, samples: int, prefix: str, ratios: dict[str, float]
) -> None:
    """Time and print the async rows (each lookup interleaved with a PING) into ``ratios``."""
    import redis.asyncio as aredis

    perf = time.perf_counter
    aping = aredis.Redis.from_url(url)
    await aping.ping()
    aguard = make_guard(policy, url, prefix + "a")
    acall = aguard.protect(practitioner="practitioner_id", nir="nir")(alookup)
    await acall("warm-up", NIRGenerator(9).generate())
    apings: list[float] = []
    arows: dict[str, tuple[float, float]] = {}
    for kind, scenario in scenarios(samples, 500).items():
        for who, value in scenario.pairs if kind == "repeat" else ():
            await acall(who, value)
        timings: list[float] = []
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


def latency_vs_ping(
    url: str, policy: QuotaPolicy, samples: int, trips: dict[str, float]
) -> dict[str, float]:
    """Median guarded lookup / median PING, each lookup interleaved with a PING, and with as
    many PINGs in a row as the lookup has round trips (``trips``, from the proxy): on a
    loaded host every round trip is a chance to lose the CPU, so the lookup is also compared
    with that burst, which pays the same."""
    import redis

    prefix = f"bench-lat-{os.getpid()}-{time.monotonic_ns()}"
    print(f"-- time per lookup, {samples} of each, interleaved with a PING on its own connection")
    print(
        f"{'':<22}{'median':>10}{'p99':>10}{'median / PING':>15}"
        f"{'PINGs in a row (as many as round trips)':>44}"
    )
    ping_client = redis.Redis.from_url(url)
    ping_client.ping()
    ratios = _sync_rows(url, policy, samples, trips, ping_client, prefix)
    asyncio.run(_async_rows(url, policy, samples, prefix, ratios))
    cleanup(ping_client, prefix)
    ping_client.close()
    return ratios


def stalled_redis() -> None:
    """Print how long the slowest lookup takes to fail closed on a paused Redis."""
    why = missing_redis_binaries()
    if why is not None:
        print(f"-- paused Redis: skipped ({why})")
        return
    with RedisServer() as server:
        guard = make_guard(FULL, server.url())
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
