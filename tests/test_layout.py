"""The store's layout: compact records, a Cluster that spreads the portal's state, and
Redis on a simulated clock (docs/redis.md, "What is stored" and "Redis Cluster")."""

from __future__ import annotations

import math
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from nirguard import (
    ConfigurationError,
    LookupGuard,
    Pseudonymiser,
    QuotaExceeded,
    QuotaPolicy,
)
from nirguard._compiled import CompiledPolicy
from nirguard._engine import Request, cohort_tag, fingerprint
from nirguard._memory import MemoryEngine
from nirguard.testing import NIRGenerator
from tests.engine_helpers import T0, cleanup, redis_engine
from tests.guard_helpers import KEY, Clock, only
from tests.redis_helpers import WORKER_PREFIX, recent_entries
from tests.redis_tools import RedisServer
from tests.test_engines import OPS, PARITY_POLICY, play_twice

DAY = 86400.0
NIRS = NIRGenerator(seed=77).many(400)


def _guard(url: str, policy: QuotaPolicy, clock: Clock, **options: Any) -> LookupGuard:
    return LookupGuard(
        policy,
        storage=url,
        pseudonymiser=Pseudonymiser(KEY, purpose="guard"),
        clock=clock,
        storage_options=options,
    )


def _look(guard: LookupGuard, who: str, value: str) -> None:
    with guard.lookup(who, value) as lookup:
        lookup.record({"found": True})


# -- fingerprints ---------------------------------------------------------------------------------


def test_a_pseudonyms_fingerprint_is_the_end_of_its_digest() -> None:
    pseudonym = Pseudonymiser(KEY, purpose="guard").pseudonymise(NIRS[0])
    assert fingerprint(pseudonym) == bytes.fromhex(pseudonym[-12:])
    assert cohort_tag(pseudonym) == pseudonym[-16:]
    assert len(fingerprint("p1")) == 6 and fingerprint("p1") != fingerprint("p2")
    assert cohort_tag("c1") != cohort_tag("c2") and len(cohort_tag("c1")) == 16
    assert fingerprint("x" * 40) == fingerprint("x" * 40)  # not hex: a hash, still stable


# -- Redis on a simulated clock -------------------------------------------------------------------


@pytest.mark.redis
def test_a_simulated_clock_moves_the_windows_on_redis(private_redis: RedisServer) -> None:
    clock = Clock(1_800_000_000.0)
    guard = _guard(private_redis.url(), only(lookups="2/hour"), clock, simulated_clock=clock)
    _look(guard, "dr", NIRS[0])
    clock.advance(600)
    _look(guard, "dr", NIRS[1])
    with pytest.raises(QuotaExceeded) as refused:
        _look(guard, "dr", NIRS[2])
    assert refused.value.retry_after == pytest.approx(3000, abs=1)
    clock.advance(3000)
    _look(guard, "dr", NIRS[2])  # an hour after the first lookup: a new window
    guard.close()


@pytest.mark.redis
def test_without_the_opt_in_redis_keeps_the_servers_clock(private_redis: RedisServer) -> None:
    clock = Clock(1_800_000_000.0)
    guard = _guard(private_redis.url(), only(lookups="1/hour"), clock)
    _look(guard, "dr", NIRS[0])
    clock.advance(7200)  # the guard's clock moves; the server's decides
    with pytest.raises(QuotaExceeded):
        _look(guard, "dr", NIRS[1])
    guard.close()


@pytest.mark.redis
def test_simulated_expiries_are_shifted_onto_the_servers_clock(private_redis: RedisServer) -> None:
    import redis

    clock = Clock(1_900_000_000.0)  # years ahead of the server: expiries still follow
    policy = only(lookups="5/hour")
    guard = _guard(private_redis.url(), policy, clock, simulated_clock=clock)
    shift = time.time() - clock.now
    _look(guard, "dr", NIRS[0])
    client = redis.Redis.from_url(private_redis.url())
    simulated = (time.time() * 1000 + client.pttl("nirguard:{dr}:account")) / 1000 - shift
    assert simulated == pytest.approx(clock.now + policy._compiled.keep, abs=5)
    clock.advance(30 * DAY)  # weeks in a moment: the record is still there, and dead
    _look(guard, "dr", NIRS[1])
    assert guard.status("dr").remaining["lookups"] == 4  # a new window, not the old one
    client.close()
    guard.close()


def test_a_simulated_clock_must_be_callable(private_redis: RedisServer) -> None:
    with pytest.raises(ConfigurationError, match="simulated_clock"):
        LookupGuard(storage=private_redis.url(), storage_options={"simulated_clock": 5.0})


