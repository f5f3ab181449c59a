"""The guard's memory on Redis, per key type, and its projection to a national portal.

GP traffic (the replay's GPs and locums: consultation hours, patient lists, 80%
of lookups on the list, typos, unknown numbers; ``nirguard.replay``) runs
through ``LookupGuard`` on a private ``redis-server``, on a **simulated clock**
(``storage_options={"simulated_clock": ...}``: weeks in minutes), under the
shipped policy. The portal is a sample of France: the replay's registry keeps
whole birth cohorts with their real sizes, and the number of accounts keeps the
national ratio of accounts to people (by default 400,000 accounts for 68
million people), so that each cohort sees the traffic it would see nationally.
The shipped policy has ``sequence`` on (its counts live in the account record;
``--sequence ""`` turns it off, ``--sequence "6/day;8/7 days"`` names it); the lookups
refused and the lockouts by signal per 1,000 practitioner-weeks are printed at the end;
``--baseline 5.0`` turns the opt-in ``baseline`` on as well (its fields, the
hours and places profiles among them, live in the account record too).

At the end of each sampled week the script reads every key: ``MEMORY USAGE``
(what Redis holds for it, key and value), its type (account, recent patients,
cohort heat, portal quota, anything else), how many entries it holds (patients,
grants, walks; patients a cohort counted), and whether it is still alive on the
simulated clock (a record's simulated expiry is its ``PTTL`` shifted back, see
docs/redis.md); the dead are deleted, as Redis would have expired them. It
reports per key type the records, bytes, bytes per record and per entry, and
projects the total to the national portal: per-account records times the
national accounts, cohort records times the national people over the sample's,
plus Redis's own overhead per key (``used_memory`` against the sum of
``MEMORY USAGE``). Target (issue 20): <= 8 GB in all after 16 weeks.

    python benchmarks/bench_memory_model.py [--scale 0.05] [--weeks 16]
        [--samples 1,2,4,8,16] [--national-accounts 400000] [--national-people 68e6]
        [--baseline 5.0] [--sequence SPEC]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nirguard import LookupDenied, LookupGuard, Pseudonymiser, QuotaPolicy, SecretKey
from nirguard.errors import EnumerationSuspected, InvalidNIR
from nirguard.replay.practitioners import LOOKUP, TYPO, UNKNOWN, Workload, build_workload
from nirguard.replay.registry import Registry, build_registry
from tests.redis_tools import RedisServer, missing_redis_binaries

EPOCH = 1_800_000_000.0  # simulated day 0
DAY = 86_400.0
PREFIX = "nirguard"
GP_KINDS = ("gp", "new_gp")

#: Per key, on the server: [kind, patients or counted patients, grants, walks].
_ENTRIES = """
local out = {}
for i, key in ipairs(KEYS) do
  local raw = redis.call("GET", key)
  local row = {0, 0, 0}
  if raw and string.sub(key, -2) == ":r" then
    local a = cmsgpack.unpack(raw)
    local n = 0
    for _ in string.gmatch(a[4], "[^,]+") do n = n + 1 end
    row = {#a[2] / 14, #a[3] / 14, n > 0 and #a[5] / (6 + 12 * n) or 0}
  elseif raw and string.find(key, "{%c", 1, true) then
    local a = cmsgpack.unpack(raw)
    row = {#a[5] / 14, 0, 0}
  end
  out[i] = row
end
return out
"""


class Clock:
    """The simulated clock the guard and the store read."""

    def __init__(self) -> None:
        self.now = EPOCH

    def __call__(self) -> float:
        return self.now


def kind_of(key: str) -> str:
    if key.endswith(":account"):
        return "account"
    if key.endswith(":r"):
        return "recent"
    if "{%c" in key:
        return "heat"
    if "{%portal}" in key:
        return "portal"
    return "other (" + key.rsplit(":", 1)[-1][:12] + ")"


@dataclass
class Sample:
    week: int
    records: Counter[str] = field(default_factory=Counter)
    bytes: Counter[str] = field(default_factory=Counter)
    entries: Counter[str] = field(default_factory=Counter)
    accounts: int = 0
    used_memory: float = 0.0
    expired: int = 0


def sample(client: Any, week: int, now: float, shift: float, startup: float) -> Sample:
    """Every key's type, bytes and entries; the dead (on the simulated clock) deleted."""
    out = Sample(week)
    keys = [k.decode() for k in client.scan_iter(match=f"{PREFIX}:*", count=2000)]
    owners: set[str] = set()
    for i in range(0, len(keys), 500):
        batch = keys[i : i + 500]
        pipe = client.pipeline(transaction=False)
        for key in batch:
            pipe.memory_usage(key, samples=0)
            pipe.pttl(key)
        replies = pipe.execute()
        entries = client.eval(_ENTRIES, len(batch), *batch)
        server_ms = time.time() * 1000
        dead = []
        for j, key in enumerate(batch):
            size, pttl = replies[2 * j], replies[2 * j + 1]
            if size is None:
                continue  # gone meanwhile
            expires = (server_ms + pttl) / 1000 - shift if pttl > 0 else float("inf")
            if expires <= now:
                dead.append(key)
                continue
            kind = kind_of(key)
            out.records[kind] += 1
            out.bytes[kind] += int(size)
            patients, grants, walks = (float(x) for x in entries[j])
            if kind == "recent":
                out.entries["recent: patients"] += int(patients)
                out.entries["recent: grants"] += int(grants)
                out.entries["recent: walks"] += int(walks)
            elif kind == "heat":
                out.entries["heat: patients counted"] += int(patients)
            if kind in ("account", "recent") or kind.startswith("other"):
                owners.add(key.split("}", 1)[0])
        if dead:
            client.delete(*dead)
            out.expired += len(dead)
    out.accounts = len(owners)
    out.used_memory = float(client.info("memory")["used_memory"]) - startup
    return out


def run(args: argparse.Namespace) -> None:
    import redis

    registry = build_registry(args.scale, seed=args.seed)
    people = len(registry)
    accounts = args.accounts or max(
        1, round(args.national_accounts * people / args.national_people)
    )
    started = time.perf_counter()
    workload = build_workload(
        registry, accounts, history_weeks=args.weeks - 1, attack_days=7, seed=args.seed
    )
    gps = {i for i, p in enumerate(workload.practitioners) if p.kind in GP_KINDS}
    args.gps = len(gps)
    print(
        f"sample portal: {people:,} people in {registry.cohorts:,} whole cohorts "
        f"({people / args.national_people:.3%} of {args.national_people:,.0f}), {accounts:,} "
        f"accounts of which {len(gps):,} GPs and locums (their traffic only), {args.weeks} weeks, "
        f"{len(workload):,} events built in {time.perf_counter() - started:.0f} s; "
        "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())
    )
    extra = {} if args.sequence is None else {"sequence": args.sequence or None}
    policy = QuotaPolicy(baseline=args.baseline, **extra)
    print(f"policy: the shipped one, sequence {policy.sequence!r}, baseline {policy.baseline!r}")
    weeks = sorted({int(w) for w in args.samples.split(",") if int(w) <= args.weeks})
    with RedisServer() as server:
        client = redis.Redis.from_url(server.url())
        clock = Clock()
        guard = LookupGuard(
            policy,
            storage=server.url(),
            key_prefix=PREFIX,
            pseudonymiser=Pseudonymiser(SecretKey(bytes(range(32)), "model"), purpose="guard"),
            clock=clock,
            storage_options={"simulated_clock": clock},
            metrics=False,
        )
        samples, outcomes = drive(guard, client, clock, workload, registry, gps, weeks)
        guard.close()
        client.close()
    report(samples, outcomes, people, args)


def drive(
    guard: LookupGuard,
    client: Any,
    clock: Clock,
    workload: Workload,
    registry: Registry,
    gps: set[int],
    weeks: list[int],
) -> tuple[list[Sample], Counter[str]]:
    names = [p.id for p in workload.practitioners]
    outcomes: Counter[str] = Counter()
    samples: list[Sample] = []
    due = [EPOCH + 7 * DAY * w for w in weeks]
    shift: float | None = None
    startup = 0.0  # used_memory once the library and the policy are loaded
    started = time.perf_counter()
    for e in range(len(workload)):
        when = EPOCH + workload.times[e]
        while due and when >= due[0]:
            clock.now = due.pop(0)
            week = weeks[len(samples)]
            samples.append(sample(client, week, clock.now, shift or 0.0, startup))
            print(f"   ... week {week} read ({time.perf_counter() - started:.0f} s)")
        who = workload.who[e]
        if who not in gps:
            continue
        clock.now = when
        first = shift is None
        if first:
            shift = time.time() - when  # as the engine's codec takes it at its first call
        kind = workload.kind[e]
        number = registry.nir(workload.person[e]) if kind == LOOKUP else workload.typed[e]
        try:
            with guard.lookup(names[who], number) as lookup:
                lookup.record(None if kind == UNKNOWN else {"found": True})
            outcomes["allowed"] += 1
        except InvalidNIR:
            outcomes["invalid" if kind == TYPO else "invalid?"] += 1
        except LookupDenied as refused:
            outcomes[type(refused).__name__] += 1
            if isinstance(refused, EnumerationSuspected):  # a lockout-class signal's lockout
                outcomes[f"lockout: {refused.signal}"] += 1
                outcomes[f"account locked by {refused.signal}: {names[who]}"] = 1
        if first:
            startup = float(client.info("memory")["used_memory"]) - sum(
                int(client.memory_usage(k, samples=0) or 0)
                for k in client.scan_iter(match=f"{PREFIX}:*")
            )
    while due:
        clock.now = due.pop(0)
        samples.append(sample(client, weeks[len(samples)], clock.now, shift or 0.0, startup))
    return samples, outcomes


def _gb(value: float) -> str:
    return f"{value / 1e9:.2f} GB"


def report(samples: list[Sample], outcomes: Counter[str], people: int, a: Any) -> None:
    factor_people = a.national_people / people
    accounts = Counter(k[18:].split(":")[0] for k in outcomes if k.startswith("account locked"))
    for name in [k for k in outcomes if k.startswith("account locked")]:
        del outcomes[name]
    print(f"lookups: {dict(outcomes)}")
    total = sum(n for k, n in outcomes.items() if not k.startswith("lockout"))
    refused = total - outcomes["allowed"] - outcomes["invalid"] - outcomes["invalid?"]
    weeks = a.weeks * a.gps
    print(
        f"GPs' lookups refused: {refused:,} of {total:,} ({refused / max(total, 1):.3%}); "
        f"accounts locked by a signal: {dict(accounts)}; signals' lockouts per 1,000 "
        f"practitioner-weeks ({weeks:,}): "
        + ", ".join(
            f"{k.split(': ')[1]} {1000 * n / max(weeks, 1):.2f}"
            for k, n in sorted(outcomes.items())
            if k.startswith("lockout")
        )
    )
    last = samples[-1]
    print(f"-- week {last.week}: per key type (records alive on the simulated clock)")
    print(f"{'key type':<26}{'records':>10}{'bytes':>14}{'per record':>12}   entries per record")
    for kind, count in sorted(last.records.items()):
        size = last.bytes[kind]
        extra = ", ".join(
            f"{name.split(': ', 1)[1]} {n / count:.1f}"
            for name, n in last.entries.items()
            if name.startswith(kind + ":") and n
        )
        print(f"{kind:<26}{count:>10,}{size:>14,}{size / count:>12.0f}   {extra}")
    total = sum(last.bytes.values())
    print(
        f"{'sum of MEMORY USAGE':<26}{'':>10}{total:>14,}   used_memory above an empty server: "
        f"{last.used_memory:,.0f} ({last.used_memory / total:.2f}x: Redis's own tables)"
    )
    print(
        f"-- projection to {a.national_accounts:,} accounts and {a.national_people:,.0f} people "
        f"(account records x {a.national_accounts / max(last.accounts, 1):,.0f}, cohort records "
        f"x {factor_people:,.0f}; Redis's tables in proportion)"
    )
    print(f"{'week':>6}{'accounts':>12}{'per account':>13}{'cohorts':>12}{'in all':>12}")
    for s in samples:
        per_account = sum(
            v for k, v in s.bytes.items() if k in ("account", "recent") or k.startswith("other")
        ) / max(s.accounts, 1)
        cohorts = (s.bytes["heat"] + s.bytes["portal"]) * factor_people
        held = sum(s.bytes.values())
        overhead = s.used_memory / held if held else 1.0
        national = (per_account * a.national_accounts + cohorts) * overhead
        print(
            f"{s.week:>6}{_gb(per_account * a.national_accounts):>12}{per_account:>12,.0f}B"
            f"{_gb(cohorts):>12}{_gb(national):>12}"
        )
    print("   target: <= 8 GB in all after 16 weeks (issue 20)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", type=float, default=0.05, help="registry scale (1: ~2M)")
    parser.add_argument("--accounts", type=int, default=0, help="default: the national ratio")
    parser.add_argument("--weeks", type=int, default=16)
    parser.add_argument("--samples", default="1,2,4,8,16")
    parser.add_argument("--national-accounts", type=int, default=400_000)
    parser.add_argument("--national-people", type=float, default=68e6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--baseline", type=float, default=None, help="e.g. 5.0 (opt-in)")
    parser.add_argument(
        "--sequence", default=None, help='e.g. "6/day;8/7 days"; "" off (default: as shipped)'
    )
    args = parser.parse_args()
    why = missing_redis_binaries()
    if why is not None:
        print(f"skipped: {why}")
        return
    run(args)


if __name__ == "__main__":
    main()
