"""The guard on a real Redis Cluster (three local masters started by the session fixture
``redis_cluster``, or NIRGUARD_TEST_REDIS_CLUSTER_URL): exact quotas across threads and
asyncio tasks, keys spread over the masters, nothing left behind."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator

import pytest

from nirguard import GuardUnavailable, LookupGuard, Pseudonymiser, QuotaExceeded
from nirguard.testing import NIRGenerator
from tests.guard_helpers import KEY, only

NIRS = NIRGenerator(seed=1234).many(200)


def _cluster_client(url: str) -> object:
    from redis.cluster import ClusterNode, RedisCluster

    nodes = [ClusterNode(*hp.rsplit(":", 1)) for hp in url.split("://", 1)[1].split(",")]
    return RedisCluster(startup_nodes=nodes)


@pytest.fixture
def cluster_prefix(redis_cluster_url: str) -> Iterator[str]:
    """A key namespace of its own on the cluster; its keys are deleted afterwards."""
    name = f"nirguard-cluster-{uuid.uuid4().hex[:12]}"
    yield name
    client = _cluster_client(redis_cluster_url)
    try:
        for key in client.scan_iter(match=f"*{name}*", count=1000):  # type: ignore[attr-defined]
            client.delete(key)  # type: ignore[attr-defined]
    finally:
        client.close()  # type: ignore[attr-defined]


def _guard(url: str, prefix: str, quota: int) -> LookupGuard:
    return LookupGuard(
        only(lookups=f"{quota}/hour"),
        storage=url,
        key_prefix=prefix,
        pseudonymiser=Pseudonymiser(KEY, purpose="guard"),
    )


@pytest.mark.redis
def test_cluster_fixture_is_three_masters_all_slots_ok(redis_cluster_url: str) -> None:
    client = _cluster_client(redis_cluster_url)
    try:
        info = client.cluster_info()  # type: ignore[attr-defined]
        assert info["cluster_state"] == "ok"
        assert int(info["cluster_slots_ok"]) == 16384
        assert len(client.get_primaries()) >= 3  # type: ignore[attr-defined]
    finally:
        client.close()  # type: ignore[attr-defined]


@pytest.mark.redis
def test_exact_quota_across_threads_on_cluster(redis_cluster_url: str, cluster_prefix: str) -> None:
    quota = 23
    guard = _guard(redis_cluster_url, cluster_prefix, quota)
    allowed: list[str] = []
    barrier = threading.Barrier(8)

    def worker(chunk: list[str]) -> None:
        barrier.wait()
        for value in chunk:
            try:
                with guard.lookup("shared-account", value) as lookup:
                    lookup.record({"ok": True})
            except QuotaExceeded:
                continue
            allowed.append(value)

    threads = [threading.Thread(target=worker, args=(NIRS[i::8][:12],)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    guard.close()
    assert len(allowed) == quota


@pytest.mark.redis
def test_exact_quota_across_tasks_on_cluster(redis_cluster_url: str, cluster_prefix: str) -> None:
    guard = _guard(redis_cluster_url, cluster_prefix, 17)

    async def attempt(value: str) -> bool:
        try:
            async with guard.lookup("shared-account", value) as lookup:
                lookup.record({"ok": True})
        except QuotaExceeded:
            return False
        return True

    async def main() -> list[bool]:
        try:
            # One lookup first: a cold burst hits the redis-py client race tested below.
            first = await attempt(NIRS[0])
            return [first, *await asyncio.gather(*(attempt(v) for v in NIRS[1:60]))]
        finally:
            await guard.aclose()

    assert sum(asyncio.run(main())) == 17


@pytest.mark.redis
def test_cold_async_burst_on_cluster_is_not_an_outage(
    redis_cluster_url: str, cluster_prefix: str
) -> None:
    outcomes: list[str] = []
    for round_ in range(3):  # the race shows in about half of the cold starts
        guard = _guard(redis_cluster_url, f"{cluster_prefix}-{round_}", 10_000)

        async def attempt(value: str, guard: LookupGuard = guard) -> str:
            try:
                async with guard.lookup("shared-account", value) as lookup:
                    lookup.record({"ok": True})
            except GuardUnavailable:
                return "unavailable"
            return "allowed"

        async def main(guard: LookupGuard = guard, attempt: object = attempt) -> list[str]:
            try:
                return await asyncio.gather(*(attempt(v) for v in NIRS))  # type: ignore[operator]
            finally:
                await guard.aclose()

        outcomes += asyncio.run(main())
    assert outcomes.count("unavailable") == 0
