"""The tests touch only their own keys in the Redis they are given (see conftest.py)."""

from __future__ import annotations

import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.redis_helpers import RUN_PREFIX, delete_prefixed

ROOT = Path(__file__).resolve().parent.parent
# Whole-database commands, and KEYS (which blocks the server): no test may run them.
FORBIDDEN = re.compile(
    r"\.(flushdb|flushall)\s*\(|\.keys\(\s*['\"]|['\"](flushdb|flushall|keys)['\"]|\bKEYS \*",
    re.IGNORECASE,
)


def test_no_test_or_benchmark_flushes_or_lists_the_whole_database() -> None:
    offenders = []
    for path in sorted([*ROOT.glob("tests/**/*.py"), *ROOT.glob("benchmarks/**/*.py")]):
        if path.resolve() == Path(__file__).resolve():
            continue
        bench = path.relative_to(ROOT).parts[0] == "benchmarks"
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if bench and line.rstrip().endswith("# our private server only"):
                continue  # a benchmark may empty the redis-server it started for itself
            code = line.split("#", 1)[0]
            if FORBIDDEN.search(code):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert offenders == []


def test_delete_prefixed_refuses_patterns() -> None:
    for bad in ("", "*", "nirguard*", "a?b", "[ab]"):
        with pytest.raises(ValueError, match="plain"):
            delete_prefixed(None, bad)


def test_redis_prefix_is_under_the_run_prefix(redis_prefix: str) -> None:
    assert redis_prefix.startswith(RUN_PREFIX)
    assert len(RUN_PREFIX) > len("nirguard-test-") + 8


@pytest.mark.redis
def test_delete_prefixed_deletes_only_that_prefix(redis_url: str, redis_prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    foreign = f"foreign-{uuid.uuid4().hex}"
    try:
        client.set(foreign, "keep", ex=60)
        client.set(f"LIMITS:{redis_prefix}:lookups:dr", 1, ex=60)
        client.set(f"{redis_prefix}:other", 1, ex=60)
        assert delete_prefixed(client, redis_prefix) == 2
        assert client.get(foreign) == b"keep"
    finally:
        client.delete(foreign)
        client.close()


CARELESS_TESTS = """
import os

import redis

from tests.redis_helpers import SENTINEL_PREFIX


def _client():
    return redis.Redis.from_url(os.environ["NIRGUARD_TEST_REDIS_URL"])


def test_deletes_keys_it_does_not_own():
    client = _client()
    for key in client.scan_iter(match=f"{SENTINEL_PREFIX}*"):  # this session's sentinel
        client.delete(key)


def test_writes_under_the_default_prefix():
    _client().set("LIMITS:nirguard:lookups:{marker}", 1, ex=60)
"""


@pytest.mark.redis
@pytest.mark.slow
def test_the_hygiene_check_catches_careless_tests(redis_url: str, tmp_path: Path) -> None:
    """Run two careless tests under conftest.py's check: the session must fail, naming both."""
    import redis

    marker = uuid.uuid4().hex
    (tmp_path / "test_careless.py").write_text(CARELESS_TESTS.replace("{marker}", marker))
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    env = {"NIRGUARD_TEST_REDIS_URL": redis_url, "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-c",
         str(tmp_path / "pytest.ini"), "--rootdir", str(tmp_path), "-p", "tests.conftest",
         str(tmp_path / "test_careless.py")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    client = redis.Redis.from_url(redis_url)
    try:
        client.delete(f"LIMITS:nirguard:lookups:{marker}")  # the careless test's stray key
    finally:
        client.close()
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "Redis hygiene" in output, output
    assert "a key the tests do not own was deleted" in output
    assert f"LIMITS:nirguard:lookups:{marker}" in output
