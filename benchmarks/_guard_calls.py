"""What ``bench_guard.py`` calls through the guard: the fake patient service (sync and
async; :data:`MISSING` holds the NIRs it does not know), the guard it runs behind, and
the scenarios of lookups (new patient, repeat, miss) the Redis measurements replay.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from nirguard import LookupGuard, Pseudonymiser, QuotaPolicy, SecretKey
from nirguard.testing import NIRGenerator

__all__ = [
    "KEY",
    "KINDS",
    "MISSING",
    "Scenario",
    "alookup",
    "lookup",
    "make_guard",
    "scenarios",
]

KEY = SecretKey(bytes(range(32)), "bench")
MISSING: set[str] = set()  # NIRs the fake service does not know (a miss)


def lookup(practitioner_id: str, nir: str) -> dict[str, str] | None:
    """The fake service: someone, unless ``nir`` is in :data:`MISSING`."""
    return None if nir in MISSING else {"name": "Jeanne Martin"}


async def alookup(practitioner_id: str, nir: str) -> dict[str, str] | None:
    """:func:`lookup`, async."""
    return None if nir in MISSING else {"name": "Jeanne Martin"}


def make_guard(
    policy: QuotaPolicy, storage: str = "memory://", prefix: str = "nirguard"
) -> LookupGuard:
    """A guard for ``policy`` on ``storage``, pseudonymising with :data:`KEY`."""
    return LookupGuard(
        policy,
        storage=storage,
        key_prefix=prefix,
        pseudonymiser=Pseudonymiser(KEY, purpose="guard"),
    )


class Scenario:
    """Fresh (practitioner, NIR) pairs for one kind of lookup."""

    def __init__(self, kind: str, count: int, seed: int) -> None:
        self.kind = kind
        rng = random.Random(seed)
        values = NIRGenerator(seed).many(count)
        self.pairs = [(f"rpps-{seed}-{rng.randrange(200)}", value) for value in values]
        if kind == "miss":
            MISSING.update(values)

    def prepare(self, call: Callable[[str, str], object]) -> None:
        """Repeat lookups need the patient seen by that practitioner first."""
        if self.kind == "repeat":
            for who, value in self.pairs:
                call(who, value)


KINDS = ("new patient", "repeat", "miss")


def scenarios(count: int, base_seed: int) -> dict[str, Scenario]:
    """One :class:`Scenario` of ``count`` lookups per kind, seeded from ``base_seed``."""
    return {kind: Scenario(kind, count, base_seed + i) for i, kind in enumerate(KINDS)}
