"""The guard on real Redis: exact quotas across processes and tasks, shared state, no NIR
in the store; and under faults: a paused server and the deadline,
connections cut mid-decision and cancelled tasks with clients that retry, app hosts
with skewed clocks, what counts as an outage, and one round trip per lookup."""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import random
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from nirguard import (
    AuditEvent,
    EnumerationSuspected,
    GuardUnavailable,
    InvalidPractitioner,
    LookupDenied,
    LookupGuard,
    PractitionerLocked,
    Pseudonymiser,
    QuotaExceeded,
    QuotaPolicy,
    nir,
)
from nirguard.testing import NIRGenerator
from tests.conftest import find_nirs
from tests.guard_helpers import KEY, only, redis_worker
from tests.redis_helpers import recent_entries
from tests.redis_tools import RedisServer, TcpProxy

NIRS = NIRGenerator(seed=909).many(200)
OLD_NIRS = NIRGenerator(seed=99).many(600)
QUOTA = 19


def guard_on(url: str, policy: QuotaPolicy, **kwargs: Any) -> LookupGuard:
    kwargs.setdefault("pseudonymiser", Pseudonymiser(KEY, purpose="guard"))
    kwargs.setdefault("key_prefix", "faults")
    return LookupGuard(policy, storage=url, **kwargs)


def patients_counted(server: RedisServer) -> int:
    """New patients the store holds for practitioner "dr" (entries of its recent record)."""
    import redis

    client = redis.Redis.from_url(server.url())
    try:
        return recent_entries(client, "faults:{dr}:r")[0]
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
    # a lone surrogate is bad input, not an outage
    with pytest.raises(InvalidPractitioner), guard.lookup("dr\ud800", NIRS[1]):
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
    assert counts.names["FCALL"] == 50
    assert counts.round_trips < 50  # fewer flights than lookups: they shared pipelines
    with contextlib.suppress(Exception):
        guard.close()


# -- quotas shared between processes, and what the store holds ---------------------------------


@pytest.fixture
def prefix(redis_prefix: str) -> str:
    """A key namespace of its own, under the run's prefix; its keys are deleted afterwards."""
    return redis_prefix


def guard_for(url: str, prefix: str, policy: object = None, **kwargs: object) -> LookupGuard:
    return LookupGuard(
        policy or only(lookups="25/hour"),  # type: ignore[arg-type]
        storage=url,
        key_prefix=prefix,
        pseudonymiser=Pseudonymiser(KEY, purpose="guard"),
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.mark.redis
def test_exact_quota_across_processes(redis_url: str, prefix: str) -> None:
    quota = 37
    chunks = [OLD_NIRS[i::6][:40] for i in range(6)]  # 240 attempts from 6 processes
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(6) as pool:
        allowed = pool.map(redis_worker, [(redis_url, prefix, quota, chunk) for chunk in chunks])
    assert sum(allowed) == quota


@pytest.mark.redis
def test_exact_quota_async_concurrent(redis_url: str, prefix: str) -> None:
    guard = guard_for(redis_url, prefix, only(lookups="20/hour"))
    calls: list[str] = []

    @guard.protect(practitioner="who", nir="value")
    async def lookup(who: str, value: str) -> dict[str, str]:
        calls.append(value)
        return {"ok": "1"}

    async def attempt(value: str) -> bool:
        try:
            await lookup("shared", value)
        except QuotaExceeded:
            return False
        return True

    async def main() -> list[bool]:
        try:
            return await asyncio.gather(*(attempt(v) for v in OLD_NIRS[:80]))
        finally:
            await guard.aclose()

    results = asyncio.run(main())
    assert sum(results) == 20
    assert len(calls) == 20


@pytest.mark.redis
def test_lockout_and_detection_state_is_shared(redis_url: str, prefix: str) -> None:
    policy = only(cohort="3/day", lookups="1000/day")
    first = guard_for(redis_url, prefix, policy)
    second = guard_for(redis_url, prefix, policy)  # another worker of the same portal
    body = "1850578006"
    walked = [f"{body}{o:03d}{nir.compute_key(f'{body}{o:03d}'):02d}" for o in range(1, 8)]
    for value in walked[:2]:
        with first.lookup("bot", value):
            pass
    with second.lookup("bot", walked[2]):
        pass
    with pytest.raises(EnumerationSuspected), second.lookup("bot", walked[3]):
        pass
    with pytest.raises(PractitionerLocked), first.lookup("bot", OLD_NIRS[0]):
        pass
    assert first.status("bot").locked
    first.unlock("bot")
    assert not second.status("bot").locked


@pytest.mark.redis
def test_store_holds_no_nir_and_no_prefix(redis_url: str, prefix: str) -> None:
    import redis

    guard = guard_for(
        redis_url,
        prefix,
        only(
            lookups="100/hour",
            distinct_patients="100/day",
            cohort="50/day",
            portal_cohort="50/day",
            misses="50/hour",
            miss_ratio=0.95,
            miss_ratio_min_lookups=50,
        ),
    )
    used = OLD_NIRS[:30]
    for value in used:
        with guard.lookup("dr-1", nir.format(value)) as lookup:
            lookup.record(None)
    client = redis.Redis.from_url(redis_url)
    keys = [k.decode() for k in client.scan_iter(match=f"*{prefix}*", count=1000)]
    values = [client.get(k) or b"" for k in keys]
    assert recent_entries(client, next(k for k in keys if k.endswith(":r")))[0] == 30
    client.close()
    assert len(keys) >= 2  # the account, its recent patients
    blob = "\n".join(keys + [v.decode("latin-1") for v in values])
    assert not find_nirs(blob)
    for value in used:
        assert value not in blob
        assert value[:13] not in blob
        assert value[:10] not in blob  # the cohort prefix


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def own_redis(redis_url: str) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A private redis-server this test may stop and pause."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed")
    port = _free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    try:
        yield f"redis://127.0.0.1:{port}/0", proc
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGCONT)
            proc.terminate()
            proc.wait(timeout=10)


