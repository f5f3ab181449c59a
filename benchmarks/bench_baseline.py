"""The ``baseline`` signal on the replay's legitimate weeks, with GP-paced harvesters.

The replay's legitimate accounts (GPs, locums and new practices, desks;
``nirguard.replay.practitioners``) run for ``--weeks`` weeks of history and an
attack week straight through the memory engine (no guard around it: fast enough
for a scale-1 portal in a few minutes), under a policy with the shipped quotas
and ``--policy-json`` on top. From the attack week's Monday, 19 GPs' accounts
also serve a harvester: ``--harvest`` new people a working day from anywhere in
the registry, spread over the GP's office hours, dropping a number when refused,
while the GP keeps working (a GP refused a new patient states a reason once).
The engine gets the same place bucket the guard would give (the department of
birth, hashed into 64 buckets).

It prints, as JSON: false incidents (legitimate accounts refused by ``baseline``,
refusals more than a day apart counted apart) per 1,000 practitioner-weeks, by
kind; legitimate lookups refused, by kind (``gp-stolen``: the owners of the
harvested accounts in the attack week); identities each harvester got in the week
(median, max); hours from the harvest's start to its first ``baseline``
refusal, and to the first ``baseline`` signal on the account (its alert, whether the
harvester or the owner met it), median and max.

    python benchmarks/bench_baseline.py [--scale 1] [--weeks 4] [--harvest 40]
        [--policy-json '{"baseline": 5.0}']
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import statistics
import time
from collections import Counter, defaultdict
from dataclasses import replace
from typing import Any

from nirguard import QuotaPolicy
from nirguard._engine import Request
from nirguard._memory import MemoryEngine
from nirguard.replay.policies import DESK_POLICY
from nirguard.replay.practitioners import TYPO, accounts_for, build_workload
from nirguard.replay.registry import build_registry

DAY, HOUR = 86_400.0, 3_600.0
EPOCH = 1_770_595_200.0  # a Monday, 00:00 UTC (the replay's day 0)
OFFICE = ((0.45, 8.5, 12.5), (0.55, 14.0, 19.5))
QUOTAS = {
    "lookups": "30/minute;200/day",
    "distinct_patients": "8/10 minutes;120/day;350/7 days",
    "invalid_nirs": "10/hour;20/day",
    "misses": "15/hour;25/day",
    "break_glass": "1/day;2/7 days",
    "strikes": "3/hour;6/day",
}


def _bucket(department: str) -> int:
    if not department:
        return -1
    return hashlib.blake2b(department.encode(), digest_size=1).digest()[0] % 64


def _harvest(stolen: list[int], attack_day: int, rate: float, seed: int) -> list[tuple[float, int]]:
    rng = random.Random(seed)
    out = []
    for day in range(attack_day, attack_day + 7):
        if day % 7 >= 5:
            continue
        for who in stolen:
            for share, start, end in OFFICE:
                count = round(rate * share)
                for j in range(count):
                    at = start + (end - start) * (j + rng.random()) / count
                    out.append((day * DAY + at * HOUR, who))
    return sorted(out)


def run(args: argparse.Namespace) -> dict[str, Any]:
    registry = build_registry(args.scale, seed=args.seed)
    work = build_workload(
        registry, accounts_for(args.scale), history_weeks=args.weeks, seed=args.seed
    )
    accounts = [(p.id, p.kind) for p in work.practitioners]
    extra = json.loads(args.policy_json)
    gp = QuotaPolicy.only(**{**QUOTAS, **extra})._compiled
    desk_fields = {k: tuple(v) if isinstance(v, list) else v for k, v in DESK_POLICY.items()}
    desk = QuotaPolicy(**desk_fields)._compiled
    policy = [gp if kind in ("gp", "new_gp") else desk for _, kind in accounts]
    rng = random.Random(args.seed + 7)
    stolen = rng.sample([i for i, (_, k) in enumerate(accounts) if k == "gp"], 19)
    anywhere = [registry.nir(rng.randrange(len(registry)))[5:7] for _ in range(100_000)]
    events = [(work.times[e], 0, e) for e in range(len(work.times))]
    events += [(t, 1, who) for t, who in _harvest(stolen, work.attack_day, args.harvest, args.seed)]
    events.sort()
    engine = MemoryEngine(lambda: EPOCH, prefix="bench")
    attack_start = work.attack_day * DAY
    breaches: dict[int, list[float]] = defaultdict(list)
    refused: Counter[str] = Counter()
    total: Counter[str] = Counter()
    got: Counter[int] = Counter()
    first: dict[int, float] = {}
    alerted: dict[int, float] = {}  # the first baseline signal on the account, whoever asked
    started = time.perf_counter()
    for n, (t, harvest, x) in enumerate(events):
        now = EPOCH + t
        if harvest:
            place = _bucket(anywhere[n % len(anywhere)])
            d = engine.decide(Request(accounts[x][0], policy[x], f"h{n}", None, False, now, place))
            got[x] += d.outcome in ("allowed", "break_glass")
            if d.quota == "baseline" and x not in first:
                first[x] = (t - attack_start) / HOUR
            if d.quota == "baseline" and x not in alerted:
                alerted[x] = (t - attack_start) / HOUR
            continue
        who, kind = work.who[x], work.kind[x]
        if kind == TYPO:
            engine.invalid(Request(accounts[who][0], policy[who], None, None, False, now))
            continue
        person = work.person[x]
        patient = f"p{person}" if person >= 0 else f"u{x}"
        place = _bucket(registry.nir(person)[5:7]) if person >= 0 else -1
        request = Request(accounts[who][0], policy[who], patient, None, False, now, place)
        d = engine.decide(request)
        if d.outcome == "reason_required":  # a practitioner states a reason
            d = engine.decide(replace(request, reason=True))
        owner = who in stolen and t >= attack_start
        label = accounts[who][1] + ("-stolen" if owner else "")
        total[label] += 1
        refused[label] += d.outcome not in ("allowed", "break_glass")
        if d.quota == "baseline" and not owner:
            breaches[who].append(t)
        if d.quota == "baseline" and owner and who not in alerted:  # the account's case opens
            alerted[who] = (t - attack_start) / HOUR
    incidents: Counter[str] = Counter()
    for who, times in breaches.items():
        last = -1e18
        for t in times:
            if t - last > DAY:
                incidents[accounts[who][1]] += 1
            last = t
    weeks = work.days / 7
    kinds = Counter(k for _, k in accounts)
    harvested = [got[s] for s in stolen]
    hours = sorted(first.get(s, float("inf")) for s in stolen)
    alerts = sorted(alerted.get(s, float("inf")) for s in stolen)
    return {
        "policy": extra,
        "scale": args.scale,
        "accounts": len(accounts),
        "seconds": round(time.perf_counter() - started),
        "false_incidents_per_1000_weeks": {
            k: round(1000 * incidents[k] / (kinds[k] * weeks), 2) for k in kinds
        },
        "legitimate_refused_percent": {k: round(100 * refused[k] / total[k], 3) for k in total},
        "harvested_per_account": {"median": statistics.median(harvested), "max": max(harvested)},
        "hours_to_first_refusal": {"median": statistics.median(hours), "max": hours[-1]},
        "hours_to_first_alert": {"median": statistics.median(alerts), "max": alerts[-1]},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--weeks", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--harvest", type=float, default=40.0)
    parser.add_argument("--policy-json", default='{"baseline": 5.0}')
    print(json.dumps(run(parser.parse_args()), indent=1))


if __name__ == "__main__":
    main()
