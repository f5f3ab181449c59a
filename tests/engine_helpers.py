"""The engines' test bench: a driver with explicit times, and every engine to run it on.

Each test module that runs a scenario on every engine (memory, Redis, Redis
Cluster) makes its ``engine`` fixture with :func:`engines` (``params=ENGINES``).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from nirguard import QuotaPolicy
from nirguard._engine import Decision, Engine, Request
from nirguard._memory import MemoryEngine
from tests.redis_helpers import WORKER_PREFIX, delete_prefixed

T0 = 1_800_000_000.0
HOUR = 3600.0
DAY = 86400.0


def session_fp(label: str) -> bytes:
    """A session label's 6-byte fingerprint, as the lookup path makes one (b"": none)."""
    return hashlib.blake2b(label.encode(), digest_size=6).digest() if label else b""


@dataclass
class Driver:
    """Lookups by name: practitioner, patient and cohort are short labels."""

    engine: Engine
    policy: QuotaPolicy
    now: float = T0
    log: list[tuple[str, ...]] = field(default_factory=list)

    def request(
        self,
        who: str,
        patient: str | None,
        cohort: str | None,
        reason: bool = False,
        session: str = "",
    ) -> Request:
        compiled = self.policy._compiled
        used = session_fp(session)
        return Request(who, compiled, patient, cohort, reason, now=self.now, session=used)

    def look(
        self,
        who: str,
        patient: str,
        cohort: str | None = "c0",
        *,
        reason: bool = False,
        session: str = "",
    ) -> Decision:
        decision = self.engine.decide(self.request(who, patient, cohort, reason, session))
        self.log.append((who, patient, decision.outcome, decision.quota or ""))
        return decision

    def invalid(self, who: str) -> Decision:
        return self.engine.invalid(self.request(who, None, None))

    def miss(self, who: str) -> None:
        self.engine.record_miss(self.request(who, None, None))

    def status(self, who: str) -> Any:
        return self.engine.status(who, self.policy._compiled, self.now)

    def unlock(self, who: str) -> None:
        self.engine.unlock(who, self.policy._compiled)

    def wait(self, seconds: float) -> None:
        self.now += seconds


def redis_engine(url: str, prefix: str) -> Engine:
    from nirguard._redis import RedisEngine

    return RedisEngine(url, prefix=prefix)


def cleanup(url: str, prefix: str) -> None:
    """Delete this test's keys (SCAN + DEL of its own prefix, on every primary of a Cluster)."""
    import redis

    if url.startswith("redis+cluster://"):
        from redis.cluster import RedisCluster

        first = url.split("://", 1)[1].split(",")[0]
        host, port = first.rsplit(":", 1)
        client: Any = RedisCluster(host=host, port=int(port))
        for node in client.get_primaries():
            conn = client.get_redis_connection(node)
            for key in list(conn.scan_iter(match=f"*{prefix}*", count=1000)):
                conn.delete(key)
        client.close()
        return
    client = redis.Redis.from_url(url)
    try:
        delete_prefixed(client, prefix)
    finally:
        client.close()


ENGINES = ["memory", "redis", "cluster"]


def engines(request: pytest.FixtureRequest) -> Iterator[Engine]:
    """Every engine, each with a key namespace of its own (deleted afterwards): the body
    of a module's ``engine`` fixture, made with ``params=ENGINES``."""
    prefix = f"{WORKER_PREFIX}{uuid.uuid4().hex[:10]}"
    kind = request.param
    if kind == "memory":
        yield MemoryEngine(lambda: T0, prefix=prefix)
        return
    if kind == "redis":
        url = request.getfixturevalue("redis_url")
    else:
        url = request.getfixturevalue("redis_cluster_url")
    made = redis_engine(url, prefix)
    try:
        yield made
    finally:
        made.close()
        cleanup(url, prefix)


def drive(engine: Engine, **fields: Any) -> Driver:
    return Driver(engine, QuotaPolicy.only(**fields))


def gp_policy(**fields: Any) -> QuotaPolicy:
    """A GP's quotas with break-glass and strikes (the shipped values, fewer signals)."""
    base: dict[str, Any] = {
        "lookups": "30/minute;200/day",
        "distinct_patients": "2/day",
        "break_glass": "1/day;2/7 days",
        "strikes": "3/hour;6/day",
    }
    return QuotaPolicy.only(**{**base, **fields})


def sequence_policy(
    sequence: str,
    *,
    share: float = 0.5,
    heat: str | None = "2 hours",
    seen: str = "7 days",
    **fields: Any,
) -> QuotaPolicy:
    """The ``sequence`` signal's windows with ``share``, and a heat that never turns hot
    (it only remembers whom it saw, for ``heat``; the policy's default when None); new
    patients known for ``seen``; ``fields`` any other quota (``break_glass``)."""
    if heat is not None:
        fields["hot_cohort_window"] = heat
    return QuotaPolicy.only(
        sequence=sequence,
        sequence_share=share,
        hot_cohort=3.0,
        hot_cohort_min=1_000_000,
        distinct_patients=f"100000/{seen}",
        **fields,
    )