# -- compact records ------------------------------------------------------------------------------


@pytest.mark.redis
def test_a_practitioners_patients_are_one_record_on_redis(private_redis: RedisServer) -> None:
    import redis

    clock = Clock(1_800_000_000.0)
    policy = only(distinct_patients="1000/day", cohort="50/day")
    guard = _guard(private_redis.url(), policy, clock, simulated_clock=clock)
    for value in NIRS[:300]:
        _look(guard, "dr", value)
    client = redis.Redis.from_url(private_redis.url())
    assert client.dbsize() == 2  # nirguard:{dr}:account and nirguard:{dr}:r
    assert recent_entries(client, "nirguard:{dr}:r", clock.now) == (300, 0)
    # 14 bytes a patient, 18 a cohort walk (300 cohorts here), and the record's own
    assert client.memory_usage("nirguard:{dr}:r", samples=0) < 300 * (14 + 18) + 1000
    clock.advance(DAY)
    _look(guard, "dr", NIRS[300])
    assert recent_entries(client, "nirguard:{dr}:r") == (1, 0)  # the dead were dropped
    client.close()
    guard.close()


#: An account record in the format before issue 20's second round (one array: its layout's
#: codes, then the values, false = absent), made on the server, and the record's format now.
_OLD_RECORD = """
redis.call("SET", KEYS[1], cmsgpack.pack({ARGV[1], tonumber(ARGV[2]), false,
  tonumber(ARGV[3]), tonumber(ARGV[4])}))
"""
_IS_MAP = "return cmsgpack.unpack(redis.call('GET', KEYS[1]))._ ~= nil and 1 or 0"


def test_an_account_record_in_the_format_before_is_read_by_its_codes(
    private_redis: RedisServer,
) -> None:
    """A store written by the version before (arrays led by their layout) keeps its
    lockouts and windows: the first decision reads it by its codes and writes a map."""
    import redis

    from nirguard._engine import Keys

    client = redis.Redis.from_url(private_redis.url())
    policy = only(distinct_patients="2/day", lockout="1 hour")
    engine = redis_engine(private_redis.url(), "old")
    locked, counted = (Keys("old", who, None, "").account for who in ("locked", "counted"))
    # a lockout ("L") and an unknown code ("Zz": a field this version does not know)
    client.eval(_OLD_RECORD, 1, locked, "L,Zz,d86400,d86400e", T0 + 60, 0, 0)
    client.eval(_OLD_RECORD, 1, counted, "L,Zz,d86400,d86400e", 0, 2, T0 + 60)
    try:
        decide = lambda who, p: engine.decide(Request(who, policy._compiled, p, None, now=T0))  # noqa: E731
        assert decide("locked", "a").outcome == "locked"
        assert decide("counted", "a").quota == "distinct_patients"  # its 2 of 2 kept
        assert client.eval(_IS_MAP, 1, counted) == 1  # written back in the format now
        assert decide("counted", "b").outcome == "locked"  # and read again
    finally:
        engine.close()
        client.close()


def _heat(engine: Any, cohort: str, now: float) -> Any:
    key = f"t:{{%c{cohort_tag(cohort)}}}:h{PARITY_POLICY._compiled.heat_suffix}"
    return engine._store.get(key, now)


def test_a_cohorts_heat_is_forgotten_once_its_baseline_decays_to_one_patient() -> None:
    p = QuotaPolicy.only(hot_cohort=3.0, hot_cohort_min=5)._compiled
    engine = MemoryEngine(lambda: T0, prefix="t")
    for i in range(10):  # ten new patients of one cohort in a minute: l = 10
        engine.decide(Request("dr", p, f"p{i}", "c1", now=T0 + i))
    heat = engine._store.get(f"t:{{%c{cohort_tag('c1')}}}:h{p.heat_suffix}", T0 + 10)
    t, s, l_ = heat.t, heat.s, heat.l
    forgotten = t + p.hot_baseline * math.log(l_)  # about 64 days later
    assert forgotten - T0 == pytest.approx(28 * DAY * math.log(10), rel=1e-3)
    remembered = engine.decide(Request("dr2", p, "q1", "c1", now=forgotten - 1))
    assert remembered.heat == pytest.approx(1 + s * math.exp(-(forgotten - 1 - t) / DAY))
    assert remembered.expected == pytest.approx(
        (1 + l_ * math.exp(-(forgotten - 1 - t) / (28 * DAY))) / 28
    )
    engine2 = MemoryEngine(lambda: T0, prefix="t")
    for i in range(10):
        engine2.decide(Request("dr", p, f"p{i}", "c1", now=T0 + i))
    fresh = engine2.decide(Request("dr2", p, "q1", "c1", now=forgotten + 1))
    assert fresh.heat == 1.0 and fresh.expected == pytest.approx(1 / 28)


