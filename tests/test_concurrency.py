"""Twins, threads, tasks and processes: a quota never lets more through than it holds.

An attacker doubling every request must not harvest beyond the quota: the
same new patient sent two or three times at once is one new patient, once.
Every test runs on the memory engine and on real Redis (and on a real Redis
Cluster when one is configured).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from nirguard import LookupDenied, LookupGuard, Pseudonymiser, QuotaPolicy, nir
from nirguard.testing import NIRGenerator
from tests.guard_helpers import KEY
from tests.redis_helpers import WORKER_PREFIX

NIRS = NIRGenerator(seed=4242).many(300)
COHORT = "1850578006"
ONE_COHORT = [f"{COHORT}{o:03d}{nir.compute_key(f'{COHORT}{o:03d}'):02d}" for o in range(1, 40)]


@pytest.fixture(params=["memory", "redis", "cluster"])
def storage(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    """A storage URI and a key prefix of its own (its keys are deleted afterwards)."""
    prefix = f"{WORKER_PREFIX}{uuid.uuid4().hex[:10]}"
    if request.param == "memory":
        yield "memory://", prefix
        return
    url = request.getfixturevalue("redis_url" if request.param == "redis" else "redis_cluster_url")
    yield url, prefix
    from tests.engine_helpers import cleanup as _cleanup

    _cleanup(url, prefix)


def guard_on(storage: tuple[str, str], policy: QuotaPolicy, **kwargs: Any) -> LookupGuard:
    url, prefix = storage
    return LookupGuard(
        policy,
        storage=url,
        key_prefix=prefix,
        pseudonymiser=Pseudonymiser(KEY, purpose="guard"),
        **kwargs,
    )


def _twins_threads(guard: LookupGuard, values: list[str], copies: int) -> set[str]:
    returned: set[str] = set()
    lock = threading.Lock()
    barrier = threading.Barrier(len(values) * copies)

    def attempt(value: str) -> None:
        barrier.wait()
        try:
            with guard.lookup("twin-bot", value) as lookup, lock:
                returned.add(str(lookup.patient))
        except LookupDenied:
            pass

    threads = [threading.Thread(target=attempt, args=(v,)) for v in values for _ in range(copies)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return returned


async def _twins_tasks(guard: LookupGuard, values: list[str], copies: int) -> set[str]:
    returned: set[str] = set()

    async def attempt(value: str) -> None:
        try:
            async with guard.lookup("twin-bot", value) as lookup:
                returned.add(str(lookup.patient))
        except LookupDenied:
            pass

    await asyncio.gather(*(attempt(v) for v in values for _ in range(copies)))
    await guard.aclose()
    return returned


@pytest.mark.parametrize("copies", [2, 3])
def test_twins_in_threads_never_pass_distinct_patients(
    storage: tuple[str, str], copies: int
) -> None:
    guard = guard_on(storage, QuotaPolicy.only(distinct_patients="5/hour", break_glass=None))
    returned = _twins_threads(guard, NIRS[:10], copies)
    assert len(returned) == 5
    assert guard.status("twin-bot").remaining["distinct_patients"] == 0
    guard.close()


@pytest.mark.parametrize("copies", [2, 3])
def test_twins_in_tasks_never_pass_distinct_patients(storage: tuple[str, str], copies: int) -> None:
    guard = guard_on(storage, QuotaPolicy.only(distinct_patients="5/hour", break_glass=None))
    returned = asyncio.run(_twins_tasks(guard, NIRS[:10], copies))
    assert len(returned) == 5


def test_twins_never_pass_a_spent_quota(storage: tuple[str, str]) -> None:
    guard = guard_on(storage, QuotaPolicy.only(distinct_patients="3/hour", break_glass=None))
    for value in NIRS[:3]:
        with guard.lookup("twin-bot", value):
            pass
    assert _twins_threads(guard, NIRS[3:13], 2) == set()
    guard.close()


def test_twins_never_pass_the_cohort_signal(storage: tuple[str, str]) -> None:
    guard = guard_on(storage, QuotaPolicy.only(cohort="1/day", break_glass=None))
    returned = _twins_threads(guard, ONE_COHORT[:10], 2)
    assert len(returned) == 1
    guard.close()


def test_twins_under_the_default_policy_walk_no_further(storage: tuple[str, str]) -> None:
    policy = QuotaPolicy()
    alone = guard_on((storage[0], storage[1] + "-alone"), policy)
    walked_alone = 0
    for value in ONE_COHORT[:12]:
        try:
            with alone.lookup("twin-bot", value):
                walked_alone += 1
        except LookupDenied:
            pass
    twins = guard_on(storage, policy)
    returned = _twins_threads(twins, ONE_COHORT[:12], 2)
    assert len(returned) == walked_alone  # doubling every request gains nothing
    alone.close()
    twins.close()


def test_break_glass_twins_never_exceed_the_budget(storage: tuple[str, str]) -> None:
    policy = QuotaPolicy.only(distinct_patients="1/day", break_glass="2/day")
    guard = guard_on(storage, policy)
    with guard.lookup("dr", NIRS[0]):
        pass
    granted: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(12)

    def attempt(value: str) -> None:
        barrier.wait()
        try:
            with guard.lookup("dr", value, reason="ETREAT") as lookup, lock:
                granted.append(str(lookup.patient))
        except LookupDenied:
            pass

    threads = [threading.Thread(target=attempt, args=(v,)) for v in NIRS[1:7] for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(granted)) == 2
    assert guard.status("dr").remaining["break_glass"] == 0
    guard.close()


def _process_worker(args: tuple[str, str, list[str]]) -> list[str]:
    url, prefix, values = args
    guard = LookupGuard(
        QuotaPolicy.only(distinct_patients="7/hour", break_glass=None),
        storage=url,
        key_prefix=prefix,
        pseudonymiser=Pseudonymiser(KEY, purpose="guard"),
    )
    got = []
    for value in values:
        try:
            with guard.lookup("shared-account", value) as lookup:
                got.append(str(lookup.patient))
        except LookupDenied:
            pass
    guard.close()
    return got


@pytest.mark.redis
def test_twins_across_processes(redis_url: str) -> None:
    prefix = f"{WORKER_PREFIX}{uuid.uuid4().hex[:10]}"
    values = NIRS[:20]
    ctx = multiprocessing.get_context("spawn")
    try:
        with ctx.Pool(4) as pool:  # every process sends the same twenty patients
            results = pool.map(_process_worker, [(redis_url, prefix, values)] * 4)
    finally:
        from tests.engine_helpers import cleanup as _cleanup

        _cleanup(redis_url, prefix)
    assert len({n for got in results for n in got}) == 7
