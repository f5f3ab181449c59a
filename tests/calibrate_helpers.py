"""A small portal for the calibrate tests: GPs, desks and one enumerator, driven through a real guard.

The traffic is fixed in advance (a seed), so shadow mode and enforcement see
the same lookups; only the reactions differ: a GP asked for a reason gives
one (break-glass), the enumerator never does.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from nirguard import (
    EnumerationSuspected,
    InvalidNIR,
    LookupGuard,
    PractitionerLocked,
    Pseudonymiser,
    QuotaExceeded,
    QuotaPolicy,
    Reason,
    ReasonCode,
    ReasonRequired,
    SecretKey,
)
from nirguard.nir import compute_key
from nirguard.testing import NIRGenerator

START = 1_767_225_600.0  # 2026-01-01 00:00 UTC, a Thursday
DAY = 86400.0
# The scenarios' logs are days long and start on a fresh store: hot cohorts from the
# first day (no warm-up), as a portal's guard with weeks of history would see them.
GP = QuotaPolicy(  # the scenarios' GP policy: 100 new patients a day, 3 break-glass grants
    name="gp",
    distinct_patients="8/10 minutes;100/day;300/7 days",
    break_glass="3/day;10/7 days",
    hot_cohort_warmup=None,
    # The walk is refused from its 5th person (cohort 4/day), and a locked account's
    # attempts heat nothing: a cohort is hot here from 5 new people of it in a day.
    hot_cohort_min=4,
)
DESK = QuotaPolicy(
    name="desk",
    hot_cohort_warmup=None,
    lookups="60/minute;1000/day",
    distinct_patients="30/10 minutes;500/day;2000/7 days",
    cohort="15/day",
    portal_cohort="20/day;60/7 days",
)
ENUMERATOR = "gp-x"


def policy_for(practitioner: str) -> QuotaPolicy:
    return DESK if practitioner.startswith("desk") else GP


def nir_in(cohort: str, order: int) -> str:
    body = f"{cohort}{order:03d}"
    return f"{body}{compute_key(body):02d}"


@dataclass(frozen=True, slots=True)
class Lookup:
    time: float
    practitioner: str
    nir: str
    found: bool


@dataclass(frozen=True, slots=True)
class Portal:
    lookups: tuple[Lookup, ...]
    everyone: frozenset[str]  # every NIR the traffic uses (for leak checks)


def build_portal(
    *, seed: int = 7, gps: int = 30, desks: int = 3, days: int = 10, enumerator: bool = True
) -> Portal:
    rng = random.Random(seed)
    gen = NIRGenerator(seed)
    out: list[Lookup] = []
    used: set[str] = set()
    maternity = "2250675056"  # girls born in June 2025 in one town
    for g in range(gps):
        who = f"gp-{g:02d}"
        panel = gen.many(300)
        busy = rng.uniform(0.6, 1.6)
        for day in range(days):
            if day % 7 in (2, 3):  # the weekend
                continue
            for _ in range(int(rng.gauss(20, 5) * busy)):
                t = START + day * DAY + 8 * 3600 + rng.uniform(0, 10 * 3600)
                if rng.random() < 0.005:
                    number, found = gen.generate(), False
                else:
                    number = rng.choice(panel) if rng.random() < 0.8 else gen.generate()
                    found = True
                if rng.random() < 0.01:  # a typo: the key no longer matches
                    number = number[:-2] + f"{(int(number[-2:]) + 1) % 97 or 97:02d}"
                out.append(Lookup(t, who, number, found))
    if gps:  # a GP covering a colleague's list one day: 130 new patients
        for _ in range(130):
            t = START + 1 * DAY + 8 * 3600 + rng.uniform(0, 10 * 3600)
            out.append(Lookup(t, "gp-busy", gen.generate(), True))
    for d in range(desks):
        who = f"desk-{d}"
        for day in range(days):
            for _ in range(int(rng.gauss(120, 20))):
                t = START + day * DAY + rng.uniform(0, DAY)
                number = gen.generate()
                if rng.random() < 0.03:  # a newborn of the maternity
                    number = nir_in(maternity, rng.randint(1, 400))
                out.append(Lookup(t, who, number, True))
    if enumerator:
        cohort = "1850578006"
        t = START + 6 * DAY + 3600
        for order in range(1, 600):
            out.append(Lookup(t, ENUMERATOR, nir_in(cohort, order), order % 10 < 7))
            t += 10.0
        # Later that day, a GP sees three patients born in the cohort the script walked.
        for order in (700, 701, 702):
            out.append(
                Lookup(START + 6 * DAY + 5 * 3600 + order, "gp-00", nir_in(cohort, order), True)
            )
    for lookup in out:
        used.add(lookup.nir)
    out.sort(key=lambda x: (x.time, x.practitioner))
    return Portal(tuple(out), frozenset(used))


_LOCKS = frozenset(
    {
        "distinct_patients",
        "invalid_nirs",
        "misses",
        "cohort",
        "portal_cohort",
        "miss_ratio",
        "strikes",
    }
)


@dataclass
class Refusals:
    """What a guard refused, as its exceptions told the portal."""

    outcomes: Counter[tuple[str, str | None]]
    # field -> [refused itself, asked for a reason, refused while locked out by it]
    fields: dict[str, list[int]]
    lookups: int


def drive(
    portal: Portal,
    path: Path | None,
    *,
    enforce: bool,
    policy=policy_for,
    skip: frozenset[str] = frozenset(),
) -> Refusals:
    """Run the portal's traffic through a guard auditing to ``path``; what it refused."""
    now = [START]
    guard = LookupGuard(
        policy,
        pseudonymiser=Pseudonymiser(SecretKey(bytes(range(64, 96)), "cal"), purpose="guard"),
        audit=None if path is None else str(path),
        clock=lambda: now[0],
        enforce=enforce,
        metrics=False,
    )
    out = Refusals(Counter(), {}, 0)
    locker: dict[str, str] = {}

    def count(name: str, column: int) -> None:
        out.fields.setdefault(name, [0, 0, 0])[column] += 1

    for lookup in portal.lookups:
        if lookup.practitioner in skip:
            continue
        now[0] = lookup.time
        reason = None
        who = lookup.practitioner
        for _attempt in range(2):
            out.lookups += 1
            try:
                with guard.lookup(who, lookup.nir, reason=reason) as lk:
                    lk.record({"found": True} if lookup.found else None)
            except ReasonRequired as exc:
                out.outcomes["reason_required", exc.quota] += 1
                count(exc.quota, 1)
                if who == ENUMERATOR:
                    break
                reason = Reason(ReasonCode.TREAT)  # a clinician states why, and goes on
                continue
            except QuotaExceeded as exc:
                # the refusal that starts a lockout is audited "lockout"
                out.outcomes["lockout" if exc.quota in _LOCKS else "denied", exc.quota] += 1
                count(exc.quota, 0)
                if exc.quota in _LOCKS:
                    locker[who] = exc.quota
            except EnumerationSuspected as exc:
                out.outcomes["lockout", exc.signal] += 1
                count(exc.signal, 0)
                locker[who] = exc.signal
            except PractitionerLocked:
                out.outcomes["locked", "locked"] += 1
                count(locker[who], 2)
            except InvalidNIR:
                pass
            break
    return out


