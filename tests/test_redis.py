"""The Redis engine under faults, on real servers: a paused server and the deadline,
connections cut mid-decision and cancelled tasks with clients that retry, app hosts
with skewed clocks, what counts as an outage, and one round trip per lookup."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from typing import Any

import pytest

from nirguard import (
    AuditEvent,
    GuardUnavailable,
    InvalidPractitioner,
    LookupDenied,
    LookupGuard,
    Pseudonymiser,
    QuotaPolicy,
)
from nirguard.testing import NIRGenerator
from tests.guard_helpers import KEY
from tests.redis_tools import RedisServer, TcpProxy

NIRS = NIRGenerator(seed=909).many(200)
QUOTA = 19


def guard_on(url: str, policy: QuotaPolicy, **kwargs: Any) -> LookupGuard:
    kwargs.setdefault("pseudonymiser", Pseudonymiser(KEY, purpose="guard"))
    kwargs.setdefault("key_prefix", "faults")
    return LookupGuard(policy, storage=url, **kwargs)


def patients_counted(server: RedisServer) -> int:
    """New patients the store holds for practitioner "dr" (one record each)."""
    import redis

    client = redis.Redis.from_url(server.url())
    try:
        return len(list(client.scan_iter(match="faults:{dr}:patient:*", count=1000)))
    finally:
        client.close()


# -- the deadline ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["sync", "async"])
def test_a_paused_server_is_refused_within_the_deadline(
    private_redis: RedisServer, path: str
) -> None:
    events: list[AuditEvent] = []
    guard = guard_on(private_redis.url(), QuotaPolicy(), audit=events.append, deadline=0.3)
    with guard.lookup("dr", NIRS[0]):
        pass  # connected, library loaded
    timings = []
    with private_redis.paused():
        for value in NIRS[1:4]:
            start = time.monotonic()
            with pytest.raises(GuardUnavailable):
                if path == "sync":
                    with guard.lookup("dr", value):
                        pass
                else:

                    async def one(v: str = value) -> None:
                        async with guard.lookup("dr", v):
                            pass

                    asyncio.run(one())
            timings.append(time.monotonic() - start)
    assert max(timings) < 0.3 + 0.25  # the deadline, and some scheduling slack on a busy host
    assert [e.outcome for e in events[-3:]] == ["unavailable"] * 3
    with guard.lookup("dr", NIRS[5]):
        pass  # the store answers again: decided normally
    guard.close()


def test_fail_open_lets_through_only_outages(private_redis: RedisServer) -> None:
    events: list[AuditEvent] = []
    guard = guard_on(
        private_redis.url(), QuotaPolicy(), audit=events.append, fail_open=True, deadline=0.3
    )
    with private_redis.paused(), guard.lookup("dr", NIRS[0]) as lookup:
        assert lookup.outcome is None  # unguarded
    assert events[-1].outcome == "unguarded"
    with pytest.raises(InvalidPractitioner):  # a lone surrogate is bad input, not an outage
        with guard.lookup("dr\ud800", NIRS[1]):
            pass
    import redis

    client = redis.Redis.from_url(private_redis.url())
    client.set("faults:{wrong}:account", "garbage")  # a corrupt record: a bug, not an outage
    with pytest.raises(redis.ResponseError), guard.lookup("wrong", NIRS[2]):
        pass
    client.close()
    guard.close()


# -- cut connections and cancelled tasks ----------------------------------------------------------


def _retrying_client(guard: LookupGuard, values: list[str], attempts: int) -> tuple[set[str], int]:
    """A client that retries every refusal of the store until it gets an answer;
    the patients it got, and how many times the store failed it."""
    returned: set[str] = set()
    failures = 0
    for value in values:
        for _ in range(attempts):
            try:
                with guard.lookup("dr", value) as lookup:
                    returned.add(str(lookup.patient))
                break
            except GuardUnavailable:
                failures += 1
            except LookupDenied:
                break
    return returned, failures


@pytest.mark.parametrize("when", ["request", "reply", "either"])
def test_cut_connections_never_let_more_through_nor_leave_half_a_decision(
    private_redis: RedisServer, redis_proxy: TcpProxy, when: str
) -> None:
    policy = QuotaPolicy.only(distinct_patients=f"{QUOTA}/day", break_glass=None)
    guard = guard_on(redis_proxy.url(private_redis.url()), policy, deadline=0.5)
    redis_proxy.cut_randomly(0.3, when=when)  # type: ignore[arg-type]
    returned, failures = _retrying_client(guard, NIRS[:40], attempts=20)
    redis_proxy.stop_cutting()
    assert failures > 5  # the cuts happened, mid-decision
    assert len(returned) <= QUOTA
    counted = patients_counted(private_redis)
    remaining = guard.status("dr").remaining["distinct_patients"]
    assert counted == QUOTA - remaining  # every patient marked is counted, and only those
    assert len(returned) <= counted  # a lost reply consumed its counters: never the reverse
    guard.close()


def test_cancelled_tasks_with_retries_keep_the_counters_exact(
    private_redis: RedisServer,
) -> None:
    policy = QuotaPolicy.only(distinct_patients=f"{QUOTA}/day", break_glass=None)
    guard = guard_on(private_redis.url(), policy)
    rng = random.Random(3)
    returned: set[str] = set()

    async def attempt(value: str) -> bool:
        async with guard.lookup("dr", value) as lookup:
            returned.add(str(lookup.patient))
        return True

    async def main() -> None:
        pending = list(NIRS[:40])
        while pending:
            tasks = [asyncio.ensure_future(attempt(v)) for v in pending]
            await asyncio.sleep(rng.choice([0, 0.0001, 0.001]))
            for task in tasks:
                if rng.random() < 0.4:
                    task.cancel()
            results = await asyncio.gather(*tasks, return_exceptions=True)
            pending = [
                v
                for v, r in zip(pending, results, strict=True)
                if isinstance(r, asyncio.CancelledError)
            ]

    asyncio.run(main())
    assert len(returned) <= QUOTA
    counted = patients_counted(private_redis)
    assert counted == QUOTA - guard.status("dr").remaining["distinct_patients"]
    assert len(returned) <= counted
    guard.close()


# -- clocks ---------------------------------------------------------------------------------------


def test_hosts_with_skewed_clocks_share_exact_windows(private_redis: RedisServer) -> None:
    policy = QuotaPolicy.only(lookups="3/minute")
    ahead = guard_on(private_redis.url(), policy, clock=lambda: time.time() + 3600)
    behind = guard_on(private_redis.url(), policy, clock=lambda: time.time() - 86400)
    outcomes = []
    for guard in (ahead, behind, ahead, behind, ahead):
        try:
            with guard.lookup("dr", NIRS[0]):
                outcomes.append("allowed")
        except LookupDenied as exc:
            outcomes.append(exc.code)
    assert outcomes == ["allowed", "allowed", "allowed", "lookups", "lookups"]
    retry = behind.status("dr").locked_until
    assert retry is None
    ahead.close()
    behind.close()


# -- round trips ----------------------------------------------------------------------------------


def test_one_round_trip_per_lookup_and_one_per_miss(
    private_redis: RedisServer, redis_proxy: TcpProxy
) -> None:
    guard = guard_on(redis_proxy.url(private_redis.url()), QuotaPolicy())
    with guard.lookup("dr", NIRS[0]):
        pass  # connection and library load
    redis_proxy.reset_counts()
    with guard.lookup("dr", NIRS[1]):
        pass  # a new patient
    with guard.lookup("dr", NIRS[1]):
        pass  # a repeat
    assert redis_proxy.counts().round_trips == 2
    redis_proxy.reset_counts()
    with guard.lookup("dr", NIRS[2], is_miss=lambda r: True) as lookup:
        lookup.record(None)
    assert redis_proxy.counts().round_trips == 2  # the decision, then the miss
    guard.close()


def test_async_lookups_are_pipelined(private_redis: RedisServer, redis_proxy: TcpProxy) -> None:
    guard = guard_on(redis_proxy.url(private_redis.url()), QuotaPolicy.only(lookups="1000/hour"))

    async def main() -> None:
        async with guard.lookup("warm", NIRS[0]):
            pass
        redis_proxy.reset_counts()

        async def one(i: int) -> None:
            async with guard.lookup(f"dr{i}", NIRS[i]):
                pass

        await asyncio.gather(*(one(i) for i in range(50)))

    asyncio.run(main())
    counts = redis_proxy.counts()
    assert counts.commands == 50
    assert counts.round_trips < 50  # fewer flights than lookups: they shared pipelines
    with contextlib.suppress(Exception):
        guard.close()
