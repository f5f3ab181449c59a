"""End to end: the FastAPI example under uvicorn with 2 worker processes, quotas shared in Redis.

The example's keys live under this test's own prefix (see ``redis_prefix`` in conftest.py):
nothing else in the Redis is touched.

A bounded concurrent client sends a few hundred lookups for several practitioners at once.
Exactly the quota is served per practitioner whichever worker answers. Past the distinct-patients
quota, exactly one new patient gets the break-glass answer (428, "give a reason"), and the next
starts the lockout; every other answer is the one documented refusal (403), the same bytes
whichever check refused; there is no 500 and no NIR in any response or server log line.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from nirguard import SecretKey
from nirguard.nir import format as format_nir
from tests.example_helpers import load_example

pytestmark = [pytest.mark.redis, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
LOOKUPS_QUOTA = 30  # per practitioner per hour, not lockout-class: refused until the window allows
DISTINCT_QUOTA = 20  # new patients per practitioner per hour; past it one 428, then lockout
REQUESTS_PER_PRACTITIONER = 75
CONCURRENCY = 24
POLICY_ENV = {
    "NIRGUARD_POLICY_LOOKUPS": f"{LOOKUPS_QUOTA}/hour",
    "NIRGUARD_POLICY_DISTINCT_PATIENTS": f"{DISTINCT_QUOTA}/hour",
    "NIRGUARD_POLICY_LOCKOUT": "1 hour",
    # the enumeration signals are tested elsewhere; here they would blur the exact counts
    "NIRGUARD_POLICY_COHORT": "off",
    "NIRGUARD_POLICY_PORTAL_COHORT": "off",
    "NIRGUARD_POLICY_MISS_RATIO": "off",
    "NIRGUARD_POLICY_PORTAL": "off",
}


# The guard's short Redis timeouts (fail closed, tested in test_guard_redis.py) would turn a
# CPU-starved CI box into 503s here; this test is about shared exact quotas, so it gives the
# store more time, through the example's NIRGUARD_STORAGE_OPTIONS.
STORAGE_OPTIONS = {"socket_timeout": 5, "socket_connect_timeout": 5}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


LOG_CONFIG = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(process)d %(name)s %(levelname)s %(message)s"}},
    "handlers": {
        "stderr": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "stream": "ext://sys.stderr",
        }
    },
    "loggers": {
        "uvicorn": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
        "uvicorn.access": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
        "portal": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
        "nirguard": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
    },
}


class Server:
    def __init__(self, base_url: str, log_path: Path, audit_path: Path) -> None:
        self.base_url = base_url
        self.log_path = log_path
        self.audit_path = audit_path

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")


@pytest.fixture
def server(tmp_path: Path, redis_url: str, redis_prefix: str) -> Iterator[Server]:
    """The example under uvicorn; its keys live under this test's prefix (deleted afterwards)."""
    import httpx

    port = _free_port()
    log_config = tmp_path / "logging.json"
    log_config.write_text(json.dumps(LOG_CONFIG), encoding="utf-8")
    log_path = tmp_path / "server.log"
    env = {
        **os.environ,
        **POLICY_ENV,
        "NIRGUARD_KEY": SecretKey.generate("e2e").to_text(),
        "NIRGUARD_STORAGE": redis_url,
        "NIRGUARD_STORAGE_OPTIONS": json.dumps(STORAGE_OPTIONS),
        "NIRGUARD_KEY_PREFIX": redis_prefix,
        "NIRGUARD_AUDIT_LOG": str(tmp_path / "audit.jsonl"),
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")])
        ),
    }
    command = [
        sys.executable, "-m", "uvicorn", "--factory", "app:create_app",
        "--app-dir", str(ROOT / "examples/fastapi_portal"),
        "--host", "127.0.0.1", "--port", str(port), "--workers", "2",
        "--log-config", str(log_config),
    ]  # fmt: skip
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(
            command, env=env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        base_url = f"http://127.0.0.1:{port}"
        for _ in range(150):  # up to ~30 s for both workers to import and bind
            if process.poll() is not None:
                pytest.fail(f"uvicorn exited early:\n{log_path.read_text(errors='replace')}")
            try:
                if httpx.get(f"{base_url}/healthz", timeout=1.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        else:
            pytest.fail(f"uvicorn did not answer:\n{log_path.read_text(errors='replace')}")
        yield Server(base_url, log_path, tmp_path / "audit.jsonl")
    finally:
        _stop(process)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=15)
    else:  # the master is gone; make sure no worker of its group survives
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)


