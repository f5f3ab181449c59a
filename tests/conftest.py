"""Suite-wide fixtures: a leak detector over every log record, Redis hygiene, helpers."""

from __future__ import annotations

import logging
import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nirguard import nir
from tests.redis_helpers import RUN_PREFIX, SENTINEL_PREFIX, WORKER_PREFIX, delete_prefixed
from tests.redis_tools import RedisCluster, RedisServer, TcpProxy, missing_redis_binaries

# A NIR as it may appear in text: 15 characters, digits (2A/2B at 6-7), separators between groups.
_SEP = r"[ .\-\u00a0\u202f]?"
NIR_SHAPED = re.compile(
    rf"(?<![0-9A-Za-z])[0-9]{_SEP}[0-9]{{2}}{_SEP}[0-9]{{2}}{_SEP}(?:[0-9]{{2}}|2[ABab]){_SEP}"
    rf"[0-9]{{1,3}}{_SEP}[0-9]{{1,3}}{_SEP}[0-9]{{1,3}}{_SEP}[0-9]{{2}}(?![0-9])"
)


def find_nirs(text: str) -> list[str]:
    """Every valid NIR (any spelling) found in ``text``."""
    found = []
    for match in NIR_SHAPED.finditer(text):
        if nir.is_valid(match.group(0), strict=False):
            found.append(match.group(0))
    # Bare 13-character bodies of a valid-looking NIR prefix are caught by the tests that know them.
    return found


def assert_no_nir(text: str, *known: str) -> None:
    """Fail if ``text`` holds a valid NIR, or any of ``known`` (canonical or 13-char body)."""
    assert not find_nirs(text), "NIR-shaped string leaked"
    for value in known:
        canonical = nir.validate(value, strict=False)
        assert canonical not in text, "known NIR leaked"
        assert canonical[:13] not in text, "known NIR body leaked"


class _Collector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(autouse=True)
def _no_nir_in_logs() -> Iterator[_Collector]:
    """Every log record any test produces is scanned for NIRs."""
    collector = _Collector()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(collector)
    root.setLevel(logging.DEBUG)
    try:
        yield collector
    finally:
        root.removeHandler(collector)
        root.setLevel(old_level)
    for record in collector.records:
        text = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            text += " " + str(record.exc_info[1])
        if not text:
            continue
        assert not find_nirs(text), f"a log record of {record.name!r} holds a NIR"


@pytest.fixture(scope="session")
def _audit_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("audit")


@pytest.fixture(autouse=True)
def _example_audit_trail(_audit_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The example portals write their audit trail to a temporary file, not the checkout."""
    monkeypatch.setenv("NIRGUARD_AUDIT_LOG", str(_audit_dir / "audit.jsonl"))


@pytest.fixture(autouse=True)
def _example_review_queue(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test's example portals keep their files (the break-glass review queue, alerts)
    in a directory of its own, and serve the queue to the bearer of a test token."""
    monkeypatch.setenv("PORTAL_DATA_DIR", str(tmp_path / "portal-data"))
    monkeypatch.setenv("NIRGUARD_BREAK_GLASS_LOG", str(tmp_path / "break-glass.jsonl"))
    monkeypatch.setenv("PORTAL_REVIEW_TOKEN", "review-token-of-the-tests")


@pytest.fixture
def redis_url() -> str:
    """URL of the real Redis for integration tests (skips when not configured)."""
    url = os.environ.get("NIRGUARD_TEST_REDIS_URL")
    if not url:
        pytest.skip("set NIRGUARD_TEST_REDIS_URL=redis://127.0.0.1:6379/0 to run the Redis tests")
    return url


# -- Redis hygiene ---------------------------------------------------------------------------------
# The Redis named by NIRGUARD_TEST_REDIS_URL may be shared (a developer's, a staging one): the tests
# write only keys whose names contain RUN_PREFIX (random per test run), delete only those (SCAN +
# DEL, never FLUSHDB/FLUSHALL/KEYS *), and _redis_hygiene checks it around the whole session.


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A key namespace of this test's own, under RUN_PREFIX; its keys are deleted afterwards."""
    import redis

    name = f"{WORKER_PREFIX}{uuid.uuid4().hex[:8]}"
    yield name
    client = redis.Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=5)
    try:
        delete_prefixed(client, name)
    finally:
        client.close()


