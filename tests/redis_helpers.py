"""Keys of the test Redis that belong to this test run (used by conftest.py and the tests).

A plain module rather than conftest.py, so that every importer sees the same random prefix.
"""

from __future__ import annotations

import os
import uuid
from typing import Any

_RUN_ID = (os.environ.get("PYTEST_XDIST_TESTRUNUID") or uuid.uuid4().hex)[:12]
RUN_PREFIX = f"nirguard-test-{_RUN_ID}"  # in every Redis key this test run writes
WORKER_PREFIX = f"{RUN_PREFIX}-{os.environ.get('PYTEST_XDIST_WORKER', 'main')}-"
SENTINEL_PREFIX = f"foreign-sentinel:{_RUN_ID}:"  # a key no test owns (see conftest.py)


def delete_prefixed(client: Any, prefix: str) -> int:
    """Delete the keys whose names contain ``prefix`` (SCAN + DEL), and only those."""
    if not prefix or any(c in prefix for c in "*?[]\\"):
        raise ValueError("a plain, non-empty prefix is required")
    keys = list(client.scan_iter(match=f"*{prefix}*", count=1000))
    for i in range(0, len(keys), 500):
        client.delete(*keys[i : i + 500])
    return len(keys)
