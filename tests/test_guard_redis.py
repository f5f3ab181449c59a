"""LookupGuard on real Redis: exact quotas across processes, detection state shared,
no NIR in the store, fail closed when Redis stops or stalls, recovery."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest

from nirguard import (
    EnumerationSuspected,
    GuardUnavailable,
    LookupDenied,
    LookupGuard,
    PractitionerLocked,
    Pseudonymiser,
    QuotaExceeded,
    nir,
)
from nirguard.testing import NIRGenerator
from tests.conftest import find_nirs
from tests.guard_helpers import KEY, only, redis_worker

NIRS = NIRGenerator(seed=99).many(600)


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
    chunks = [NIRS[i::6][:40] for i in range(6)]  # 240 attempts from 6 processes
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
            return await asyncio.gather(*(attempt(v) for v in NIRS[:80]))
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
    with pytest.raises(PractitionerLocked), first.lookup("bot", NIRS[0]):
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
    used = NIRS[:30]
    for value in used:
        with guard.lookup("dr-1", nir.format(value)) as lookup:
            lookup.record(None)
    client = redis.Redis.from_url(redis_url)
    keys = [k.decode() for k in client.scan_iter(match=f"*{prefix}*", count=1000)]
    client.close()
    assert len(keys) > 30
    blob = "\n".join(keys)
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

    assert lookup("dr", NIRS[0]) == "identity"
    os.kill(proc.pid, signal.SIGSTOP)
    try:
        with pytest.raises(GuardUnavailable):
            lookup("dr", NIRS[1])
        with pytest.raises(GuardUnavailable):
            asyncio.run(_async_lookup(guard, NIRS[2]))
    finally:
        os.kill(proc.pid, signal.SIGCONT)
    assert calls == [NIRS[0]]
    assert lookup("dr", NIRS[3]) == "identity"  # recovery once Redis answers again


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
    with guard.lookup("dr", NIRS[0]):
        pass
    port = url.rsplit(":", 1)[1].split("/")[0]
    proc.terminate()
    proc.wait(timeout=10)
    with pytest.raises(GuardUnavailable), guard.lookup("dr", NIRS[1]):
        raise AssertionError("must not run")
    # fail_open lets it through, audited as unguarded
    events: list[object] = []
    open_guard = guard_for(
        url, "stopped", only(lookups="100/hour"), fail_open=True, audit=events.append
    )
    with open_guard.lookup("dr", NIRS[1]) as lookup:
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
                with guard.lookup("dr", NIRS[2]):
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
    for value in NIRS[:2]:
        with guard.lookup("dr", value):
            pass
    with pytest.raises(LookupDenied) as info, guard.lookup("dr", NIRS[2]):
        pass
    assert info.value.code == "lookups"
    assert info.value.retry_after is not None
    assert 0 < info.value.retry_after <= 60
