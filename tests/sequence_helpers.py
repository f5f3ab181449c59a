"""The ``sequence`` signal's test bench, shared by ``tests/test_sequence_*.py``: lookups
by cohort and order number, their probes (the neighbours, then a control at a distance
the tests fix, where the guard's is keyed), and a walk that accounts share.
"""

from __future__ import annotations

from nirguard._engine import Decision, Engine, Request, fingerprint
from nirguard._sequence import ABSENT, SPACING
from tests.engine_helpers import HOUR, sequence_policy

__all__ = [
    "HOT",
    "LIMIT",
    "POLICY",
    "distance",
    "label",
    "probe_orders",
    "probes",
    "sequence_request",
    "shared_walk",
]

LIMIT = 3
#: Never hot: the heat only remembers whom it saw, for two hours; new patients stay known
#: for 7 days.
POLICY = sequence_policy(f"{LIMIT}/day;{2 * LIMIT}/7 days")
HOT = 2 * HOUR


def label(run: str, cohort: int, order: int) -> str:
    """Patient ``order`` of ``cohort`` in this ``run`` (a stand-in for its pseudonym)."""
    return f"{run}-c{cohort}-{order:03d}"


def distance(cohort: int, order: int) -> int:
    """The control's distance in these tests (the guard's is keyed: :func:`spacing`)."""
    return SPACING[0] + (7 * order + cohort) % (SPACING[1] - SPACING[0] + 1)


def probe_orders(cohort: int, order: int) -> tuple[int, int, int, int]:
    """The probes' order numbers: the neighbours, then the controls."""
    d = distance(cohort, order)
    return order - 1, order + 1, order - d, order + d


def probes(run: str, cohort: int, order: int) -> bytes:
    """The probes' fingerprints (:data:`ABSENT` outside 1..999), as the guard sends them."""
    return b"".join(
        fingerprint(label(run, cohort, m)) if 1 <= m <= 999 else ABSENT
        for m in probe_orders(cohort, order)
    )


def sequence_request(run: str, who: str, cohort: int, order: int, now: float) -> Request:
    """``who`` looks up patient ``order`` of ``cohort`` at ``now`` under :data:`POLICY`."""
    near = probes(run, cohort, order)
    return Request(
        f"{run}-{who}",
        POLICY._compiled,
        label(run, cohort, order),
        f"{run}-cohort-{cohort}",
        now=now,
        neighbours=near,
    )


def shared_walk(
    engine: Engine,
    run: str,
    accounts: list[str],
    cohorts: int,
    step: float,
    now: float,
    orders: int = 60,
) -> tuple[dict[str, Decision], dict[str, int], float]:
    """``accounts`` share a walk of ``cohorts`` cohorts at once (round robin), one lookup
    every ``step`` seconds, each account stopping at its first refusal."""
    refused: dict[str, Decision] = {}
    got: dict[str, int] = {}
    turn = 0
    for order in range(1, orders + 1):
        for cohort in range(cohorts):
            who = accounts[turn % len(accounts)]
            turn += 1
            if who in refused:
                continue
            decision = engine.decide(sequence_request(run, who, cohort, order, now))
            if decision.outcome == "allowed":
                got[who] = got.get(who, 0) + 1
            else:
                refused[who] = decision
            now += step
    return refused, got, now
