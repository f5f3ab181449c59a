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


#: How many live entries a practitioner's ``recent`` record holds (patients, grants),
#: read on the server: the record is MessagePack, which the tests need not decode.
_RECENT = """
local raw = redis.call("GET", KEYS[1])
if not raw then return {0, 0} end
local a = cmsgpack.unpack(raw)
local now = tonumber(ARGV[1])
local out = {}
for k, list in ipairs({a[2], a[3]}) do
  local n = 0
  for i = 1, #list, 14 do
    if struct.unpack("<d", list, i + 6) > now then n = n + 1 end
  end
  out[k] = n
end
return out
"""


def recent_entries(client: Any, key: str, now: float = 0.0) -> tuple[int, int]:
    """(patients, grants) whose windows end after ``now`` in the ``recent`` record ``key``."""
    patients, grants = client.eval(_RECENT, 1, key, repr(now))
    return int(patients), int(grants)