#: A key of another test run: its prefix (tests/redis_helpers.py) with a run id not this one's.
_OTHER_RUN = re.compile(rb"nirguard-test-[0-9a-f]{12}-")


def _scan(client: Any, pattern: str) -> set[bytes]:
    return set(client.scan_iter(match=pattern, count=1000))


@pytest.fixture(scope="session", autouse=True)
def _redis_hygiene() -> Iterator[None]:
    """Fail the run if a test deleted keys it does not own, or left keys behind.

    Before the first test, a sentinel key (a name no test uses) is written to the test Redis;
    after the last, it must still be there (a FLUSHDB, FLUSHALL or a careless DEL would have
    removed it), no key of this worker's prefix may be left, and no new key in nirguard's
    namespace may have appeared outside this run's prefix (a guard left on the default
    ``key_prefix``); keys of another test run's prefix are that run's to check. Something else
    writing nirguard keys to the same database at the same time would trip the last check:
    give the tests a database of their own.
    """
    url = os.environ.get("NIRGUARD_TEST_REDIS_URL")
    client: Any = None
    if url:
        try:
            import redis

            client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
            client.ping()
        except Exception:  # no client or no server: the Redis tests report it themselves
            client = None
    if client is None:
        yield
        return
    sentinel = f"{SENTINEL_PREFIX}{uuid.uuid4().hex}"
    client.set(sentinel, "not the tests' to delete", ex=86_400)
    before = _scan(client, "*nirguard*")
    try:
        yield
        problems = []
        if client.get(sentinel) != b"not the tests' to delete":
            problems.append("a key the tests do not own was deleted (FLUSHDB, FLUSHALL or DEL)")
        left = _scan(client, f"*{WORKER_PREFIX}*")
        if left:
            problems.append(f"{len(left)} keys of this run left behind, e.g. {sorted(left)[:3]}")
        # Another test run on the same database (a colleague's checkout) writes and deletes
        # keys of its own prefix, which its own hygiene checks: not a leak of this run.
        stray = sorted(
            k
            for k in _scan(client, "*nirguard*") - before
            if RUN_PREFIX.encode() not in k and not _OTHER_RUN.search(k)
        )
        if stray:
            problems.append(f"{len(stray)} keys written outside {RUN_PREFIX}, e.g. {stray[:3]}")
        assert not problems, "Redis hygiene: " + "; ".join(problems)
    finally:
        client.delete(sentinel)
        client.close()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisCluster]:
    """A real Redis Cluster (three masters on free ports, no replicas) for the whole session,
    started in a temporary directory and torn down afterwards. Skips only when the
    redis-server / redis-cli binaries are absent."""
    why = missing_redis_binaries(cluster=True)
    if why is not None:
        pytest.skip(f"no local Redis Cluster: {why}")
    with RedisCluster() as cluster:
        yield cluster


@pytest.fixture(scope="session")
def redis_cluster_url(request: pytest.FixtureRequest) -> str:
    """``redis+cluster://host:port,...``: NIRGUARD_TEST_REDIS_CLUSTER_URL when set,
    else the session's own cluster (``redis_cluster``)."""
    url = os.environ.get("NIRGUARD_TEST_REDIS_CLUSTER_URL")
    if url:
        return url
    cluster: RedisCluster = request.getfixturevalue("redis_cluster")
    return cluster.url


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    """A redis-server of this test's own (fresh, empty, no persistence): pause it
    (``.pause()`` / ``with .paused():``, SIGSTOP/SIGCONT) or stop it freely."""
    why = missing_redis_binaries()
    if why is not None:
        pytest.skip(f"no private Redis: {why}")
    with RedisServer() as server:
        yield server


@pytest.fixture
def redis_proxy(private_redis: RedisServer) -> Iterator[TcpProxy]:
    """A counting, cutting TCP proxy in front of ``private_redis``;
    ``redis_proxy.url(private_redis.url())`` is the URL to give clients."""
    with TcpProxy(("127.0.0.1", private_redis.port)) as proxy:
        yield proxy


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Soak tests (minutes long) run only when NIRGUARD_TEST_SOAK=1 asks for them."""
    if os.environ.get("NIRGUARD_TEST_SOAK") == "1":
        return
    skip = pytest.mark.skip(reason="a soak test: set NIRGUARD_TEST_SOAK=1 to run it")
    for item in items:
        if "soak" in item.keywords:
            item.add_marker(skip)