async def _hammer(
    base_url: str, plan: list[tuple[str, str]]
) -> list[tuple[str, int, dict[str, str], str]]:
    import httpx

    gate = asyncio.Semaphore(CONCURRENCY)
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=0)
    timeout = httpx.Timeout(15.0)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=timeout) as client:

        async def one(practitioner: str, nir: str) -> tuple[str, int, dict[str, str], str]:
            async with gate:
                response = await client.post(
                    "/infopatient", json={"nir": nir}, headers={"X-Practitioner": practitioner}
                )
                return practitioner, response.status_code, dict(response.headers), response.text

        return await asyncio.wait_for(asyncio.gather(*(one(p, n) for p, n in plan)), timeout=180)


def test_two_workers_share_exact_quotas_through_redis(server: Server) -> None:
    registry = sorted(load_example("fastapi_portal").build_registry())
    wide = ["dr-wide-1", "dr-wide-2"]  # many different patients: the distinct quota binds
    narrow = ["dr-narrow-1", "dr-narrow-2"]  # five patients over and over: the lookups quota binds
    per_practitioner: dict[str, list[str]] = {}
    for i, practitioner in enumerate(wide):
        start = i * REQUESTS_PER_PRACTITIONER
        per_practitioner[practitioner] = registry[start : start + REQUESTS_PER_PRACTITIONER]
    for i, practitioner in enumerate(narrow):
        five = registry[300 + 5 * i : 305 + 5 * i]
        per_practitioner[practitioner] = [five[k % 5] for k in range(REQUESTS_PER_PRACTITIONER)]
    # interleave the practitioners so that they run at the same time
    plan = [
        (practitioner, nirs[k])
        for k in range(REQUESTS_PER_PRACTITIONER)
        for practitioner, nirs in per_practitioner.items()
    ]
    assert len(plan) == 300

    results = asyncio.run(_hammer(server.base_url, plan))

    statuses = {p: Counter(s for q, s, _, _ in results if q == p) for p in per_practitioner}
    for practitioner in wide:
        assert statuses[practitioner] == Counter(
            {200: DISTINCT_QUOTA, 428: 1, 403: REQUESTS_PER_PRACTITIONER - DISTINCT_QUOTA - 1}
        ), statuses
    for practitioner in narrow:
        assert statuses[practitioner] == Counter(
            {200: LOOKUPS_QUOTA, 403: REQUESTS_PER_PRACTITIONER - LOOKUPS_QUOTA}
        ), statuses

    used = {n for nirs in per_practitioner.values() for n in nirs}
    spellings = {s for n in used for s in (n, format_nir(n))}
    refusals = set()  # what a client sees of a refusal: rate limit, breach and lockout alike
    for _, status, headers, text in results:
        assert status != 500
        assert "retry-after" not in headers
        if status in (403, 428):
            assert headers["content-type"] == "application/problem+json"
            body = json.loads(text)
            assert body["code"] == ("denied" if status == 403 else "reason_required")
        if status == 403:
            seen = {k: v for k, v in headers.items() if k not in ("date", "server")}
            refusals.add((json.dumps(seen, sort_keys=True), text))
        blob = text + json.dumps(headers)
        assert not any(s in blob for s in spellings)
    assert len(refusals) == 1, refusals

    log = server.log()
    assert not any(s in log for s in spellings)
    assert '" 500' not in log and "Traceback" not in log
    # both workers answered lookups (their pids prefix the access-log lines)
    serving = set(re.findall(r"^(\d+) uvicorn\.access ", log, flags=re.MULTILINE))
    assert len(serving) == 2, log[-3000:]
    # the audit trail landed where the portal said, one line per decision, from both workers
    assert f"audit trail: {server.audit_path}" in log
    assert stat.S_IMODE(server.audit_path.stat().st_mode) == 0o600
    audit = server.audit_path.read_text(encoding="utf-8")
    events = [json.loads(line) for line in audit.splitlines()]
    assert len(events) == len(plan)
    assert (
        Counter(e["outcome"] for e in events)["allowed"] == 2 * DISTINCT_QUOTA + 2 * LOOKUPS_QUOTA
    )
    assert not any(s in audit for s in spellings)