def event_line(**fields: object) -> str:
    """One audit line as the guard's JSON-lines sink writes it (every field, in order)."""
    from nirguard.audit import AuditEvent

    return AuditEvent(**fields).model_dump_json()  # type: ignore[arg-type]


def synthetic_lines(
    count: int, *, practitioners: int = 100, panel: int = 200, seed: int = 1
) -> Iterator[str]:
    """``count`` audit lines of a steady portal, generated on the fly (pseudonyms are made up).

    Each practitioner looks up people of their own panel, so the pairs alive in
    any window stay under ``practitioners * panel`` however long the log is.
    """
    rng = random.Random(seed)
    t = START
    for _ in range(count):
        t += rng.expovariate(1 / 8.0)  # a lookup every 8 s on average
        who = rng.randrange(practitioners)
        person = rng.randrange(panel)
        draw = rng.random()
        stamp = datetime.fromtimestamp(t, tz=timezone.utc).isoformat().replace("+00:00", "Z")
        if draw < 0.01:
            yield (
                f'{{"time":"{stamp}","practitioner":"gp-{who}","patient":null,'
                f'"outcome":"invalid","quota":"invalid_nirs","retry_after":null,"cohort":null,'
                f'"kind":"gp","reason":null,"signals":[],"evidence":null}}\n'
            )
            continue
        outcome = "miss" if draw < 0.015 else "allowed"
        yield (
            f'{{"time":"{stamp}","practitioner":"gp-{who}","patient":"syn:{who}-{person}",'
            f'"outcome":"{outcome}","quota":null,"retry_after":null,'
            f'"cohort":"syn:c{(who * 7919 + person) % 20011}","kind":"gp","reason":null,"signals":[],'
            f'"evidence":null}}\n'
        )