@pytest.mark.redis
def test_paused_redis_fails_closed_then_recovers(
    own_redis: tuple[str, subprocess.Popen[bytes]],
) -> None:
    url, proc = own_redis
    calls: list[str] = []
    guard = guard_for(url, "paused", only(lookups="100/hour"))

    @guard.protect(practitioner="who", nir="value")
    def lookup(who: str, value: str) -> str:
        calls.append(value)
        return "identity"

    assert lookup("dr", OLD_NIRS[0]) == "identity"
    os.kill(proc.pid, signal.SIGSTOP)
    try:
        with pytest.raises(GuardUnavailable):
            lookup("dr", OLD_NIRS[1])
        with pytest.raises(GuardUnavailable):
            asyncio.run(_async_lookup(guard, OLD_NIRS[2]))
    finally:
        os.kill(proc.pid, signal.SIGCONT)
    assert calls == [OLD_NIRS[0]]
    assert lookup("dr", OLD_NIRS[3]) == "identity"  # recovery once Redis answers again


async def _async_lookup(guard: LookupGuard, value: str) -> None:
    try:
        async with guard.lookup("dr", value) as lookup:
            lookup.record("identity")
    finally:
        await guard.aclose()


@pytest.mark.redis
def test_stopped_redis_fails_closed_then_recovers(
    own_redis: tuple[str, subprocess.Popen[bytes]],
) -> None:
    url, proc = own_redis
    guard = guard_for(url, "stopped", only(lookups="100/hour"))
    with guard.lookup("dr", OLD_NIRS[0]):
        pass
    port = url.rsplit(":", 1)[1].split("/")[0]
    proc.terminate()
    proc.wait(timeout=10)
    with pytest.raises(GuardUnavailable), guard.lookup("dr", OLD_NIRS[1]):
        raise AssertionError("must not run")
    # fail_open lets it through, audited as unguarded
    events: list[object] = []
    open_guard = guard_for(
        url, "stopped", only(lookups="100/hour"), fail_open=True, audit=events.append
    )
    with open_guard.lookup("dr", OLD_NIRS[1]) as lookup:
        lookup.record("identity")
    assert [e.outcome for e in events] == ["unguarded"]  # type: ignore[attr-defined]
    # Redis comes back on the same port: lookups are guarded again.
    binary = shutil.which("redis-server")
    assert binary is not None
    restarted = subprocess.Popen(
        [binary, "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with guard.lookup("dr", OLD_NIRS[2]):
                    pass
                break
            except GuardUnavailable:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
    finally:
        restarted.terminate()
        restarted.wait(timeout=10)


@pytest.mark.redis
def test_denials_on_redis_carry_retry_after(redis_url: str, prefix: str) -> None:
    guard = guard_for(redis_url, prefix, only(lookups="2/minute"))
    for value in OLD_NIRS[:2]:
        with guard.lookup("dr", value):
            pass
    with pytest.raises(LookupDenied) as info, guard.lookup("dr", OLD_NIRS[2]):
        pass
    assert info.value.code == "lookups"
    assert info.value.retry_after is not None
    assert 0 < info.value.retry_after <= 60


# -- the library: loaded when a server lacks it, on every path ----------------------------------


@pytest.mark.parametrize("path", ["sync", "async"])
@pytest.mark.parametrize("functions", [True, False], ids=["function", "script"])
def test_a_server_that_lost_the_library_gets_it_again(
    private_redis: RedisServer, path: str, functions: bool
) -> None:
    """FUNCTION FLUSH / SCRIPT FLUSH (a restart, a failover to an empty replica) between
    lookups: the next lookup loads the library and sends its policy again, and decides."""
    import redis

    # Not a test of the deadline (the tests above are): reloading the library takes round trips
    # and a Lua compile on a fresh connection, which the default 0.5 s did not always cover on
    # a loaded machine (the private server starved of CPU: GuardUnavailable, a flaky failure).
    guard = guard_on(private_redis.url(), only(lookups="3/hour"), deadline=10)
    guard._engine._library.functions = functions  # type: ignore[attr-defined]
    admin = redis.Redis.from_url(private_redis.url())

    def look(value: str) -> str:
        if path == "sync":
            with guard.lookup("dr", value) as lookup:
                return str(lookup.outcome)

        async def one() -> str:
            async with guard.lookup("dr", value) as lookup:
                return str(lookup.outcome)

        return asyncio.run(one())

    outcomes = []
    for value in NIRS[:3]:
        admin.execute_command("FUNCTION", "FLUSH")
        admin.execute_command("SCRIPT", "FLUSH")
        outcomes.append(look(value))
    assert outcomes == ["allowed"] * 3
    with pytest.raises(QuotaExceeded):
        look(NIRS[3])  # the counts survived the flushes: only code was lost
    admin.close()
    guard.close()
