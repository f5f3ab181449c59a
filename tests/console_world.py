"""A small portal world for the console's tests, its browser flows and its screenshots.

One guard on the memory store with a simulated clock, writing to a SQL audit store: four
weeks of ordinary work by a few GPs, then one of their accounts stolen and walking one
birth cohort in order (the 2022 attack), which the guard refuses, asks for a reason, and
locks; and a break-glass grant with free text. Everything is deterministic.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from nirguard import LookupGuard, Pseudonymiser, QuotaPolicy, Reason, ReasonCode, SecretKey, nir
from nirguard.audit_sql import SqlAuditStore
from nirguard.errors import LookupDenied
from nirguard.testing import NIRGenerator

DAY = 86400.0
START = 1_767_225_600.0  # 2026-01-01T00:00:00Z
STOLEN = "10003456789"
COLLEAGUES = ("10001234567", "10009876543", "10005551234")
#: A NIR typed into a break-glass free text by a careless clinician (it must never be shown).
NIR_IN_TEXT = "1 85 05 78 006 084 91"


def walk(count: int, start: int = 1) -> list[str]:
    """``count`` NIRs of one cohort (men born May 1985 in commune 78-006), in order."""
    out = []
    for order in range(start, start + count):
        body = f"1850578006{order:03d}"
        out.append(body + f"{nir.compute_key(body):02d}")
    return out


@dataclass
class World:
    """The guard, its store, the key and the simulated clock."""

    store: SqlAuditStore
    guard: LookupGuard
    key: SecretKey
    now: list[float] = field(default_factory=lambda: [START])
    patients: dict[str, list[str]] = field(default_factory=dict)

    def clock(self) -> float:
        return self.now[0]

    def guard_pseudonym(self, value: str) -> str:
        """The patient's pseudonym in the audit trail."""
        return Pseudonymiser(self.key, purpose="guard").pseudonymise(value)

    def lookup(self, practitioner: str, value: str, reason: Any = None) -> str:
        """One guarded lookup; returns the outcome (or the refusal's code)."""
        try:
            with self.guard.lookup(practitioner, value, reason=reason) as lookup:
                lookup.record({"name": "someone"})
            return lookup.outcome or "unguarded"
        except LookupDenied as exc:
            return exc.code


def make_world(url: str = "sqlite://", **store_options: Any) -> World:
    key = SecretKey.generate("k2026")
    store = SqlAuditStore(url, **store_options)
    world: World
    guard = LookupGuard(
        QuotaPolicy(),
        pseudonymiser=Pseudonymiser(key, purpose="guard"),
        audit=store.audit,
        alert=store.alert,
        on_break_glass=store.break_glass,
        clock=lambda: world.now[0],
        metrics=False,
    )
    world = World(store, guard, key)
    return world


def ordinary_weeks(world: World, days: int = 28, seed: int = 7) -> None:
    """Each GP, on working days: 8-16 patients, half of them already known."""
    rng = random.Random(seed)
    gen = NIRGenerator(seed=seed)
    for practitioner in (STOLEN, *COLLEAGUES):
        world.patients[practitioner] = gen.many(40)
    for day in range(days):
        if day % 7 in (5, 6):  # 2026-01-03 is a Saturday: weekends off
            continue
        for practitioner in (STOLEN, *COLLEAGUES):
            known = world.patients[practitioner]
            for visit in range(rng.randint(8, 16)):
                world.now[0] = START + day * DAY + 8 * 3600 + visit * 1500
                patient = rng.choice(known) if rng.random() < 0.5 else gen.generate()
                if patient not in known:
                    known.append(patient)
                world.lookup(practitioner, patient)


def stolen_account(world: World, day: int = 28, count: int = 400) -> dict[str, int]:
    """The stolen account runs a leaked list of NIRs, one every 20 s, then walks a cohort."""
    outcomes: dict[str, int] = {}
    for index, value in enumerate(NIRGenerator(seed=2022).many(count // 2) + walk(count // 2)):
        world.now[0] = START + day * DAY + 2 * 3600 + index * 20
        outcome = world.lookup(STOLEN, value)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    return outcomes


def break_glass(world: World, day: int = 28) -> str:
    """A colleague past its quota in an emergency states a reason (with a NIR in the text)."""
    practitioner = COLLEAGUES[0]
    gen = NIRGenerator(seed=99)
    world.now[0] = START + day * DAY + 14 * 3600
    for _ in range(200):
        world.now[0] += 30
        value = gen.generate()
        outcome = world.lookup(practitioner, value)
        if outcome in ("reason_required", "reason"):
            text = f"urgences: patient inconscient, carte vitale {NIR_IN_TEXT}"
            return world.lookup(practitioner, value, Reason(ReasonCode.ETREAT, text))
    return "no reason asked"


def full_world(url: str = "sqlite://", **store_options: Any) -> World:
    """Four ordinary weeks, the attack, a break-glass grant; everything written."""
    world = make_world(url, **store_options)
    ordinary_weeks(world)
    stolen_account(world)
    break_glass(world)
    world.now[0] = START + 28 * DAY + 18 * 3600
    assert world.store.flush()
    return world
