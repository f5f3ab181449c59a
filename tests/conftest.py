"""Suite-wide fixtures: a leak detector over every log record, helpers."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator

import pytest

from nirguard import nir
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


@pytest.fixture
def redis_url() -> str:
    """URL of the real Redis for integration tests (skips when not configured)."""
    url = os.environ.get("NIRGUARD_TEST_REDIS_URL")
    if not url:
        pytest.skip("set NIRGUARD_TEST_REDIS_URL=redis://127.0.0.1:6379/0 to run the Redis tests")
    return url


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
