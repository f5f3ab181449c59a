"""Every page of the security console over a 1,000,000-event trail in SQLite: p95 per page.

    python benchmarks/bench_console.py                 # builds /tmp/nirguard-bench-console.db once
    python benchmarks/bench_console.py --events 200000 --requests 30

The trail is written through the store's own sinks and background writer (so its
pre-aggregated tables are the ones a portal would have): 1,500 GP accounts over 90 days
(working days, 8-16 lookups a day, half of them repeat patients, a few refusals), 19 stolen
accounts running a leaked list on the last days (each a case with a lockout), 2,000 more
cases, 5,000 break-glass grants and 500 hot-cohort notices. Each page is then requested
``--requests`` times in-process (Starlette's test client: routing, the gate, the queries,
Jinja2, the headers; no network) after 3 warm-up requests; the target is p95 <= 200 ms.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from nirguard import AuditEvent, LookupGuard, Pseudonymiser, Reason, ReasonCode, SecretKey
from nirguard.alerts import Alert, BreakGlass, Notice
from nirguard.audit_sql import SqlAuditStore
from nirguard.console import Console, Officer
from nirguard.testing import NIRGenerator

DAY = 86400.0
START = 1_767_225_600.0  # 2026-01-01
DAYS = 90
KEY = SecretKey(b"console-benchmark-key-material-32b!", "bench")
OUTCOMES = ["allowed"] * 90 + ["miss"] * 6 + ["denied", "reason_required", "invalid", "break_glass"]


def build(path: Path, events: int, seed: int = 1) -> None:
    rng = random.Random(seed)
    pseudo = Pseudonymiser(KEY, purpose="guard")
    known_nirs = NIRGenerator(seed=seed).many(200)
    known = [pseudo.pseudonymise(n) for n in known_nirs]
    accounts = [f"1{i:010d}" for i in range(1500)]
    per_day = events / (len(accounts) * DAYS * 5 / 7) + 0.5  # int() below rounds down
    store = SqlAuditStore(f"sqlite:///{path}", queue_size=200_000, batch_size=5000, max_wait=60)
    written = 0
    pools: dict[str, list[str]] = {a: [] for a in accounts}
    turn = 0
    while written < events:  # a second pass over the first days tops the trail up if needed
        day, turn = turn % DAYS, turn + 1
        if day % 7 in (2, 3):  # 2026-01-03/04 is a weekend
            continue
        for account in accounts:
            pool = pools[account]
            for visit in range(max(1, int(rng.gauss(per_day, 3)))):
                if written >= events:
                    break
                t = START + day * DAY + 8 * 3600 + visit * 1200 + rng.random() * 600
                if pool and rng.random() < 0.5:
                    patient = rng.choice(pool)
                else:
                    patient = (
                        rng.choice(known)
                        if rng.random() < 0.002
                        else f"bench:{rng.getrandbits(128):032x}"
                    )
                    pool.append(patient)
                outcome = rng.choice(OUTCOMES)
                store.audit(AuditEvent(time=t, practitioner=account, patient=None if outcome == "invalid" else patient,
                                       outcome=outcome, quota="distinct_patients" if outcome in ("denied", "reason_required") else None))  # type: ignore[arg-type]  # fmt: skip
                written += 1
    for index in range(2000):
        t = START + rng.randrange(DAYS) * DAY + rng.random() * DAY
        store.alert(Alert(practitioner=rng.choice(accounts), signal=rng.choice(["cohort", "baseline", "misses"]),
                          evidence={"new_patients": rng.randint(20, 90), "baseline": 12.0}, time=t,
                          retry_after=3600.0, lockout=index % 3 == 0))  # fmt: skip
    for index in range(19):  # the stolen accounts, locked on the last day
        t = START + (DAYS - 1) * DAY + index * 60
        store.alert(Alert(practitioner=accounts[index], signal="distinct_patients",
                          evidence={"distinct_patients": 43.0, "limit": 42.0}, time=t, retry_after=86400.0))  # fmt: skip
    for _ in range(5000):
        t = START + rng.randrange(DAYS) * DAY + rng.random() * DAY
        store.break_glass(BreakGlass(practitioner=rng.choice(accounts), patient=rng.choice(known),
                                     reason=Reason(ReasonCode.ETREAT, "vu aux urgences ce matin"), time=t,
                                     expires=t + 3 * DAY, budget_left=rng.randint(0, 3), quota="distinct_patients"))  # fmt: skip
    for _ in range(500):
        t = START + rng.randrange(DAYS) * DAY + rng.random() * DAY
        store.notice(Notice(signal="hot_cohort", cohort=f"bench:{rng.getrandbits(64):016x}",
                            evidence={"cohort_heat": 3.4, "cohort_expected": 1.0}, time=t))  # fmt: skip
    store.close()
    with open(path.with_suffix(".nirs"), "w") as f:
        f.write("\n".join(known_nirs))


def measure(path: Path, requests: int) -> dict[str, list[float]]:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*httpx2")
        from starlette.testclient import TestClient
    store = SqlAuditStore(f"sqlite:///{path}")
    guard = LookupGuard(pseudonymiser=Pseudonymiser(KEY, purpose="guard"), metrics=False)
    now = START + DAYS * DAY - 1
    app = Console(store, authorize=lambda r: Officer("bench", "officer"), guard=guard, keys=KEY,
                  clock=lambda: now, nir_searches_per_hour=10**9)  # fmt: skip
    client = TestClient(app)
    nirs = path.with_suffix(".nirs").read_text().split()
    biggest = store.reader.cases("open", 1)[0]["case_id"]
    csrf = re.search(r'name="csrf" value="([^"]+)"', client.get("/patient").text).group(1)  # type: ignore[union-attr]
    pages: dict[str, Any] = {
        "cases": lambda: client.get("/cases"),
        "cases?state=all&page=20": lambda: client.get("/cases?state=all&page=20"),
        "case (timeline)": lambda: client.get(f"/cases/{biggest}"),
        "locked": lambda: client.get("/locked"),
        "break-glass": lambda: client.get("/break-glass"),
        "break-glass?show=all&page=50": lambda: client.get("/break-glass?show=all&page=50"),
        "patient search (POST)": lambda: client.post("/patient", data={"csrf": csrf, "nir": random.choice(nirs), "reason": "benchmark"}),
        "portal (90 days)": lambda: client.get("/portal?days=90"),
    }  # fmt: skip
    timings: dict[str, list[float]] = {}
    for name, call in pages.items():
        for _ in range(3):
            assert call().status_code == 200, name
        samples = []
        for _ in range(requests):
            started = time.perf_counter()
            response = call()
            samples.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200
        timings[name] = samples
    print(f"trail: {store.reader.count_events():,} events")
    store.close()
    return timings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--db", default="/tmp/nirguard-bench-console.db")
    args = parser.parse_args()
    path = Path(args.db)
    if not path.exists():
        started = time.perf_counter()
        build(path, args.events)
        print(f"built {path} in {time.perf_counter() - started:.0f} s "
              f"({path.stat().st_size / 1e6:.0f} MB)")  # fmt: skip
    timings = measure(path, args.requests)
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"{'page':<32} {'median ms':>10} {'p95 ms':>8}   target p95 <= 200 ms")
    worst = 0.0
    for name, samples in timings.items():
        p95 = statistics.quantiles(samples, n=20)[18]
        worst = max(worst, p95)
        print(
            f"{name:<32} {statistics.median(samples):>10.1f} {p95:>8.1f}   {'ok' if p95 <= 200 else 'OVER'}"
        )
    return 0 if worst <= 200 else 1


if __name__ == "__main__":
    sys.exit(main())