# -- a Cluster ------------------------------------------------------------------------------------


def _cluster_clients(url: str) -> list[Any]:
    import redis

    return [
        redis.Redis(host=h, port=int(p))
        for h, p in (node.rsplit(":", 1) for node in url.split("://", 1)[1].split(","))
    ]


def _calls(clients: list[Any]) -> list[int]:
    return [
        sum(
            int(v["calls"])
            for k, v in c.info("commandstats").items()
            if k in ("cmdstat_fcall", "cmdstat_evalsha")
        )
        for c in clients
    ]


@pytest.fixture
def cluster(redis_cluster_url: str) -> Iterator[tuple[str, str]]:
    prefix = f"{WORKER_PREFIX}{uuid.uuid4().hex[:10]}"
    yield redis_cluster_url, prefix
    cleanup(redis_cluster_url, prefix)


def _masters(clients: list[Any]) -> list[Any]:
    return [c for c in clients if c.info("replication")["role"] == "master"]


@pytest.mark.redis
def test_a_repeat_is_one_call_on_a_cluster_and_a_new_patient_two_or_three(
    cluster: tuple[str, str],
) -> None:
    url, prefix = cluster
    engine = redis_engine(url, prefix)
    masters = _masters(_cluster_clients(url))
    # the shipped checks, hot cohorts and the sequence signal on
    p = QuotaPolicy(lookups="1000/minute")._compiled

    def calls_for(request: Request) -> int:
        before = _calls(masters)
        engine.decide(request)
        return sum(_calls(masters)) - sum(before)

    # past the warm-up (no hot_cohort_warmup): the heat may decide the account
    warm = QuotaPolicy(lookups="1000/minute", hot_cohort_warmup=None)._compiled
    quota = QuotaPolicy(portal="1000/minute")._compiled  # the portal quota: one more, always
    plain = QuotaPolicy(lookups="1000/minute", sequence=None)._compiled  # sequence off
    for i in range(30):  # every master learns the policies (a first call sends them)
        for policy in (p, warm, quota, plain):
            engine.decide(Request(f"w{i}", policy, f"k:{i:032x}", f"k:{i:032x}", now=T0))

    def new(who: str, policy: CompiledPolicy, now: float) -> Request:
        return Request(who, policy, "k:" + "1" * 32, "k:" + "2" * 32, now=now)

    assert calls_for(new("dr", warm, T0)) == 3  # the practitioner's, the heat, the practitioner's
    assert calls_for(new("dr", warm, T0 + 60)) == 1  # a repeat
    assert calls_for(new("dr2", p, T0)) == 3  # sequence on: the heat's neighbours decide too
    assert calls_for(new("dr2", p, T0 + 60)) == 1
    assert calls_for(new("dr3", plain, T0)) == 2  # warming up: the practitioner's, the heat
    assert calls_for(new("dr3", plain, T0 + 60)) == 1
    assert calls_for(new("dr", quota, T0 + 90)) == 2
    engine.close()
    for client in masters:
        client.close()


@pytest.mark.redis
def test_a_cluster_spreads_the_cohorts_over_every_master(cluster: tuple[str, str]) -> None:
    url, prefix = cluster
    engine = redis_engine(url, prefix)
    p = QuotaPolicy(lookups="1000/minute", distinct_patients="1000/day")._compiled
    patients = Pseudonymiser(KEY, purpose="guard")
    cohorts = patients.derive("cohort")
    for i, value in enumerate(NIRS[:300]):
        request = Request(
            f"dr{i % 30}",
            p,
            patients.pseudonymise_canonical(value),
            cohorts.pseudonymise_canonical(value[:10]),
            now=T0 + i,
        )
        assert engine.decide(request).outcome == "allowed"
    engine.close()
    masters = _masters(_cluster_clients(url))
    heat: Counter[int] = Counter()
    for n, client in enumerate(masters):
        heat[n] = sum(1 for _ in client.scan_iter(match=f"{prefix}:{{%c*", count=1000))
        client.close()
    assert sum(heat.values()) == len({v[:10] for v in NIRS[:300]})
    assert all(count > 0 for count in heat.values())  # no slot holds the portal
    assert max(heat.values()) < 0.6 * sum(heat.values())


@pytest.mark.redis
@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=OPS)
def test_memory_and_a_cluster_agree_on_every_sequence(redis_cluster_url: str, ops: Any) -> None:
    expected, got = play_twice(redis_cluster_url, ops)
    assert got == expected
